"""torchao's CUDA paths on a real GPU (skipped elsewhere with what was required and what was detected).

A pair whose capability gate (``roofline_kernels.torchao_paths``) says it runs here must build, probe and be
right; only the gate's refusals skip, so a path that quantizes but cannot run fails instead of hiding.
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from roofline_kernels.torchao_paths import arch_refusal, find_path, quantized_linear
from roofline_quantize.apply import apply_quantization, tensor_storage_bytes
from roofline_quantize.configs import QuantizationUnsupported, check_supported, get_precision
from roofline import tensor_bytes

pytestmark = pytest.mark.gpu
CUDA = "cuda"  # the gpu marker's device: tests here run only where torch sees a CUDA GPU
PAIRS = [("int8", "bf16"), ("int8", "int8"), ("int4_tinygemm", "bf16"), ("fp8_e4m3", "fp8_e4m3"),
         ("fp8_e4m3", "bf16"), ("nvfp4", "nvfp4"), ("mxfp4", "mxfp4")]
# K = 1024: tinygemm's Int4TilePackedTo4dTensor pads K to a multiple of 1024, so nothing is padded here
W32 = torch.randn(256, 1024, generator=torch.Generator().manual_seed(0)) / 32


def capability():
    return tuple(torch.cuda.get_device_capability())


class _Calls(TorchDispatchMode):
    supports_higher_order_operators = True  # torchao's safe_int_mm calls the out_dtype HOP

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.calls.append((str(func), [(tuple(a.shape), a.dtype) for a in args if isinstance(a, torch.Tensor)]))
        return out


@pytest.mark.parametrize("weight, act", PAIRS)
def test_each_torchao_path_runs_here_or_is_refused_by_its_gate(weight, act):
    cap = capability()
    why = arch_refusal(weight, act, cap)
    if why:
        pytest.skip(f"not on sm_{cap[0]}{cap[1]}: {why}")
    q = quantized_linear(W32, weight, act, CUDA, cap)  # raises (fails the test) when the probe cannot run
    assert q.probed and q.probe_note == ""
    n, k = W32.shape
    stored = tensor_storage_bytes(q.module.weight)
    assert tensor_bytes(weight, n * k) <= stored <= tensor_bytes(weight, n * k) * (1 + 5 / k)
    x = torch.randn(64, k, device=CUDA, dtype=torch.bfloat16)
    with torch.no_grad():
        y = q.module(x).float()
    ref = x.float() @ W32.to(CUDA).t()
    assert ((y - ref).norm() / ref.norm()).item() < find_path(weight, act).max_rel_error


def test_int8_weight_only_reads_the_int8_weight_on_the_gpu():
    q = quantized_linear(W32, "int8", "bf16", CUDA, capability())
    with torch.no_grad(), _Calls() as seen:
        q.module(torch.randn(1, W32.shape[1], device=CUDA, dtype=torch.bfloat16))
    ops = [name for name, _ in seen.calls]
    assert "aten._weight_int8pack_mm.default" in ops
    shapes = [shape for _, args in seen.calls for shape, _ in args]
    assert shapes and tuple(W32.shape[::-1]) not in shapes  # tensors went by, and none was a [K, N] copy


def test_w8a8_below_17_rows_falls_back_to_fp32_as_its_path_says():
    """torch._int_mm refuses M <= 16 on CUDA and torchao multiplies in fp32 instead (kernel/intmm.py:88-93):
    this pins the 9 bytes per weight the path description states, so a torch/torchao change shows here."""
    q = quantized_linear(W32, "int8", "int8", CUDA, capability())
    with torch.no_grad(), _Calls() as seen:
        q.module(torch.randn(1, W32.shape[1], device=CUDA, dtype=torch.bfloat16))
    to_fp32 = [shapes for name, shapes in seen.calls if name == "aten._to_copy.default"
               and any(shape == tuple(W32.shape[::-1]) for shape, _ in shapes)]
    assert to_fp32 and "M <= 16" in q.path


@pytest.mark.parametrize("prec", ["int8", "int8_dynamic", "int4", "fp8", "fp8_weight_only", "nvfp4", "mxfp4"])
def test_cuda_quantization_or_a_named_refusal(prec, device_info):
    try:
        check_supported(get_precision(prec), device_info)
    except QuantizationUnsupported as e:
        pytest.skip(f"not on this GPU: {e}")
    model = torch.nn.Sequential(torch.nn.Linear(1024, 1024, bias=False)).to(CUDA, torch.bfloat16)
    x = torch.randn(32, 1024, device=CUDA, dtype=torch.bfloat16)
    ref = model(x).float()
    rep = apply_quantization(model, prec, device_info)  # the gate passed: a refusal here fails the test
    assert rep.quantized == ["0"] and rep.bytes_after < rep.bytes_before
    assert ((model(x).float() - ref).norm() / ref.norm()).item() < 0.2
