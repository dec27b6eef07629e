"""The hardware registry as data: dense datasheet peaks with their sources.

Every compute figure is dense (no 2:4 sparsity); where a vendor prints only the sparse figure it was
halved and the note says so. ``derived`` = computed from a vendor figure or per-SM rates;
``unverified`` = one secondary source, or sources disagree. Facts from
../shared/reference/hardware.md (each row names its primary source), except the Orin NX boards and the
H100 NVL, which the reference lacks: their ``source`` names where each number came from, and every
number not read from a vendor sheet here is marked unverified.

``family`` is the user-facing name of a hardware class: the pytest marker (``pytest -m b10``) and
the tox env that select its cases.

Native sets follow the reference's tensor-core support matrix: Ampere (sm_80/87) INT8 and INT4 but no
FP8; Ada (sm_89) FP8 and INT8 (INT4 unverified, left out); Hopper (sm_90) FP8 and INT8, no INT4;
Blackwell (sm_100, sm_120/121) adds MXFP8/MXFP6 at the FP8 rate and NVFP4/MXFP4 at the FP4 rate.

Accumulator convention: every FP16/BF16 and FP8 peak is the FP32-accumulate rate, the one cuBLASLt FP8
GEMMs (torch._scaled_mm) and torch's 16-bit matmuls run. Consumer parts (RTX 4090, RTX 5090, and GB10's
GeForce-class tensor cores) run FP16 accumulate at twice that; the note gives that figure, never the value.

Flags travel with every number, SM count and L2 size included (``_p`` there too where the reference
flags them or they are not in it): the audit against the reference is ``tests/test_hardware.py``.
"""
from __future__ import annotations

_AMPERE = ("fp32", "tf32", "fp16", "bf16", "int8", "int4")
_ADA_HOPPER = ("fp32", "tf32", "fp16", "bf16", "fp8_e4m3", "fp8_e5m2", "int8")
_BLACKWELL = _ADA_HOPPER + ("mxfp8", "mxfp6", "mxfp4", "nvfp4")


def _p(value, note="", derived=False, unverified=False):
    return {"value": value, "note": note, "derived": derived, "unverified": unverified}


# Orin's GPU (GA10B) per SM per clock, dense: 256 FP32 FLOP (128 FMA cores), and on the tensor cores
# 1024 TF32, 2048 FP16/BF16, 4096 INT8, 8192 INT4 ops. These reproduce the Orin Nano datasheet figures
# below (8 SMs x 625 MHz: 1.28 FP32, 10.2 FP16, 20 INT8 = 40 sparse / 2) and the Nano Super's (1020 MHz:
# 16.7 FP16, 33 INT8 = 67 / 2); the INT4 and TF32 rates follow the Orin Nano entry's convention.
_GA10B_PER_SM_CLOCK = dict(fp32=256, tf32=1024, fp16=2048, bf16=2048, int8=4096, int4=8192)


def _orin_gpu_peaks(sms: int, mhz: float, how: str, clock_unverified: bool) -> dict:
    """Dense peaks of an Orin GPU with ``sms`` SMs at ``mhz``: derived, and unverified where the rate or the
    clock is (a number computed from an unverified one inherits the flag)."""
    return {c: _p(round(sms * mhz * 1e6 * r / 1e12, 2), f"{sms} SMs x {mhz:g} MHz x {r} per SM per clock ({how})",
                  derived=True, unverified=clock_unverified or c in ("tf32", "int4"))
            for c, r in _GA10B_PER_SM_CLOCK.items()}


# Orin NX (p3767-0000 16GB, p3767-0001 8GB): the same 8-SM GPU as the Orin Nano, higher clocks, and the
# 128-bit LPDDR5 at the EMC clock the Nano only reaches as "Super". The datasheet's 100 / 70 TOPS include
# the DLAs (2 on the 16GB, 1 on the 8GB); the GPU's share is what the per-SM rate gives.
_NX_SOURCE = ("Jetson Orin NX series datasheet (100 / 70 TOPS with DLAs); NVIDIA nvpmodel_p3767_0000.conf and "
              "_0001.conf (power modes, as vendored in LineageOS/android_device_nvidia_concord@54e4953); "
              "deviceQuery on an Orin NX 16GB (8 SMs, 918 MHz max, 14486 MiB: gist atinfinity/8cede915)")
_NX_SUPER_SOURCE = ("NVIDIA nvpmodel_p3767_0000_super.conf / _0001_super.conf (JetPack 6.2 'Super' modes: 40W "
                    "caps the GPU at 1173 MHz, MAXN_SUPER uncaps it; LineageOS/android_device_nvidia_concord"
                    "@370b63a); clocks and per-SM rates as the Orin NX entries")
_NX_8GB_SMS = _p(8, "the series datasheet's 1024-core GPU, as on the 16GB; not read from an 8GB here", unverified=True)
_NX_BANDWIDTH = _p(102.4, "128-bit LPDDR5 @ 3199 MHz EMC (as Orin Nano Super); datasheet table not read here",
                   derived=True, unverified=True)


# Usable memory of the unified-memory devices (GB10, Jetson): the CPU, the OS, the carveouts and the GPU share one
# pool, so a model can plan on what CUDA sees less what the stock OS already holds at idle. Both parts are public
# readings of one or two boards (not NVIDIA figures): derived and unverified. In 1e9 bytes like every GB here: what
# CUDA sees is near or above the nominal "GB" (which counts GiB); the OS's share is what the plan has to leave.
_GIB = 2**30 / 1e9


def _usable(visible_gb: float, os_gb: float, detail: str, source: str) -> dict:
    return {"value": round(visible_gb - os_gb, 1), "note": f"{visible_gb:.2f} GB CUDA-visible less {os_gb:.2f} GB "
            "the OS holds at idle", "source": f"{detail}. {source}", "derived": True, "unverified": True}


# "the OS and runtime consume ~1.5-2 GB before inference begins" on an 8 GB Orin Nano: the lower end, so the plan
# stays an upper bound on what fits (the same JetPack desktop on the NX and AGX boards: no reading of theirs found)
_JETSON_OS_GB = 1.5
_JETSON_OS_SOURCE = "edgeaistack.app memory estimator page (OS and runtime ~1.5-2 GB on an Orin Nano 8GB; lower end)"
_ORIN_NANO_8GB_USABLE = _usable(
    7_987_728_384 / 1e9, _JETSON_OS_GB, "deviceQuery 7618 MiB (JetPack 6, CUDA 12.6; boards on the older QSPI "
    "firmware see less: 7693115392 bytes under JetPack 5)",
    "deviceQuery output in Canonical's Ubuntu-on-Jetson docs (7618 MBytes, 7987728384 bytes; 7620 MBytes in another "
    "setup guide); " + _JETSON_OS_SOURCE)
_ORIN_NX_16GB_USABLE = _usable(
    14486 * 2**20 / 1e9, _JETSON_OS_GB, "deviceQuery 14486 MiB (the gist the NX entries cite; the same author's "
    "container README shows 15388 MiB: the lower kept)",
    "deviceQuery on an Orin NX 16GB (gist atinfinity/8cede915; 15388 MBytes in atinfinity's Jetson container "
    "README); " + _JETSON_OS_SOURCE)
_ORIN_NX_8GB_USABLE = dict(_ORIN_NANO_8GB_USABLE, note=_ORIN_NANO_8GB_USABLE["note"] + " (the Orin Nano 8GB's: the "
                           "same 8 GB of LPDDR5; no NX 8GB reading found)")

# GB10's 16-bit tensor-core rate with fp32 accumulate, the one torch's matmuls run. The reference halves NVIDIA's
# ~125 as GeForce parts do (~62), but keeps FP8 unhalved at 250 (CUTLASS FP8 measured at 188 exceeds the 125 a halved
# FP8 rate allows), and a torch fp16 8192^3 matmul (cuBLAS, fp32 compute type) sustains ~88 iterations/s = ~95
# TFLOP/s on a GB10 (GuigsEvt/dgx_spark_config, images/benchmark_upgraded_setup_dgx_gemm_8192.png): 62 is no ceiling.
# One convention for both: FP8 / 2, the FP16:FP8 ratio of every Hopper and Blackwell sheet.
_GB10_16BIT = ("fp32 accumulate, = FP8 250 / 2, as FP8 is kept unhalved; the reference's ~62 (halved as on GeForce "
               "parts) is beaten by a measured torch fp16 GEMM at ~95 TFLOP/s (GuigsEvt/dgx_spark_config)")

# One dict per device. "peaks_tflops" is keyed by compute class (see formats.Format.compute_class).
HARDWARE_DATA: list[dict] = [
    dict(key="gb10", family="b10", aliases=("b10", "dgx_spark", "spark"), name="NVIDIA GB10 Grace Blackwell (DGX Spark)",
         arch="sm_121", kind="gpu",
         source="NVIDIA spec via huggingface.js PR #1861; Hot Chips 2025 coverage; NVIDIA/cudnn-frontend#1164",
         bandwidth_gbs=_p(273, "LPDDR5X 256-bit @ 8533 MT/s"), memory_gb=_p(128, "unified; ~122.6 GB visible to CUDA"),
         usable_memory_gb=_usable(121.69 * _GIB, 8.684 * _GIB, "121.69 GiB CUDA-visible, 8.68 GiB in use at idle "
                                  "(DGX OS, driver 580.173.02; an older DGX OS showed 128.5e9 bytes in all)",
                                  "Syllo/nvtop#449 (one DGX Spark: total and idle use); MiaAI-Lab/GLM-5.3-Flash-EXL3-"
                                  "2x-DGX-Sparks#47 (121.69 GiB total); leptonai/gpud#1170 (128501256192 bytes on an "
                                  "older release). The reference's ~122.6 GB names no source"),
         l2_mb=24, sm_count=48, gpu_clock_mhz=_p(2418, "max boost; NVIDIA's table says 2.14 GHz", unverified=True),
         mem_clock_mhz=None, native=_BLACKWELL,
         peaks_tflops=dict(fp32=_p(31, "~31 in the reference"), tf32=_p(31, unverified=True),
                           fp16=_p(125, _GB10_16BIT, derived=True, unverified=True),
                           bf16=_p(125, _GB10_16BIT, derived=True, unverified=True),
                           fp8=_p(250, "FP4 / 2; the source names no accumulator. Kept as the FP32-accumulate rate: "
                                  "CUTLASS FP8 at 188 TFLOP/s (reference, measured) exceeds the 125 a halved rate "
                                  "would allow", derived=True),
                           int8=_p(250, unverified=True), fp4=_p(500, "1 PFLOP sparse / 2", derived=True))),
    dict(key="jetson_orin_nano", family="jetson", aliases=("orin_nano",), name="Jetson Orin Nano 8GB (original clocks)",
         arch="sm_87", kind="jetson", source="Jetson Orin Nano datasheet",
         bandwidth_gbs=_p(68, "LPDDR5 128-bit @ 2133 MHz EMC"), memory_gb=_p(8), l2_mb=None, sm_count=8,
         usable_memory_gb=_ORIN_NANO_8GB_USABLE,
         gpu_clock_mhz=_p(625), mem_clock_mhz=_p(2133), native=_AMPERE,
         peaks_tflops=dict(fp32=_p(1.28, derived=True), tf32=_p(5.1, derived=True), fp16=_p(10.2, derived=True),
                           bf16=_p(10.2, derived=True), int8=_p(20, "40 sparse / 2"),
                           int4=_p(40, "2x dense INT8 as on Ampere A100", derived=True, unverified=True))),
    dict(key="jetson_orin_nano_super", family="jetson", aliases=("orin_nano_super",), name="Jetson Orin Nano Super (MAXN_SUPER)",
         arch="sm_87", kind="jetson", source="nvpmodel p3767_0003_super.conf; Orin Nano Super datasheet",
         bandwidth_gbs=_p(102, "EMC 3199 MHz"), memory_gb=_p(8), l2_mb=None, sm_count=8,
         usable_memory_gb=_ORIN_NANO_8GB_USABLE,
         gpu_clock_mhz=_p(1020), mem_clock_mhz=_p(3199), native=_AMPERE,
         peaks_tflops=dict(fp32=_p(2.09, derived=True), tf32=_p(8.4, derived=True), fp16=_p(16.7, derived=True),
                           bf16=_p(16.7, derived=True), int8=_p(33, "67 sparse / 2"),
                           int4=_p(67, "2x dense INT8 as on Ampere A100", derived=True, unverified=True))),
    dict(key="jetson_agx_orin", family="jetson", aliases=("agx_orin", "orin_agx"), name="Jetson AGX Orin 64GB",
         arch="sm_87", kind="jetson", source="Jetson AGX Orin technical brief",
         bandwidth_gbs=_p(204.8, unverified=True), memory_gb=_p(64), l2_mb=4, sm_count=16,
         usable_memory_gb=_usable(65_893_089_280 / 1e9, _JETSON_OS_GB, "deviceQuery 62841 MiB (JetPack 6, CUDA 12.6)",
                                  "deviceQuery output in two AGX Orin 64GB setup guides (62841 MBytes, 65893089280 "
                                  "bytes); " + _JETSON_OS_SOURCE),
         gpu_clock_mhz=_p(1300.5), mem_clock_mhz=_p(3199, "EMC max of the 204.8 GB/s figure", derived=True),
         native=_AMPERE,
         # TF32: hardware.md's 10.6 is FP16 / 4, where its own Orin Nano rows take FP16 / 2 (5.1 of 10.2, measured
         # 4.9) and GA10B's per-SM rate gives 16 x 1300.5 MHz x 1024 = 21.3: a ceiling at 10.6 would fail a real
         # AGX TF32 GEMM at 15 TFLOP/s for beating it
         peaks_tflops=dict(fp32=_p(5.3), tf32=_p(round(16 * 1300.5e6 * _GA10B_PER_SM_CLOCK["tf32"] / 1e12, 2),
                                                 "16 SMs x 1300.5 MHz x 1024 per SM per clock (GA10B); the reference's "
                                                 "10.6 is FP16 / 4, against its own FP16 / 2 for the Orin Nano",
                                                 derived=True, unverified=True), fp16=_p(42.6, derived=True),
                           bf16=_p(42.6, derived=True), int8=_p(85, "170 sparse / 2"),
                           int4=_p(170, "2x dense INT8 as on Ampere A100", derived=True, unverified=True))),
    dict(key="jetson_orin_nx_16gb", family="jetson", aliases=("orin_nx_16gb", "orin_nx"),
         name="Jetson Orin NX 16GB (original clocks)", arch="sm_87", kind="jetson", source=_NX_SOURCE,
         bandwidth_gbs=_NX_BANDWIDTH, memory_gb=_p(16), l2_mb=None, sm_count=8, usable_memory_gb=_ORIN_NX_16GB_USABLE,
         gpu_clock_mhz=_p(918, "deviceQuery 'GPU Max Clock rate'", unverified=True),
         mem_clock_mhz=_p(3199, "EMC max of the 102.4 GB/s figure", derived=True), native=_AMPERE,
         peaks_tflops=_orin_gpu_peaks(8, 918, "GPU only; the datasheet's 100 TOPS adds 2 DLAs", clock_unverified=True)),
    dict(key="jetson_orin_nx_8gb", family="jetson", aliases=("orin_nx_8gb",),
         name="Jetson Orin NX 8GB (original clocks)", arch="sm_87", kind="jetson", source=_NX_SOURCE,
         bandwidth_gbs=_NX_BANDWIDTH, memory_gb=_p(8), l2_mb=None, sm_count=_NX_8GB_SMS,
         usable_memory_gb=_ORIN_NX_8GB_USABLE,
         gpu_clock_mhz=_p(765, "datasheet GPU max frequency, not re-read here: 50 sparse GPU TOPS + 1 DLA "
                               "make the 70 TOPS total", unverified=True),
         mem_clock_mhz=_p(3199, "EMC max of the 102.4 GB/s figure", derived=True), native=_AMPERE,
         peaks_tflops=_orin_gpu_peaks(8, 765, "GPU only; the datasheet's 70 TOPS adds 1 DLA", clock_unverified=True)),
    dict(key="jetson_orin_nx_16gb_super", family="jetson", aliases=("orin_nx_16gb_super", "orin_nx_super"),
         name="Jetson Orin NX 16GB Super (40W / MAXN_SUPER)", arch="sm_87", kind="jetson", source=_NX_SUPER_SOURCE,
         bandwidth_gbs=_NX_BANDWIDTH, memory_gb=_p(16), l2_mb=None, sm_count=8, usable_memory_gb=_ORIN_NX_16GB_USABLE,
         gpu_clock_mhz=_p(1173, "the 40W cap; MAXN_SUPER is uncapped and may allow more", unverified=True),
         mem_clock_mhz=_p(3199, "EMC max of the 102.4 GB/s figure", derived=True), native=_AMPERE,
         peaks_tflops=_orin_gpu_peaks(8, 1173, "GPU only, at the 40W cap", clock_unverified=True)),
    dict(key="jetson_orin_nx_8gb_super", family="jetson", aliases=("orin_nx_8gb_super",),
         name="Jetson Orin NX 8GB Super (40W / MAXN_SUPER)", arch="sm_87", kind="jetson", source=_NX_SUPER_SOURCE,
         bandwidth_gbs=_NX_BANDWIDTH, memory_gb=_p(8), l2_mb=None, sm_count=_NX_8GB_SMS,
         usable_memory_gb=_ORIN_NX_8GB_USABLE,
         gpu_clock_mhz=_p(1173, "the 40W cap; MAXN_SUPER is uncapped and may allow more", unverified=True),
         mem_clock_mhz=_p(3199, "EMC max of the 102.4 GB/s figure", derived=True), native=_AMPERE,
         peaks_tflops=_orin_gpu_peaks(8, 1173, "GPU only, at the 40W cap", clock_unverified=True)),
    dict(key="h100_sxm", family="h100", aliases=("h100", "h100_sxm5"), name="NVIDIA H100 SXM5 80GB", arch="sm_90", kind="gpu",
         source="NVIDIA H100 datasheet (sparse column marked *; dense figures used)",
         bandwidth_gbs=_p(3350), memory_gb=_p(80), l2_mb=50, sm_count=132, gpu_clock_mhz=None,
         mem_clock_mhz=None, native=_ADA_HOPPER,
         peaks_tflops=dict(fp32=_p(67), tf32=_p(494.7), fp16=_p(989.4), bf16=_p(989.4), fp8=_p(1979),
                           int8=_p(1979))),
    dict(key="h100_pcie", family="h100", aliases=(), name="NVIDIA H100 PCIe 80GB", arch="sm_90", kind="gpu",
         source="NVIDIA H100 datasheet", bandwidth_gbs=_p(2000), memory_gb=_p(80), l2_mb=50, sm_count=114,
         gpu_clock_mhz=None, mem_clock_mhz=None, native=_ADA_HOPPER,
         peaks_tflops=dict(fp32=_p(51), tf32=_p(378), fp16=_p(756), bf16=_p(756), fp8=_p(1513), int8=_p(1513))),
    dict(key="h100_nvl", family="h100", aliases=("h100nvl",), name="NVIDIA H100 NVL 94GB (one GPU of the pair)",
         arch="sm_90", kind="gpu",
         source=("NVIDIA H100 datasheet, NVL column per GPU (sparse figures marked *, halved here), as quoted by "
                 "secondary sources: not read from NVIDIA's sheet here, so every number is unverified"),
         bandwidth_gbs=_p(3900, "HBM3; some sheets: 3.94 TB/s", unverified=True), memory_gb=_p(94, unverified=True),
         l2_mb=_p(50, "as H100 SXM (same GH100 die)", derived=True, unverified=True),
         sm_count=_p(132, "as H100 SXM; secondary sources", unverified=True),
         gpu_clock_mhz=None, mem_clock_mhz=None, native=_ADA_HOPPER,
         peaks_tflops=dict(fp32=_p(60, unverified=True), tf32=_p(417.5, "835 sparse / 2", unverified=True),
                           fp16=_p(835.5, "1671 sparse / 2", unverified=True),
                           bf16=_p(835.5, "1671 sparse / 2", unverified=True),
                           fp8=_p(1670.5, "3341 sparse / 2", unverified=True),
                           int8=_p(1670.5, "3341 sparse / 2", unverified=True))),
    dict(key="h200", family="h200", aliases=("h200_sxm",), name="NVIDIA H200 SXM 141GB", arch="sm_90", kind="gpu",
         source="NVIDIA H200 datasheet", bandwidth_gbs=_p(4800), memory_gb=_p(141),
         l2_mb=_p(50, "not on the H200 sheet: the H100's, the reference calling it the same die", derived=True),
         sm_count=_p(132, "same die as H100"),
         gpu_clock_mhz=None, mem_clock_mhz=None, native=_ADA_HOPPER,
         peaks_tflops=dict(fp32=_p(67), tf32=_p(494.7), fp16=_p(989.5), bf16=_p(989.5), fp8=_p(1979),
                           int8=_p(1979))),
    dict(key="a100", family="a100", aliases=("a100_sxm", "a100_80gb"), name="NVIDIA A100 80GB SXM", arch="sm_80", kind="gpu",
         source="NVIDIA A100 datasheet", bandwidth_gbs=_p(2039), memory_gb=_p(80), l2_mb=40, sm_count=108,
         gpu_clock_mhz=_p(1410), mem_clock_mhz=None, native=_AMPERE,
         peaks_tflops=dict(fp32=_p(19.5), tf32=_p(156), fp16=_p(312), bf16=_p(312), int8=_p(624),
                           int4=_p(1248))),
    dict(key="b200", family="b200", aliases=("hgx_b200",), name="NVIDIA B200 (HGX, 1000 W)", arch="sm_100", kind="gpu",
         source="NVIDIA HGX B200 table",
         bandwidth_gbs=_p(7700, "some sheets: 8000", unverified=True), memory_gb=_p(180, "some: 192", unverified=True),
         l2_mb=None, sm_count=_p(148, unverified=True), gpu_clock_mhz=None, mem_clock_mhz=None, native=_BLACKWELL,
         peaks_tflops=dict(fp32=_p(75), tf32=_p(1100), fp16=_p(2250), bf16=_p(2250), fp8=_p(4500),
                           int8=_p(4500), fp4=_p(9000, "18000 sparse / 2"))),
    dict(key="rtx4090", family="rtx4090", aliases=("4090",), name="NVIDIA GeForce RTX 4090", arch="sm_89", kind="gpu",
         source="NVIDIA Ada whitepaper", bandwidth_gbs=_p(1008), memory_gb=_p(24), l2_mb=72, sm_count=128,
         gpu_clock_mhz=_p(2520), mem_clock_mhz=None, native=_ADA_HOPPER,
         peaks_tflops=dict(fp32=_p(82.6), tf32=_p(82.6), fp16=_p(165.2, "fp32 accumulate (330.3 fp16 acc)"),
                           bf16=_p(165.2, "fp32 accumulate"),
                           fp8=_p(330.3, "fp32 accumulate (660.6 with fp16 accumulate)"), int8=_p(660.6))),
    dict(key="rtx5090", family="rtx5090", aliases=("5090",), name="NVIDIA GeForce RTX 5090", arch="sm_120", kind="gpu",
         source="NVIDIA Blackwell GeForce spec sheets", bandwidth_gbs=_p(1792), memory_gb=_p(32), l2_mb=96,
         sm_count=170, gpu_clock_mhz=_p(2407), mem_clock_mhz=None, native=_BLACKWELL,
         peaks_tflops=dict(fp32=_p(104.8), tf32=_p(104.8, derived=True), fp16=_p(209.5, "fp32 accumulate (419 fp16 acc)"),
                           bf16=_p(209.5, "fp32 accumulate"),
                           fp8=_p(419, "fp32 accumulate (838 with fp16 accumulate): 2x the FP16 fp32-accumulate rate, "
                                  "the ratio Ada's sheet gives the 4090 (330.3 vs 165.2). The reference's 838 (FP4 / 2) "
                                  "names no accumulator; mmapeak on a 5090 measured FP8 mma at 370 TFLOP/s with fp32 "
                                  "accumulate, 737 with fp16 (main-horse.github.io/posts/5090-mm-perf)",
                                  derived=True, unverified=True),
                           int8=_p(838, unverified=True),
                           fp4=_p(1676, "3352 sparse / 2"))),
    # The host CPU has no datasheet here: roofline_kernels.device builds a host entry with peaks derived from
    # the core count, clock and SIMD width, and `roofline calibrate` measures the real ones.
    dict(key="cpu", family="cpu", aliases=("host", "host_cpu"), name="host CPU (peaks come from detection or calibration)",
         arch="cpu", kind="cpu", source="none: measure with `python -m roofline calibrate`",
         bandwidth_gbs=None, memory_gb=None, l2_mb=None, sm_count=None, gpu_clock_mhz=None, mem_clock_mhz=None,
         native=("fp32",), peaks_tflops={}),
]
