"""No published measurement beats a datasheet roof: a roof under a measured healthy kernel fails physics on the board.

GB10 kept FP8 unhalved at 250 (CUTLASS FP8 was measured at 188, above the 125 a halved rate allows) but halved
its 16-bit rate to 62, while a torch fp16 GEMM sustains ~95 TFLOP/s there: a cuBLAS bf16 prefill would have
failed physics. Each figure below is a published measurement with its source (../shared/reference/hardware.md,
"Measured figures others published", and what it cites), never one of this host.
"""
import pytest

from roofline import REGISTRY

PUBLISHED = [
    # (registry key, compute class, TFLOP/s measured, what and where)
    ("gb10", "fp8", 188, "CUTLASS sm121 FP8 GEMM; NVIDIA developer forum thread 359960 (reference table)"),
    ("gb10", "fp4", 356, "CUTLASS sm121 NVFP4 GEMM 4096x14336x4096; NVIDIA developer forum thread 359960"),
    ("gb10", "fp16", 95, "torch fp16 matmul 8192^3 (cuBLAS, fp32 compute type), ~88 iterations/s sustained; "
                         "GuigsEvt/dgx_spark_config images/benchmark_upgraded_setup_dgx_gemm_8192.png"),
    ("h100_pcie", "fp16", 627, "cuBLAS FP16 GEMM (reference table: public H100 ceiling write-up)"),
]


@pytest.mark.parametrize("key, cls, tflops, source", PUBLISHED, ids=[f"{k}-{c}" for k, c, _, _ in PUBLISHED])
def test_no_published_measurement_beats_the_datasheet_roof(key, cls, tflops, source):
    peak = REGISTRY[key].peaks[cls].value
    assert tflops <= peak, f"{key} {cls}: measured {tflops} TFLOP/s ({source}) beats the roof {peak}"


def test_gb10_keeps_one_accumulator_convention():
    """FP8 unhalved at the FP4 / 2 rate, so the 16-bit rate is FP8 / 2, the ratio of every Hopper/Blackwell sheet."""
    p = REGISTRY["gb10"].peaks
    assert p["fp16"].value == p["bf16"].value == p["fp8"].value / 2 == p["fp4"].value / 4
    assert "GuigsEvt/dgx_spark_config" in p["bf16"].note
