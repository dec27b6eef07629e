"""CUDA kernels (need a GPU: skipped elsewhere with what was required and what was detected)."""
import pytest

from roofline_kernels.ops import UnsupportedKernel, make_attention, make_gemm

pytestmark = pytest.mark.gpu

GPU_CASES = [dict(precision="fp32"), dict(precision="bf16"), dict(precision="fp16"), dict(precision="fp8_e4m3"),
             dict(precision="int8"), dict(weight="int8", act="bf16"), dict(weight="int4_tinygemm", act="bf16"),
             dict(precision="nvfp4")]


@pytest.mark.parametrize("kwargs", GPU_CASES, ids=lambda k: "-".join(map(str, k.values())))
def test_cuda_gemm_matches_reference_or_says_unsupported(kwargs):
    try:
        k = make_gemm(64, 512, 512, device="cuda", **kwargs)
    except UnsupportedKernel as e:
        assert e.device == "cuda"
        pytest.skip(f"unsupported on this GPU: {e}")
    assert k.check() <= max(k.rtol, k.atol) and not k.emulated


def test_cuda_attention_decode_gqa():
    k = make_attention(2, 32, 8, 1, 1024, 128, precision="bf16", device="cuda")
    assert k.check() <= k.atol
