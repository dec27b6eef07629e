"""Every efficiency floor of tolerances.toml is attainable by the path it binds, on every GPU of its family.

A compute-bound case is priced at the peak of the class ``predict`` picks for its kernel; it can reach at most
peak(units its math really runs on) / peak(class it is priced at). The int8 weight-only path was priced at the
bf16 tensor-core peak while CUDA's kernel multiplies in fp32 on CUDA cores: on an H100 at most 67 / 989 = 7% of
its roof, against a floor of 25%, so it failed for certain. The units each path runs on are read here from the
sources, apart from the product's own table (``roofline_kernels.ops.KERNEL_UNITS``).
"""
import pytest

from roofline import REGISTRY, predict
from roofline_kernels.ops import GEMM_KERNELS, gemm_formats, priced_gemm
from tests.validation.tolerances import tolerance

# (units the math runs on, on CUDA; where that is said)
REAL_UNITS = {
    "fp32": ("fp32", "F.linear -> cuBLAS SGEMM; torch.backends.cuda.matmul.allow_tf32 defaults to False: CUDA cores"),
    "bf16": ("bf16", "F.linear -> cuBLAS bf16 GEMM on tensor cores, fp32 accumulate"),
    "fp16": ("fp16", "F.linear -> cuBLAS fp16 GEMM on tensor cores, fp32 accumulate"),
    "fp8_e4m3": ("fp8", "torch._scaled_mm -> cuBLASLt FP8 GEMM (ScaledBlas.cpp _scaled_gemm)"),
    "fp8_e5m2": ("fp8", "torch._scaled_mm -> cuBLASLt FP8 GEMM (ScaledBlas.cpp _scaled_gemm)"),
    "int8": ("int8", "torch._int_mm -> cuBLASLt int8 GEMM (Blas.cpp _int_mm_out_cuda)"),
    "int8/bf16": ("fp32", "aten._weight_int8pack_mm -> int8mm.cu weight_int8pack_mm_kernel: fp32 FMAs, no tensor cores"),
    "int4_tinygemm/bf16": ("bf16", "aten._weight_int4pack_mm -> int4mm.cu (tinygemm): int4 dequantized in registers, "
                                   "bf16 mma on tensor cores"),
    "nvfp4": ("fp4", "torch._scaled_mm block-scaled FP4 (cuBLASLt)"),
    "mxfp4": ("fp4", "F.scaled_mm -> f4f4bf16 (ScaledBlas.cpp _scaled_mxfp4_mxfp4)"),
}
GPUS = [k for k, hw in REGISTRY.items() if hw.kind in ("gpu", "jetson") and hw.peaks]


def test_every_gemm_kernel_has_its_units_named():
    assert sorted(REAL_UNITS) == sorted(label for label, _ in GEMM_KERNELS)


@pytest.mark.parametrize("key", GPUS)
def test_every_compute_floor_is_attainable_by_the_units_the_path_runs_on(key):
    hw = REGISTRY[key]
    checked = 0
    for label, kwargs in GEMM_KERNELS:
        tol = tolerance(hw.family, "compute", label)
        if tol.floor is None:
            continue
        units, where = REAL_UNITS[label]
        w, a, _ = gemm_formats(**kwargs)
        cost, _ = priced_gemm("gemm", 4096, 4096, 4096, w, a, "bf16", "cuda")
        try:
            priced = predict(cost, hw).compute_class
        except ValueError:  # no math path on this GPU: the case is refused, no floor binds
            continue
        if units not in hw.peaks or priced not in hw.peaks:
            continue
        ceiling = hw.peaks[units].value / hw.peaks[priced].value
        assert tol.floor <= ceiling, (f"{label} on {key}: priced at the {priced} peak but its math runs on {units} "
                                      f"units ({where}): it can reach at most {ceiling:.0%} of that roof, under its "
                                      f"floor {tol.floor:.0%} ({tol.floor_source})")
        checked += 1
    assert checked


def test_int8_weight_only_is_priced_at_the_fp32_cuda_cores_and_reported():
    cost, _ = priced_gemm("gemm", 2048, 4096, 4096, "int8", "bf16", "bf16", "cuda")
    p = predict(cost, REGISTRY["h100_sxm"])
    assert p.compute_class == "fp32" and "int8mm.cu" in p.method and p.peak_tflops == 67
    for bound in ("memory", "compute"):
        tol = tolerance("h100", bound, "int8/bf16")
        assert tol.floor is None and "int8mm.cu" in tol.reported and tol.floor_source.startswith("reported")
    # the CPU's kernel is another kernel: its pricing is the formats'
    cpu_cost, _ = priced_gemm("gemm", 2048, 4096, 4096, "int8", "bf16", "bf16", "cpu")
    assert cpu_cost.compute_class is None
