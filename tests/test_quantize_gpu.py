"""torchao's CUDA configs (need a GPU: skipped elsewhere with what was required and what was detected)."""
import pytest
import torch

from quantize.apply import apply_quantization
from quantize.configs import QuantizationUnsupported

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("prec", ["int8", "int8_dynamic", "int4", "fp8", "fp8_weight_only", "nvfp4", "mxfp4"])
def test_cuda_quantization_or_a_named_refusal(prec, device_info):
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024, bias=False)).to("cuda", torch.bfloat16)
    x = torch.randn(32, 1024, device="cuda", dtype=torch.bfloat16)
    ref = model(x).float()
    try:
        rep = apply_quantization(model, prec, device_info)
    except QuantizationUnsupported as e:
        pytest.skip(f"not on this GPU: {e}")
    assert rep.quantized == ["0"] and rep.bytes_after < rep.bytes_before
    assert ((model(x).float() - ref).norm() / ref.norm()).item() < 0.2
