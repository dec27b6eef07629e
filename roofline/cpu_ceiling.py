"""The host CPU's compute ceilings, derived from its ISA and clocks (a CPU has no datasheet in the registry).

A ceiling must bound: the physics check fails a measurement that beats it, so every choice below errs
high, and each peak carries its derivation. What kernels really reach is calibration's business
(``roofline_kernels/calibrate.py``): a roof measured in seconds on a shared host is an expectation, not a
ceiling (a healthy int8 GEMM once "beat" a peak calibrated while the host ran slow at 172%).

peak = cores x max clock x FLOPs per cycle per core of the units that run the format:

1. FP32: two FMA pipes of the widest vector an x86 CPU advertises (AVX-512: 2 x 16 lanes x 2 = 64 FLOP/cycle;
   AVX2+FMA: 32; SSE2: 16); two pipes is the most an x86 core has. An Arm core (``asimd``) has more 128-bit
   pipes: up to six (Cortex-X925, GB10's big cores; Neoverse V2 four, Cortex-A78AE two), so 6 x 4 lanes x 2 = 48;
   with SVE up to two 512-bit pipes (A64FX: 64); with SME an outer-product unit (512 at a 512-bit SVL).
   A part with fewer pipes only makes the ceiling looser.
2. BF16: AMX-BF16 1024 FLOP/cycle/core; AVX512-BF16 (VDPBF16PS: a pair of products per FP32 lane) 2x FP32.
   Without either, bf16 is converted and FMA'd in FP32, so the FP32 rate bounds it.
   Arm's BF16 (BFMMLA: a 2x4 by 4x2 block, 16 products in a 128-bit pipe where an FMA does 4) 4x FP32.
3. FP16: AMX-FP16 1024; AVX512-FP16 2x FP32; Arm's FP16 arithmetic (``asimdhp``: 8 lanes of 128 bits) 2x FP32;
   else converted (F16C): the FP32 rate.
4. INT8: AMX-INT8 2048 OP/cycle/core; VNNI (VPDPBUSD: four u8 x s8 products per 32-bit lane) 4x FP32.
   Without VNNI the same products take VPMADDUBSW + VPMADDWD, never more per cycle than VNNI: 4x FP32.
   Arm's I8MM (SMMLA: 32 products per 128-bit pipe) 8x FP32; its dot product (``asimddp``, SDOT) 4x.
5. FP8 and FP4 have no CPU units: emulated through FP32, so the FP32 rate bounds them.
6. Clock: cpufreq's ``cpuinfo_max_freq`` where the OS exposes it. A VM shows only a base (or current) clock
   in /proc/cpuinfo while boost runs above it, up to ~1.9x base on shipping parts (Xeon Platinum 8480+:
   2.0 -> 3.8 GHz; Core i9-13900K: 3.0 -> 5.8 GHz), so that clock x ``BOOST_ALLOWANCE`` stands in, said.

AMX rates: Intel, "Intel Advanced Matrix Extensions (Intel AMX) overview" (4th Gen Xeon): 2048 INT8 and
1024 BF16 operations per cycle per core.
"""
from __future__ import annotations

from dataclasses import dataclass

BOOST_ALLOWANCE = 2.0
AMX_SOURCE = "Intel AMX overview (4th Gen Xeon): 2048 INT8 / 1024 BF16 ops per cycle per core"
CLASSES = ("fp32", "bf16", "fp16", "int8", "fp8", "fp4")


def fp32_flops_per_cycle(flags: frozenset[str]) -> tuple[int, str]:
    """(FP32 FLOP/cycle/core, how): two FMA pipes of the widest vector advertised."""
    if "avx512f" in flags:
        return 64, "AVX-512: 2 FMA pipes x 16 lanes x 2"
    if "avx2" in flags and "fma" in flags:
        return 32, "AVX2+FMA: 2 FMA pipes x 8 lanes x 2"
    if "sme" in flags:  # outer products into the ZA tile: 16 x 16 FP32 a cycle at a 512-bit SVL, an upper bound
        return 512, "Arm SME: a 16 x 16 FP32 outer product a cycle (512-bit SVL)"
    if "sve" in flags:  # A64FX: two 512-bit SVE FMA pipes; every 128/256-bit SVE core is under it
        return 64, "Arm SVE: up to 2 FMA pipes x 16 lanes x 2 (A64FX, 512-bit)"
    if "asimd" in flags:
        return 48, "Arm 128-bit ASIMD: up to 6 FMA pipes (Cortex-X925) x 4 lanes x 2"
    if "sse2" in flags:
        return 16, "SSE2: 2 FMA pipes x 4 lanes x 2"
    return 2, "scalar: 1 FMA x 2"


def flops_per_cycle(flags: frozenset[str]) -> dict[str, tuple[int, str, bool]]:
    """Per compute class: (FLOP or OP per cycle per core, how, native units). Every class is bounded."""
    fp32, how32 = fp32_flops_per_cycle(flags)
    out = {"fp32": (fp32, how32, True)}
    if "amx_bf16" in flags:
        out["bf16"] = (1024, f"AMX-BF16 ({AMX_SOURCE})", True)
    elif "avx512_bf16" in flags:
        out["bf16"] = (2 * fp32, "AVX512-BF16 VDPBF16PS: 2x FP32", True)
    elif {"asimd", "bf16"} <= flags:
        out["bf16"] = (4 * fp32, "Arm BF16 BFMMLA: 16 products per 128-bit pipe, 4x FP32", True)
    else:
        out["bf16"] = (fp32, "no BF16 units: converted and FMA'd in FP32, bounded by the FP32 rate", False)
    if "amx_fp16" in flags:
        out["fp16"] = (1024, f"AMX-FP16 ({AMX_SOURCE})", True)
    elif "avx512_fp16" in flags:
        out["fp16"] = (2 * fp32, "AVX512-FP16: 2x FP32", True)
    elif {"asimd", "asimdhp"} <= flags:
        out["fp16"] = (2 * fp32, "Arm FP16 arithmetic (asimdhp): 8 lanes, 2x FP32", True)
    else:
        out["fp16"] = (fp32, "no FP16 units: converted (F16C) and FMA'd in FP32, bounded by the FP32 rate", False)
    if "amx_int8" in flags:
        out["int8"] = (2048, f"AMX-INT8 ({AMX_SOURCE})", True)
    elif {"avx512_vnni", "avx_vnni"} & flags:
        out["int8"] = (4 * fp32, "VNNI VPDPBUSD: 4 products per 32-bit lane, 4x FP32", True)
    elif {"asimd", "i8mm"} <= flags:
        out["int8"] = (8 * fp32, "Arm I8MM SMMLA: 32 products per 128-bit pipe, 8x FP32", True)
    elif {"asimd", "asimddp"} <= flags:
        out["int8"] = (4 * fp32, "Arm dot product SDOT: 4 products per 32-bit lane, 4x FP32", True)
    else:
        out["int8"] = (4 * fp32, "no VNNI: VPMADDUBSW+VPMADDWD, never faster than VNNI's 4x FP32", False)
    for cls in ("fp8", "fp4"):
        out[cls] = (fp32, f"no {cls.upper()} units: emulated through FP32, bounded by the FP32 rate", False)
    return out


@dataclass(frozen=True)
class CpuCeiling:
    """A compute ceiling with its derivation (``how``), for the record and the report."""
    compute_class: str
    tflops: float
    how: str
    native: bool


def cpu_ceilings(flags: frozenset[str], cores: int, mhz: float, clock_is_max: bool,
                 clock_source: str = "") -> dict[str, CpuCeiling]:
    """Every compute class's ceiling on this CPU: cores x max clock x FLOPs per cycle, derivation included."""
    if cores < 1 or not mhz or mhz <= 0:
        raise ValueError(f"a CPU ceiling needs cores >= 1 and a clock in MHz > 0; got cores={cores!r}, mhz={mhz!r}")
    clock = mhz if clock_is_max else mhz * BOOST_ALLOWANCE
    clock_how = (f"{mhz:g} MHz ({clock_source or 'max clock'})" if clock_is_max else
                 f"{mhz:g} MHz ({clock_source or 'base clock'}) x {BOOST_ALLOWANCE:g} boost allowance "
                 "(no max clock visible)")
    out = {}
    for cls, (per_cycle, how, native) in flops_per_cycle(flags).items():
        out[cls] = CpuCeiling(cls, cores * clock * 1e6 * per_cycle / 1e12,
                              f"{cores} cores x {clock_how} x {per_cycle} FLOP/cycle ({how})", native)
    return out
