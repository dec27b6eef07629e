"""CUDA kernels (need a GPU: skipped elsewhere with what was required and what was detected)."""
import pytest

from roofline_kernels.ops import GEMM_KERNELS, UnsupportedKernel, gemm_formats, gemm_refusal, make_gemm, make_attention

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("label, kwargs", GEMM_KERNELS, ids=[label.replace("/", "_") for label, _ in GEMM_KERNELS])
def test_cuda_gemm_matches_reference_or_says_unsupported(label, kwargs):
    """Every kernel the suite and the spot check run (GEMM_KERNELS), E5M2 and MXFP4 included: it runs and is right,
    or it is refused up front, and only for a rule CUDA enforces on this GPU (kernel.GEMM_RULES) or a path it lacks."""
    import torch
    try:
        k = make_gemm(64, 512, 512, device="cuda", **kwargs)
    except UnsupportedKernel as e:
        assert e.device == "cuda"
        w, a, _ = gemm_formats(**kwargs)
        rule = gemm_refusal(w, a, 64, 512, 512, tuple(torch.cuda.get_device_capability()))
        pytest.skip(f"unsupported on this GPU: {e}" + ("" if rule else " (a torchao path refused it)"))
    assert k.check() <= max(k.rtol, k.atol) and not k.emulated


def test_cuda_attention_decode_gqa():
    k = make_attention(2, 32, 8, 1, 1024, 128, precision="bf16", device="cuda")
    assert k.check() <= k.atol
