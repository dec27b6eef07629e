"""Per-precision kernels: inputs built once, a callable to time, and the theory's bytes and FLOPs.

Each builder returns a ``Kernel`` whose ``cost`` comes from ``roofline.operators`` for the formats the
kernel really stores (one formula in one place), whose ``fn`` runs only the kernel, and whose
``reference`` computes the same result in FP32 from the dequantised operands (for correctness
checks). A (precision, device) pair without a kernel raises ``UnsupportedKernel`` naming both.

CPU paths (torch 2.13):
- fp32 / bf16 / fp16: ``F.linear`` (fp16 is converted on CPUs without AVX512-FP16/AMX-FP16: emulated)
- fp8 e4m3/e5m2 W8A8: ``torch._scaled_mm`` (no FP8 units on a CPU: emulated, bf16 output)
- int8 W8A8: ``torch._int_mm`` (int32 output); int8 weight-only: ``aten._weight_int8pack_mm``
- int4 weight-only group 128: ``aten._weight_int4pack_mm_for_cpu`` on a really packed 4-bit weight
  with bf16 scale+zero per group (format ``int4_tinygemm``: 4.25 bits per weight)
CUDA paths are small and isolated in ``_cuda_torchao_kernel`` (torchao configs: int8/int4
weight-only, NVFP4/MXFP4 on Blackwell) and the native ``_scaled_mm`` / ``_int_mm`` calls; they need a
GPU and skip with a reason elsewhere.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from roofline import OpCost, attention, gemm, gemv, get_format
from roofline.operators import operand_formats

INT4_GROUP = 128
_FLOAT_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class UnsupportedKernel(ValueError):
    """No kernel for this (precision, device) pair (a ValueError, like roofline's UnsupportedPathError)."""

    def __init__(self, precision: str, device: str, why: str):
        self.precision, self.device, self.why = precision, device, why
        super().__init__(f"no {precision} kernel on {device}: {why}")


@dataclass
class Kernel:
    op: str
    precision: str
    device: str
    fn: Callable
    reference: Callable
    cost: OpCost
    path: str
    emulated: bool = False
    operands: dict = field(default_factory=dict)  # name -> tensors that hold it (byte accounting)
    rtol: float = 1e-2
    atol: float = 1e-2

    def storage_bytes(self) -> dict:
        return {name: sum(t.numel() * t.element_size() for t in ts) for name, ts in self.operands.items()}

    def check(self) -> float:
        """Max error against the FP32 reference, relative to the reference's scale; raises if too large."""
        import torch
        out, ref = self.fn().float().cpu(), self.reference().float().cpu()
        if out.shape != ref.shape:
            raise AssertionError(f"{self.precision} {self.op}: shape {tuple(out.shape)} != {tuple(ref.shape)}")
        scale = ref.abs().max().clamp_min(1e-6)
        err = ((out - ref).abs().max() / scale).item()
        if not torch.allclose(out, ref, rtol=self.rtol, atol=self.atol * scale.item()):
            raise AssertionError(f"{self.precision} {self.op} on {self.device}: relative error {err:.3g} "
                                 f"exceeds rtol={self.rtol}, atol={self.atol} x scale")
        return err


def _torch():
    import torch
    return torch


def _dtype(name: str):
    return getattr(_torch(), _FLOAT_DTYPES[name])


def _cuda_capability(device: str):
    torch = _torch()
    return torch.cuda.get_device_capability() if device == "cuda" else None


def _rand(shape, gen, device, dtype=None):
    torch = _torch()
    t = torch.randn(*shape, generator=gen, dtype=torch.float32)
    return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)


def _check_device(device):
    if device not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {device!r}; allowed: cpu, cuda")
    if device == "cuda" and not _torch().cuda.is_available():
        raise UnsupportedKernel("any", "cuda", "torch sees no CUDA device (CPU build or no GPU)")


def make_gemm(m, n, k, precision=None, weight=None, act=None, device="cpu", seed=0, op="gemm") -> Kernel:
    """``y[M,N] = x[M,K] @ W[N,K]^T`` in the given precision; see the module docstring for paths."""
    _check_device(device)
    torch = _torch()
    if act is None and weight is None and precision is not None and get_format(precision).compute_class is None:
        act = "bf16"  # a weight-only storage format: the CPU kernels take bf16 activations
    w_fmt, a_fmt, _ = operand_formats(precision, weight, act)
    w, a = w_fmt.name, a_fmt.name
    label = a if w == a else f"{w}/{a}"
    probe = gemm(m, n, k, weight=w, act=a)  # validates the dims once, with the theory's messages
    m, n, k = probe.shape["m"], probe.shape["n"], probe.shape["k"]
    gen = torch.Generator().manual_seed(seed)
    x32, w32 = _rand((m, k), gen, "cpu"), _rand((n, k), gen, "cpu") / k**0.5

    def cost(out):
        return gemm(m, n, k, weight=w, act=a, out=out) if op == "gemm" else gemv(n, k, weight=w, act=a, out=out)

    def kern(fn, ref, out, path, operands, emulated=False, rtol=1e-2, atol=1e-2):
        return Kernel(op, label, device, fn, ref, cost(out), path, emulated, operands, rtol, atol)

    if w == a and w in _FLOAT_DTYPES:
        dt = _dtype(w)
        x, W = x32.to(device, dt), w32.to(device, dt)
        emulated = device == "cpu" and w == "fp16" and not _cpu_has_fp16()
        tol = 1e-4 if w == "fp32" else 2e-2
        return kern(lambda: torch.nn.functional.linear(x, W), lambda: x.float() @ W.float().t(), w,
                    "F.linear" + (" (fp16 converted in software: no AVX512-FP16/AMX-FP16 on this CPU)"
                                  if emulated else ""), {"activations": [x], "weights": [W]}, emulated, tol, tol)

    if w_fmt.compute_class == "fp8" and a_fmt.compute_class == "fp8" and w_fmt.kind == a_fmt.kind == "float":
        cap = _cuda_capability(device)
        if cap is not None and cap < (8, 9):
            raise UnsupportedKernel(label, device, f"FP8 matmul needs sm_89+; this GPU is sm_{cap[0]}{cap[1]}")
        x8 = x32.to(device).to(getattr(torch, "float8_e4m3fn" if a == "fp8_e4m3" else "float8_e5m2"))
        W8 = w32.to(device).to(getattr(torch, "float8_e4m3fn" if w == "fp8_e4m3" else "float8_e5m2"))
        one = torch.tensor(1.0, device=device)
        fn = lambda: torch._scaled_mm(x8, W8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)  # noqa: E731
        try:
            fn()
        except RuntimeError as e:  # CUDA's FP8 GEMMs have shape rules (dims multiples of 16)
            raise UnsupportedKernel(label, device, f"torch._scaled_mm refused {m}x{n}x{k}: {e}") from None
        return kern(fn,
                    lambda: x8.float() @ W8.float().t(), "bf16",
                    "torch._scaled_mm" + (" (emulated: no FP8 units on a CPU)" if device == "cpu" else " (native)"),
                    {"activations": [x8], "weights": [W8]}, emulated=device == "cpu", rtol=2e-2, atol=2e-2)

    if w == a == "int8":
        xi = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8).to(device)
        Wi = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8).to(device)
        fn = lambda: torch._int_mm(xi, Wi.t())  # noqa: E731
        try:
            fn()
        except RuntimeError as e:  # CUDA's _int_mm has shape rules (M > 16, multiples of 8)
            raise UnsupportedKernel(label, device, f"torch._int_mm refused {m}x{n}x{k}: {e}") from None
        return kern(fn, lambda: xi.float() @ Wi.float().t(), "int32", "torch._int_mm (W8A8, int32 output)",
                    {"activations": [xi], "weights": [Wi]}, rtol=0, atol=0)

    if a in ("bf16", "fp16") and w in ("int8", "int4_tinygemm") and device == "cuda":
        return _cuda_torchao_kernel(kern, label, w, a, x32, w32, device)

    if a == "bf16" and w == "int8":
        x = x32.to(torch.bfloat16)
        scale = (w32.abs().amax(dim=1) / 127).clamp_min(1e-8)
        Wi = torch.round(w32 / scale[:, None]).clamp(-127, 127).to(torch.int8)
        s = scale.to(torch.bfloat16)
        return kern(lambda: torch.ops.aten._weight_int8pack_mm(x, Wi, s),
                    lambda: (x.float() @ Wi.float().t()) * s.float(), "bf16",
                    "aten._weight_int8pack_mm (int8 weight-only, per-channel bf16 scale)",
                    {"activations": [x], "weights": [Wi, s]}, rtol=2e-2, atol=2e-2)

    if a == "bf16" and w == "int4_tinygemm":
        if k % INT4_GROUP or n % 16:
            raise UnsupportedKernel(label, device, f"the packed INT4 kernel needs K % {INT4_GROUP} == 0 and "
                                    f"N % 16 == 0; got N={n}, K={k}")
        x = x32.to(torch.bfloat16)
        q, scale, zero = quantize_int4_groupwise(w32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        sz = torch.stack([scale, zero], dim=-1).to(torch.bfloat16).contiguous()
        w_dq = (q.float() - 8) * sz[..., 0].float().repeat_interleave(INT4_GROUP, 0).t() \
            + sz[..., 1].float().repeat_interleave(INT4_GROUP, 0).t()
        return kern(lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed, INT4_GROUP, sz),
                    lambda: x.float() @ w_dq.t(), "bf16",
                    "aten._weight_int4pack_mm_for_cpu (packed 4-bit weight, bf16 scale+zero per 128)",
                    {"activations": [x], "weights": [packed, sz]}, rtol=2e-2, atol=2e-2)

    if w in ("nvfp4", "mxfp4") or a in ("nvfp4", "mxfp4"):
        cap = _cuda_capability(device)
        if w == a and cap is not None and cap[0] in (10, 12):  # Blackwell: torchao's mx_formats path
            return _cuda_torchao_kernel(kern, label, w, "bf16", x32, w32, device)
        where = "this CPU" if cap is None else f"sm_{cap[0]}{cap[1]}"
        raise UnsupportedKernel(label, device, f"native block-scaled FP4 matmul needs Blackwell (sm_100 or "
                                f"sm_120/121); {where} has none, and no emulated path is offered")
    hint = " (INT4 weight-only is 'int4_tinygemm' with bf16 activations)" if "int4" in (w, a) else ""
    raise UnsupportedKernel(label, device, f"no kernel for {w} weights x {a} activations{hint}; kernels: "
                            "fp32, bf16, fp16, fp8_e4m3/fp8_e5m2 W8A8, int8 W8A8, int8/bf16 and "
                            "int4_tinygemm/bf16 weight-only")


def make_gemv(n, k, precision=None, weight=None, act=None, device="cpu", seed=0) -> Kernel:
    return make_gemm(1, n, k, precision, weight, act, device, seed, op="gemv")


def quantize_int4_groupwise(w32):
    """Asymmetric 4-bit per group of 128 along K, in tinygemm's convention: w ~ (q - 8) * scale + zero."""
    torch = _torch()
    n, k = w32.shape
    g = w32.reshape(n, k // INT4_GROUP, INT4_GROUP)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)
    scale = ((hi - lo) / 15).clamp_min(1e-8)
    zero = lo + 8 * scale
    q = torch.round((g - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32).reshape(n, k)
    return q, scale.t().contiguous(), zero.t().contiguous()  # scales as [K/g, N]


def _cpu_has_fp16() -> bool:
    from .device import read_cpu_info
    return bool({"avx512_fp16", "amx_fp16"} & read_cpu_info().flags)


def _torchao_config(w: str):
    import torch
    if w in ("nvfp4", "mxfp4"):
        from torchao.prototype import mx_formats as mx
        if w == "nvfp4":
            return mx.NVFP4DynamicActivationNVFP4WeightConfig()
        return mx.MXDynamicActivationMXWeightConfig(activation_dtype=torch.float4_e2m1fn_x2,
                                                    weight_dtype=torch.float4_e2m1fn_x2)
    from torchao.quantization import Int4WeightOnlyConfig, Int8WeightOnlyConfig
    return Int8WeightOnlyConfig() if w == "int8" else Int4WeightOnlyConfig(group_size=INT4_GROUP)


def _cuda_torchao_kernel(kern, label, w, a, x32, w32, device):
    """CUDA paths through torchao's documented configs on an nn.Linear (needs a GPU; untested here):
    int8 / int4 weight-only, and on Blackwell NVFP4 / MXFP4 with dynamically quantized activations
    (their bf16 input is read and quantized inside the call: the theory's bytes count it at 4 bits)."""
    torch = _torch()
    dt = _dtype(a)
    try:
        from torchao.quantization import quantize_
        config = _torchao_config(w)
    except ImportError as e:
        raise UnsupportedKernel(label, device, f"torchao is not importable: {e}") from None
    lin = torch.nn.Linear(w32.shape[1], w32.shape[0], bias=False, dtype=dt, device=device)
    with torch.no_grad():
        lin.weight.copy_(w32.to(device, dt))
    try:
        quantize_(lin, config)
    except Exception as e:  # missing optional kernels (mslk, triton) or an unsupported arch
        raise UnsupportedKernel(label, device, f"torchao {type(config).__name__} failed: {e}") from None
    x = x32.to(device, dt)
    ref_w = w32.to(device)
    out = "bf16" if a not in ("fp16", "bf16") else a
    # the reference uses the unquantized weights: 4-bit formats carry ~10% quantization noise
    tol = 5e-2 if w == "int8" else 0.15
    return kern(lambda: lin(x), lambda: x.float() @ ref_w.t(), out, f"torchao {type(config).__name__}",
                {"activations": [x]}, rtol=tol, atol=tol)


def make_attention(batch, heads, kv_heads, seq_q, seq_kv, head_dim, precision="bf16", kv=None, device="cpu",
                   seed=0) -> Kernel:
    """SDPA with grouped KV heads; causal when ``seq_q > 1`` (prefill), a KV-cache read when decoding."""
    _check_device(device)
    torch = _torch()
    a = get_format(precision).name
    kv_name = get_format(kv).name if kv is not None else a
    if a not in _FLOAT_DTYPES or kv_name != a:
        raise UnsupportedKernel(f"{a} (kv {kv_name})", device, "SDPA runs fp32/bf16/fp16 with Q, K and V in one "
                                "dtype; a quantized KV cache needs a dedicated kernel")
    causal = seq_q > 1
    cost = attention(batch, heads, kv_heads, seq_q, seq_kv, head_dim, act=a, kv=kv_name, causal=causal)
    gen = torch.Generator().manual_seed(seed)
    dt = _dtype(a)
    q = _rand((batch, heads, seq_q, head_dim), gen, device, dt)
    k_ = _rand((batch, kv_heads, seq_kv, head_dim), gen, device, dt)
    v = _rand((batch, kv_heads, seq_kv, head_dim), gen, device, dt)
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def reference():
        rep = heads // kv_heads
        kk, vv = k_.float().repeat_interleave(rep, 1), v.float().repeat_interleave(rep, 1)
        scores = q.float() @ kk.transpose(-1, -2) / head_dim**0.5
        if causal:  # queries are the last seq_q positions
            qpos = torch.arange(seq_kv - seq_q, seq_kv, device=q.device)[:, None]
            scores = scores.masked_fill(torch.arange(seq_kv, device=q.device)[None, :] > qpos, float("-inf"))
        return scores.softmax(-1) @ vv

    if causal and seq_q != seq_kv:
        raise UnsupportedKernel(a, device, "SDPA's is_causal aligns the mask to the top-left; chunked prefill "
                                f"(seq_q={seq_q} < seq_kv={seq_kv}) needs an explicit mask kernel")
    tol = 1e-4 if a == "fp32" else 3e-2
    return Kernel("attention", a, device, lambda: sdpa(q, k_, v, is_causal=causal, enable_gqa=heads != kv_heads),
                  reference, cost, "F.scaled_dot_product_attention" + (" (GQA)" if heads != kv_heads else ""),
                  operands={"q": [q], "k": [k_], "v": [v]}, rtol=tol, atol=tol)
