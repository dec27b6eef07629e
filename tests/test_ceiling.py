"""Ceilings that truly bound: a CPU's ISA-derived compute peaks and the best DRAM bandwidth it has shown.

The case behind them: a healthy int8 GEMM measured at 0.75 TFLOP/s "failed physics" at 172% of an int8 peak
calibrated at 0.43 while the host ran slow. Held to the ISA ceiling it passes; held to a number it truly
cannot beat, a defect (bytes under-counted, a format mis-labelled) still fails.
"""
import dataclasses

import pytest

from roofline import predict
from roofline.cpu_ceiling import BOOST_ALLOWANCE, cpu_ceilings, flops_per_cycle
from roofline.operators import gemm
from roofline_kernels.ceiling import ceiling_hardware, load_dram_history, offer_dram
from roofline_kernels.device import detect, host_cpu_hardware, read_cpu_info
from tests.fakes.host import fake_cpu_tree


@pytest.mark.parametrize("flags, cls, per_cycle, native", [
    ("avx2 fma", "fp32", 32, True),
    ("avx512f", "fp32", 64, True),
    ("sse2", "fp32", 16, True),
    ("avx512f avx512_bf16", "bf16", 128, True),
    ("avx512f", "bf16", 64, False),             # no BF16 units: FP32 FMAs bound it
    ("avx512f avx512_vnni", "int8", 256, True),
    ("avx512f", "int8", 256, False),            # without VNNI never faster than VNNI's rate
    ("avx512f amx_bf16 amx_int8", "int8", 2048, True),
    ("avx512f amx_bf16 amx_int8", "bf16", 1024, True),
    ("avx2 fma", "fp8", 32, False),
])
def test_flops_per_cycle_by_unit_class(flags, cls, per_cycle, native):
    got, how, is_native = flops_per_cycle(frozenset(flags.split()))[cls]
    assert (got, is_native) == (per_cycle, native) and how


def test_a_vm_without_a_max_clock_gets_the_boost_allowance_and_says_so():
    at_max = cpu_ceilings(frozenset({"avx512f"}), 2, 3000, clock_is_max=True, clock_source="cpufreq")["fp32"]
    base = cpu_ceilings(frozenset({"avx512f"}), 2, 3000, clock_is_max=False, clock_source="/proc/cpuinfo")["fp32"]
    assert at_max.tflops == pytest.approx(2 * 3000e6 * 64 / 1e12)
    assert base.tflops == pytest.approx(BOOST_ALLOWANCE * at_max.tflops) and "boost allowance" in base.how
    assert "2 cores" in base.how and "64 FLOP/cycle" in base.how


@pytest.mark.parametrize("cores, mhz", [(0, 3000), (2, 0), (2, None), (2, -1)])
def test_a_ceiling_needs_cores_and_a_clock(cores, mhz):
    with pytest.raises(ValueError, match="cores >= 1 and a clock"):
        cpu_ceilings(frozenset(), cores, mhz, True)


def test_the_172_percent_case_passes_its_ceiling(tmp_path):
    """Zen 4-like 2-core VM at 2.45 GHz base (AVX-512 VNNI/BF16): int8 ceiling 2 x 4.9 GHz x 256 = 2.5 TOP/s."""
    cpu = dataclasses.replace(read_cpu_info(fake_cpu_tree(tmp_path, flags="avx2 fma avx512f avx512_vnni avx512_bf16",
                                                          max_khz="")), cores=2)
    c = cpu_ceilings(cpu.flags, 2, 2450, False)["int8"]
    assert c.tflops > 0.75 > 0.43  # the healthy kernel's speed, and the slow calibration's peak


def test_the_dram_ceiling_is_the_best_shown_and_only_rises(tmp_path, monkeypatch):
    info = detect("cpu")
    assert load_dram_history(info, tmp_path)["best_gbs"] == 0.0
    offer_dram(info, tmp_path, 30.0, "calibration 1")
    offer_dram(info, tmp_path, 25.0, "calibration 2 (a neighbour)")
    hist = offer_dram(info, tmp_path, 33.0, "re-measured")
    assert hist["best_gbs"] == 33.0 and [x["gbs"] for x in hist["looks"]] == [30.0, 25.0, 33.0]
    assert load_dram_history(info, tmp_path)["best_how"] == "re-measured"
    with pytest.raises(ValueError, match="positive number of GB/s"):
        offer_dram(info, tmp_path, float("nan"), "x")


def test_a_cpu_ceiling_entry_prices_every_class_and_bytes_at_the_best_dram(tmp_path):
    info = detect("cpu")
    hw = host_cpu_hardware(info.cpu)
    assert ceiling_hardware(info, hw, tmp_path) is None  # no DRAM look yet: no ceiling, said by the caller
    offer_dram(info, tmp_path, 40.0, "calibration")
    ceil = ceiling_hardware(info, hw, tmp_path)
    assert ceil.bandwidth.value == 40.0 and {"fp32", "bf16", "int8", "fp16", "fp8"} <= set(ceil.peaks)
    # an int8 GEMV is held to bytes / best DRAM: 16 MiB over 40 GB/s
    p = predict(gemm(1, 4096, 4096, precision="int8"), ceil, "datasheet")
    assert p.bound == "memory" and p.time_s == pytest.approx(p.bytes / 40e9)
    # a class with no units here still has a (FP32-rate) ceiling, never more than the native ones
    assert ceil.peaks["fp8"].value <= ceil.peaks["int8"].value


def test_a_gpu_is_held_to_its_datasheet():
    from roofline import get_hardware
    hw = get_hardware("h100_sxm")
    gpu = dataclasses.replace(detect("cpu"), kind="cuda")
    assert ceiling_hardware(gpu, hw, None) is hw


def test_measure_flags_a_kernel_beyond_its_ceiling_and_only_reports_one_beyond_its_calibrated_roof(tmp_path):
    """The CLI's measure and spot check hold a kernel to its ceiling too: beyond it is a bug ('BEATS ITS
    CEILING'); beyond the calibrated roof alone means the calibration ran slow."""
    from roofline_kernels.measure import hardware_for, measure_kernel, predict_kernel
    from roofline_kernels.ops import make_gemm
    from roofline_kernels.timer import summarize
    from roofline import Calibration
    info = detect("cpu")
    offer_dram(info, tmp_path, 50.0, "test")
    cal = Calibration(hardware="cpu", peaks_tflops={"fp32": 1.0}, bandwidth_gbs=10.0)  # a slow calibration
    hw = hardware_for(info, cal)
    ceil = ceiling_hardware(info, host_cpu_hardware(info.cpu), tmp_path)
    k = make_gemm(1, 1024, 1024, precision="fp32")
    ceiling_s = predict_kernel(k, ceil, "datasheet")[0]
    for t, beyond_ceiling in ((0.5 * ceiling_s, True), (1.5 * ceiling_s, False)):
        m = measure_kernel(k, info, hw, "cold", "calibrated", with_telemetry=False, ceiling=ceil,
                           timer=lambda *a, t=t: summarize([t] * 10))
        assert m.beats_ceiling is beyond_ceiling and m.beats_roof  # 50 GB/s best shown vs 10 calibrated
        assert m.to_dict()["beats_ceiling"] is beyond_ceiling and m.ceiling_time_s == pytest.approx(ceiling_s)
    m = measure_kernel(k, info, hw, "cold", "calibrated", with_telemetry=False, timer=lambda *a: summarize([1.0] * 10))
    assert m.ceiling_time_s is None and not m.beats_ceiling


def test_a_memory_ceiling_seen_only_under_contention_is_unsettled(tmp_path):
    """Seen: a first calibration under load put the best DRAM at 13.8 GB/s; a healthy int8 GEMV then read 18.5
    and 'failed physics'. Looks taken under contention give the value but do not make it a ceiling."""
    from roofline_kernels.ceiling import dram_settled
    from tests.validation.test_roofline_cases import ceiling_of
    from roofline_kernels.ops import make_gemm
    info = detect("cpu")
    offer_dram(info, tmp_path, 13.8, "calibration under load", contention=True)
    assert not dram_settled(info, tmp_path)
    ceil = ceiling_hardware(info, host_cpu_hardware(info.cpu), tmp_path)
    k = make_gemm(1, 1024, 1024, precision="int8")
    c = ceiling_of(k, ceil, info, False, settled=False)
    assert c.time_s is None and "unsettled" in c.label and "13.8" in c.label
    offer_dram(info, tmp_path, 24.1, "a quiet calibration")
    assert dram_settled(info, tmp_path)
    assert ceiling_of(k, ceiling_hardware(info, host_cpu_hardware(info.cpu), tmp_path), info, False).time_s


def test_a_short_rotation_never_re_reads_the_dram_ceiling_over_a_cached_span():
    # a rotation memory kept short (2 GiB free beside a 480 MiB L3) is partly cached; re-read over that span the
    # "DRAM" look was cache speed (16.5 MiB: 223 GB/s on a host whose DRAM read 43-57) and raised the ceiling for good
    from roofline_kernels.calibrate import cold_span_bytes
    from roofline_kernels.ceiling import remeasure_span
    from roofline_kernels.device import DeviceInfo, read_cpu_info
    info = DeviceInfo("cpu", "cpu", "x", "y", read_cpu_info("/nonexistent"))
    full = cold_span_bytes(info)
    assert remeasure_span(info, full // 8) is None and remeasure_span(info, None) is None  # no re-read, no raise
    assert remeasure_span(info, 3 * full) == 3 * full and remeasure_span(info, full) == full  # its own span
