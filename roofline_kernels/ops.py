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
CUDA paths: the native ``_scaled_mm`` / ``_int_mm`` calls (what CUDA refuses is refused up front:
``GEMM_RULES``, each rule with the upstream file that enforces it) and torchao's configs through ``roofline_kernels.torchao_paths`` (int8/int4 weight-only,
NVFP4/MXFP4 on Blackwell), probed when built. ``target="cuda"`` with ``device="cpu"`` chooses CUDA's
paths with CPU tensors: how a simulated GPU (fake capability) runs them here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from roofline import OpCost, attention, gemm, gemv, get_format
from roofline.operators import operand_formats

INT4_GROUP = 128

# Every GEMM/GEMV kernel this module builds, as (label, builder keyword arguments): the suite's precision
# sweep and the spot check (`measure --precision all`) both run this list, so a new kernel joins both.
GEMM_KERNELS = [
    ("fp32", dict(precision="fp32")),
    ("bf16", dict(precision="bf16")),
    ("fp16", dict(precision="fp16")),
    ("fp8_e4m3", dict(precision="fp8_e4m3")),
    ("fp8_e5m2", dict(precision="fp8_e5m2")),
    ("int8", dict(precision="int8")),
    ("int8/bf16", dict(weight="int8", act="bf16")),
    ("int4_tinygemm/bf16", dict(weight="int4_tinygemm", act="bf16")),
    ("nvfp4", dict(precision="nvfp4")),
    ("mxfp4", dict(precision="mxfp4")),
]
ATTENTION_KERNELS = ["fp32", "bf16", "fp16"]
_FLOAT_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


class UnsupportedKernel(ValueError):
    """No kernel for this (precision, device) pair (a ValueError, like roofline's UnsupportedPathError)."""

    def __init__(self, precision: str, device: str, why: str):
        self.precision, self.device, self.why = precision, device, why
        super().__init__(f"no {precision} kernel on {device}: {why}")


@dataclass
class Kernel:
    """One kernel to time. ``call(inputs)`` runs it on a set of inputs; ``fn`` runs it on the built ones.

    ``rotation`` hands the timer independent copies of the inputs, so that a cold measurement can cycle
    through more data than the caches hold (CUTLASS's profiler does this) instead of sweeping a flush
    buffer sized from the last-level cache before every call: the cost of a cold sample stays one call,
    whatever cache size the host reports.
    """
    op: str
    precision: str
    device: str
    call: Callable
    inputs: dict
    reference: Callable
    cost: OpCost
    path: str
    emulated: bool = False
    operands: dict = field(default_factory=dict)  # name -> tensors/modules that hold it (byte accounting)
    rtol: float = 1e-2
    atol: float = 1e-2
    note: str = ""  # e.g. what the correctness probe on a simulated device could not run
    weight_elements: int = 0  # N x K of the weights as built (the cost may be re-shaped, e.g. on a simulated device)
    launches: int = 1  # device kernels one call launches (aten ops that are not views): > 1 is timed from a CUDA graph

    @property
    def fn(self) -> Callable:
        return lambda: self.call(self.inputs)

    def storage_bytes(self) -> dict:
        return {name: sum(storage_bytes(t) for t in ts) for name, ts in self.operands.items()}

    @property
    def input_bytes(self) -> int:
        return sum(storage_bytes(t) for t in self.inputs.values())

    def weight_bits_per_element(self) -> float | None:
        """Bits the kernel really stores per weight element (scales included), or None without weights."""
        if "weights" not in self.operands or not self.weight_elements:
            return None
        return 8 * self.storage_bytes()["weights"] / self.weight_elements

    def rotation(self, min_total_bytes: int, max_total_bytes: int) -> tuple[list[Callable], int]:
        """(callables over distinct copies of the inputs, bytes they span together).

        Enough copies that their total reaches ``min_total_bytes`` (at least two), as far as
        ``max_total_bytes`` (a memory budget) allows; the caller records whether the target was met.
        Two copies that do not fit the budget raise ``BudgetExceeded`` (the case is skipped, named).
        """
        from .timer import BudgetExceeded
        one = max(1, self.input_bytes)
        if max_total_bytes // one < 2:
            raise BudgetExceeded(f"two copies of this kernel's operands ({2 * one / 2**20:.0f} MiB) exceed the "
                                 f"memory budget for cold samples ({max_total_bytes / 2**20:.0f} MiB)")
        copies = min(max(2, -(-min_total_bytes // one)), max_total_bytes // one)
        sets = [self.inputs] + [_clone(self.inputs) for _ in range(copies - 1)]
        return [(lambda inp=inp: self.call(inp)) for inp in sets], one * copies

    def check(self) -> float:
        """Max error against the FP32 reference, relative to the reference's scale; raises if too large."""
        import torch
        out, ref = self.fn().float().cpu(), self.reference().float().cpu()
        if out.shape != ref.shape:
            raise AssertionError(f"{self.precision} {self.op}: shape {tuple(out.shape)} != {tuple(ref.shape)}")
        scale = ref.abs().max().clamp_min(1e-6)
        err = ((out - ref).abs().max() / scale).item()
        if not torch.isfinite(out).all() or not torch.allclose(out, ref, rtol=self.rtol, atol=self.atol * scale.item()):
            raise AssertionError(f"{self.precision} {self.op} on {self.device}: relative error {err:.3g} "
                                 f"exceeds rtol={self.rtol}, atol={self.atol} x scale")
        return err


def count_launches(fn) -> int:
    """The aten ops one call of ``fn`` dispatches that are not views: each is a kernel launch on a GPU. torchao's
    tensor subclasses run several per call (NVFP4: the activation's amax, scale, clamp, pack, then the GEMM;
    tinygemm: cast, pad, mm, slice), each with its host dispatch: timed per call with events, such a path measures
    the host, not the kernels, so ``measure_kernel`` replays it from a CUDA graph. A call that fails (a CUDA-only
    kernel on a simulated GPU) counts what it dispatched up to the failure, the failing op included."""
    torch = _torch()
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Count(TorchDispatchMode):
        supports_higher_order_operators = True

        def __init__(self):
            super().__init__()
            self.ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if any(t not in (torch.Tensor, torch.nn.Parameter) for t in types):
                return NotImplemented  # a tensor subclass handles it: count the plain ops it runs instead
            if not getattr(func, "is_view", False):
                self.ops += 1
            return func(*args, **(kwargs or {}))

    counter = _Count()
    try:
        with torch.no_grad(), counter:
            fn()
    except Exception:  # noqa: BLE001 - counting stops where the call does
        counter.ops += 1
    return max(1, counter.ops)


def storage_bytes(t) -> int:
    """Bytes a tensor (or module) really stores; a tensor subclass (torchao) is the sum of its inner tensors."""
    torch = _torch()
    if isinstance(t, torch.nn.Module):
        seen = {}
        for x in list(t.parameters()) + list(t.buffers()):
            seen[id(x)] = x
        return sum(storage_bytes(x) for x in seen.values())
    if hasattr(t, "__tensor_flatten__") and type(t) not in (torch.Tensor, torch.nn.Parameter):
        names, _ = t.__tensor_flatten__()
        return sum(storage_bytes(getattr(t, n)) for n in names if getattr(t, n, None) is not None)
    return t.numel() * t.element_size()


def _clone(inputs: dict) -> dict:
    import copy
    torch = _torch()
    return {k: (v.clone() if isinstance(v, torch.Tensor) and type(v) is torch.Tensor else copy.deepcopy(v))
            for k, v in inputs.items()}


# --- what the CUDA stack refuses, per GEMM path: one table for ops.py and torchao_paths.py ------------------
# Each rule is what torch 2.13 / torchao 0.18 enforce on the GPU, with the upstream place that enforces it, so a
# refusal names the rule before anything is built, and the simulated devices (tests/fakes/cuda_rules.py, their
# own table read from the same sources) refuse exactly what the real ones do. ``kind``: "arch" (capability
# gates), "dtype" (operand pairs), "shape" (dimension rules). PyTorch sources: pytorch/pytorch at 0174dfab
# (ScaledBlas.cpp) and 492e246a (Blas.cpp).
SCALED_BLAS = "aten/src/ATen/native/cuda/ScaledBlas.cpp"


@dataclass(frozen=True)
class GemmRule:
    path: str          # the CUDA kernel family: see ``gemm_path``
    kind: str          # "arch", "dtype" or "shape"
    holds: Callable    # (m, n, k, capability, weight, act) -> bool; m or n/k may be None (rule not applicable)
    says: str          # the rule in words; "{sm}" is replaced by the device (sm_90, a CPU)
    source: str        # the upstream file and function that enforces it

    def refusal(self, m, n, k, capability, weight, act) -> str | None:
        if self.holds(m, n, k, capability, weight, act):
            return None
        text = self.says.format(sm=_sm(capability))
        if self.kind == "shape":
            dims = ", ".join(f"{d}={v}" for d, v in (("M", m), ("N", n), ("K", k)) if v is not None)
            text += f"; got {dims}"
        return f"{text} [{self.source}]"


def _sm(capability) -> str:
    return "a CPU" if capability is None else f"sm_{capability[0]}{capability[1]}"


def _mult(dim_value, multiple) -> bool:
    return dim_value is None or dim_value % multiple == 0


def _cap_at_least(cap, least) -> bool:
    return cap is not None and tuple(cap) >= least


GEMM_RULES: tuple[GemmRule, ...] = (
    # native FP8 W8A8: torch._scaled_mm, per-tensor scales (cuBLASLt)
    GemmRule("fp8", "arch", lambda m, n, k, cap, w, a: _cap_at_least(cap, (8, 9)),
             "FP8 GEMMs (torch._scaled_mm) need sm_89+ (Ada, Hopper, Blackwell); {sm} has no FP8 tensor cores",
             f"{SCALED_BLAS} _scaled_mm_out_cuda: scaled_mm_arch_allowed"),
    GemmRule("fp8", "dtype", lambda m, n, k, cap, w, a: not (w == a == "fp8_e5m2"),
             "cuBLASLt multiplies FP8 E5M2 only against E4M3: torch._scaled_mm refuses two Float8_e5m2 operands "
             "(ValueError 'Multiplication of two Float8_e5m2 matrices is not supported'); E5M2 is a gradient "
             "format, paired with E4M3", f"{SCALED_BLAS} _scaled_mm_out_cuda: TORCH_CHECK_VALUE on Float8_e5m2"),
    GemmRule("fp8", "shape", lambda m, n, k, cap, w, a: _mult(k, 16) and _mult(n, 16),
             "torch._scaled_mm (FP8) needs N % 16 == 0 and K % 16 == 0",
             f"{SCALED_BLAS} _scaled_mm_out_cuda: mat1.sizes()[1] % 16, mat2.sizes() % 16"),
    # native INT8 W8A8: torch._int_mm (cuBLASLt)
    GemmRule("int8", "shape", lambda m, n, k, cap, w, a: (m is None or m > 16) and _mult(k, 8) and _mult(n, 8),
             "torch._int_mm on CUDA needs M > 16 and K, N divisible by 8",
             "aten/src/ATen/native/cuda/Blas.cpp _int_mm_out_cuda: self.size(0) > 16, size(1) % 8, mat2.size(1) % 8"),
    # NVFP4 W4A4 through torchao: torch._scaled_mm (v1) with block-wise 1x16 e4m3 scales on fp4x2-packed operands
    GemmRule("nvfp4", "arch", lambda m, n, k, cap, w, a: _cap_at_least(cap, (10, 0)),
             "NVFP4 GEMMs (torch._scaled_mm, cuBLAS block-scaled FP4) need Blackwell (sm_100+), and torchao asserts "
             "it; {sm} has no FP4 tensor cores",
             "torchao prototype/mx_formats/inference_workflow.py: NVFP4 handler asserts is_sm_at_least_100"),
    GemmRule("nvfp4", "shape", lambda m, n, k, cap, w, a: _mult(n, 16) and _mult(k, 32),
             "NVFP4 (torch._scaled_mm on fp4x2-packed operands) needs N % 16 == 0 and K % 32 == 0 (the packed K/2 "
             "must be a multiple of 16)",
             f"{SCALED_BLAS} _scaled_mm_out_cuda: mat1.sizes()[1] % 16 on the packed K/2"),
    # MXFP4 W4A4 through torchao: F.scaled_mm (v2) -> _scaled_mxfp4_mxfp4 (mslk f4f4bf16 built into PyTorch)
    GemmRule("mxfp4", "arch", lambda m, n, k, cap, w, a: _cap_at_least(cap, (10, 0)),
             "MXFP4 GEMMs need Blackwell FP4 tensor cores (sm_100/sm_103); {sm} has none",
             f"{SCALED_BLAS} _check_mxfp4_support"),
    GemmRule("mxfp4", "arch", lambda m, n, k, cap, w, a: cap is not None and cap[0] == 10,
             "torch 2.13 runs MXFP4 GEMMs (F.scaled_mm, the mslk/FBGEMM-GenAI f4f4bf16 kernel built into PyTorch) "
             "only on sm_100/sm_103 (NotImplementedError 'MXFP4 scaling only supported in CUDA for B200/B300'); "
             "{sm} has no MXFP4 kernel, and torchao's EMULATED preference dequantizes to bf16 instead (use nvfp4 "
             "there)", f"{SCALED_BLAS} _check_mxfp4_support: dprops->major == 10"),
    GemmRule("mxfp4", "shape", lambda m, n, k, cap, w, a: _mult(n, 16) and _mult(k, 32),
             "MXFP4 (block 32, F.scaled_mm) needs N % 16 == 0 and K % 32 == 0",
             f"{SCALED_BLAS} _scaled_mm_cuda_v2_out (N % 16) and torchao mx_tensor.py (K % block_size 32)"),
    # INT4 weight-only through torchao's tinygemm layout: aten._weight_int4pack_mm
    GemmRule("tinygemm", "arch", lambda m, n, k, cap, w, a: _cap_at_least(cap, (8, 0)),
             "the tinygemm INT4 kernel needs sm_80+ (torchao checks it at quantization); {sm} is older",
             "torchao quantization/quantize_/workflows/int4/int4_tile_packed_to_4d_tensor.py from_hp"),
    GemmRule("tinygemm", "shape", lambda m, n, k, cap, w, a: _mult(k, INT4_GROUP),
             f"tinygemm INT4 needs K % {INT4_GROUP} == 0",
             "torchao quantization/quant_api.py Int4WeightOnlyConfig: a weight whose K is not a multiple of the "
             "group size is left unquantized"),
)


def gemm_path(weight: str, act: str) -> str | None:
    """The CUDA kernel family a (weight, activation) pair of format names runs on, or None (no rules)."""
    w, a = get_format(weight), get_format(act)
    if w.compute_class == a.compute_class == "fp8" and w.kind == a.kind == "float" and not w.block_scale \
            and not a.block_scale:
        return "fp8"
    if w.name == a.name and w.name in ("int8", "nvfp4", "mxfp4"):
        return w.name
    if w.name == "int4_tinygemm" and a.name in ("bf16", "fp16"):
        return "tinygemm"
    return None


def gemm_refusal(weight: str, act: str, m=None, n=None, k=None, capability=None,
                 kinds: tuple = ("arch", "dtype", "shape")) -> str | None:
    """Why the CUDA stack refuses this GEMM on ``capability`` (None: the host CPU has no such CUDA kernel), or
    None. ``m``, ``n``, ``k`` left None are not checked (a weight's rules before any activation exists)."""
    path = gemm_path(weight, act)
    w, a = get_format(weight).name, get_format(act).name
    for rule in GEMM_RULES:
        if rule.path == path and rule.kind in kinds:
            why = rule.refusal(m, n, k, capability, w, a)
            if why:
                return why
    return None


def _torch():
    import torch
    return torch


def _dtype(name: str):
    return getattr(_torch(), _FLOAT_DTYPES[name])


def _cuda_capability(target: str):
    """The capability whose paths are chosen: the GPU's (real, or faked by a simulated device), None on a CPU."""
    torch = _torch()
    return tuple(torch.cuda.get_device_capability()) if target == "cuda" else None


def _rand(shape, gen, device, dtype=None):
    torch = _torch()
    t = torch.randn(*shape, generator=gen, dtype=torch.float32)
    return t.to(device=device, dtype=dtype) if dtype is not None else t.to(device)


def _check_device(device, target):
    for name, v in (("device", device), ("target", target)):
        if v not in ("cpu", "cuda"):
            raise ValueError(f"unknown {name} {v!r}; allowed: cpu, cuda")
    if target == "cuda" and not _torch().cuda.is_available():
        raise UnsupportedKernel("any", "cuda", "torch sees no CUDA device (CPU build or no GPU)")


def make_gemm(m, n, k, precision=None, weight=None, act=None, device="cpu", seed=0, op="gemm",
              target=None) -> Kernel:
    """``y[M,N] = x[M,K] @ W[N,K]^T`` in the given precision; see the module docstring for paths.

    ``device`` is where the tensors live; ``target`` (default: ``device``) is the device whose paths are
    chosen. They differ only on a simulated GPU: CUDA's paths, gates and shape rules, CPU tensors.
    """
    target = target or device
    _check_device(device, target)
    torch = _torch()
    w, a, label = gemm_formats(precision, weight, act)
    w_fmt, a_fmt = get_format(w), get_format(a)
    probe = gemm(m, n, k, weight=w, act=a)  # validates the dims once, with the theory's messages
    m, n, k = probe.shape["m"], probe.shape["n"], probe.shape["k"]
    gen = torch.Generator().manual_seed(seed)
    x32, w32 = _rand((m, k), gen, "cpu"), _rand((n, k), gen, "cpu") / k**0.5
    on_cpu = target == "cpu"

    def kern(call, inputs, ref, out, path, operands, emulated=False, rtol=1e-2, atol=1e-2, note=""):
        cost, elements = priced_gemm(op, m, n, k, w, a, out, target)
        return Kernel(op, label, target, call, inputs, ref, cost, path, emulated, operands, rtol, atol, note, elements)

    if not on_cpu:  # what CUDA refuses is refused here, naming the rule, before anything is built
        why = gemm_refusal(w, a, m, n, k, _cuda_capability(target))
        if why:
            raise UnsupportedKernel(label, target, why)

    if w == a and w in _FLOAT_DTYPES:
        dt = _dtype(w)
        x, W = x32.to(device, dt), w32.to(device, dt)
        emulated = on_cpu and w == "fp16" and not _cpu_has_fp16()
        tol = 1e-4 if w == "fp32" else 2e-2
        return kern(lambda i: torch.nn.functional.linear(i["x"], i["w"]), {"x": x, "w": W},
                    lambda: x.float() @ W.float().t(), w,
                    "F.linear" + (" (fp16 converted in software: no AVX512-FP16/AMX-FP16 on this CPU)"
                                  if emulated else ""), {"activations": [x], "weights": [W]}, emulated, tol, tol)

    if w_fmt.compute_class == "fp8" and a_fmt.compute_class == "fp8" and w_fmt.kind == a_fmt.kind == "float":
        x8 = x32.to(device).to(getattr(torch, "float8_e4m3fn" if a == "fp8_e4m3" else "float8_e5m2"))
        W8 = w32.to(device).to(getattr(torch, "float8_e4m3fn" if w == "fp8_e4m3" else "float8_e5m2"))
        one = torch.tensor(1.0, device=device)
        return kern(lambda i: torch._scaled_mm(i["x"], i["w"].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16),
                    {"x": x8, "w": W8}, lambda: x8.float() @ W8.float().t(), "bf16",
                    "torch._scaled_mm" + (" (emulated: no FP8 units on a CPU)" if on_cpu else " (native)"),
                    {"activations": [x8], "weights": [W8]}, emulated=on_cpu, rtol=2e-2, atol=2e-2)

    if w == a == "int8":
        xi = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8).to(device)
        Wi = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8).to(device)
        return kern(lambda i: torch._int_mm(i["x"], i["w"].t()), {"x": xi, "w": Wi},
                    lambda: xi.float() @ Wi.float().t(), "int32", "torch._int_mm (W8A8, int32 output)",
                    {"activations": [xi], "weights": [Wi]}, rtol=0, atol=0)

    if not on_cpu and (w in ("int8", "int4_tinygemm") and a in ("bf16", "fp16") or w == a and w in ("nvfp4", "mxfp4")):
        return _torchao_kernel(kern, label, w, a, x32, w32, device, target)  # its gates: roofline_kernels.torchao_paths

    if a == "bf16" and w == "int8":
        x = x32.to(torch.bfloat16)
        scale = (w32.abs().amax(dim=1) / 127).clamp_min(1e-8)
        Wi = torch.round(w32 / scale[:, None]).clamp(-127, 127).to(torch.int8)
        s = scale.to(torch.bfloat16)
        return kern(lambda i: torch.ops.aten._weight_int8pack_mm(i["x"], i["w"], i["s"]), {"x": x, "w": Wi, "s": s},
                    lambda: (x.float() @ Wi.float().t()) * s.float(), "bf16",
                    "aten._weight_int8pack_mm (int8 weight-only, per-channel bf16 scale)",
                    {"activations": [x], "weights": [Wi, s]}, rtol=2e-2, atol=2e-2)

    if a == "bf16" and w == "int4_tinygemm":
        if k % INT4_GROUP or n % 16:
            raise UnsupportedKernel(label, target, f"the packed INT4 kernel needs K % {INT4_GROUP} == 0 and "
                                    f"N % 16 == 0; got N={n}, K={k}")
        x = x32.to(torch.bfloat16)
        q, scale, zero = quantize_int4_groupwise(w32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        sz = torch.stack([scale, zero], dim=-1).to(torch.bfloat16).contiguous()
        w_dq = (q.float() - 8) * sz[..., 0].float().repeat_interleave(INT4_GROUP, 0).t() \
            + sz[..., 1].float().repeat_interleave(INT4_GROUP, 0).t()
        return kern(lambda i: torch.ops.aten._weight_int4pack_mm_for_cpu(i["x"], i["w"], INT4_GROUP, i["sz"]),
                    {"x": x, "w": packed, "sz": sz}, lambda: x.float() @ w_dq.t(), "bf16",
                    "aten._weight_int4pack_mm_for_cpu (packed 4-bit weight, bf16 scale+zero per 128)",
                    {"activations": [x], "weights": [packed, sz]}, rtol=2e-2, atol=2e-2)

    if w in ("nvfp4", "mxfp4") or a in ("nvfp4", "mxfp4"):
        where = "this CPU has none, and no emulated path is offered" if on_cpu else (
            f"on {target} the FP4 kernels take {w if w in ('nvfp4', 'mxfp4') else a} for both operands; got {label}")
        raise UnsupportedKernel(label, target, "native block-scaled FP4 matmul needs Blackwell (sm_100 or "
                                f"sm_120/121) and matching formats: {where}")
    hint = " (INT4 weight-only is 'int4_tinygemm' with bf16 activations)" if "int4" in (w, a) else ""
    raise UnsupportedKernel(label, target, f"no kernel for {w} weights x {a} activations{hint}; kernels: "
                            "fp32, bf16, fp16, fp8_e4m3/fp8_e5m2 W8A8, int8 W8A8, int8/bf16 and "
                            "int4_tinygemm/bf16 weight-only")


TINYGEMM_PAD_K, TINYGEMM_PAD_N = 1024, 8


def priced_dims(weight: str, act: str, n: int, k: int, target: str) -> tuple[int, int]:
    """The [N, K] a path really stores and multiplies: torchao's tinygemm layout pads the weight to K % 1024 == 0
    and N % 8 == 0 when it packs it, and pads every activation to that K (torchao
    quantization/quantize_/workflows/int4/int4_tile_packed_to_4d_tensor.py: from_hp ``find_multiple(in_features,
    1024)``, the linear's ``find_multiple(act_mat.shape[-1], 1024)``). Elsewhere the shape as asked."""
    if target == "cuda" and gemm_path(weight, act) == "tinygemm":
        return -(-n // TINYGEMM_PAD_N) * TINYGEMM_PAD_N, -(-k // TINYGEMM_PAD_K) * TINYGEMM_PAD_K
    return n, k


def priced_gemm(op: str, m: int, n: int, k: int, weight: str, act: str, out: str, target: str):
    """(OpCost, weight elements) of the work a GEMM/GEMV path really does on ``target``: at the padded shape where
    the path pads (``priced_dims``), so the bytes charged are the bytes stored and read."""
    n, k = priced_dims(weight, act, n, k, target)
    cost = gemm(m, n, k, weight=weight, act=act, out=out) if op == "gemm" else gemv(n, k, weight=weight, act=act,
                                                                                      out=out)
    units = KERNEL_UNITS.get((weight, act)) if target == "cuda" else None
    if units:
        cost = dataclasses.replace(cost, compute_class=units[0], compute_note=units[1])
    return cost, n * k


# Paths whose math runs on other units than the formats pick, on CUDA: priced at those units' peak.
KERNEL_UNITS = {
    (w, a): ("fp32", "aten._weight_int8pack_mm on CUDA converts the activation to fp32 and multiplies with fp32 "
                     "FMAs on CUDA cores, one thread per output, no tensor cores (aten/src/ATen/native/cuda/int8mm.cu "
                     "weight_int8pack_mm_kernel)")
    for w, a in (("int8", "bf16"), ("int8", "fp16"))
}


def gemm_formats(precision=None, weight=None, act=None) -> tuple[str, str, str]:
    """(weight format, activation format, label) of a GEMM kernel asked for as ``make_gemm`` takes it."""
    if act is None and weight is None and precision is not None and get_format(precision).compute_class is None:
        act = "bf16"  # a weight-only storage format: the CPU kernels take bf16 activations
    w_fmt, a_fmt, _ = operand_formats(precision, weight, act)
    w, a = w_fmt.name, a_fmt.name
    return w, a, a if w == a else f"{w}/{a}"


def make_peak_gemm(size: int, precision: str, device: str = "cpu", target=None) -> Kernel:
    """The ``size``-cube GEMM a compute peak of ``precision`` is calibrated with: the format's GEMM alone. For NVFP4
    that is one block-scaled ``torch._scaled_mm`` on operands quantized beforehand
    (``torchao_paths.nvfp4_gemm_kernel``), not torchao's ``lin(x)``, which quantizes the activation in every call."""
    if get_format(precision).name == "nvfp4" and (target or device) == "cuda":
        from .torchao_paths import nvfp4_gemm_kernel
        return nvfp4_gemm_kernel(size, size, size, device=device, target=target)
    return make_gemm(size, size, size, precision, device=device, target=target)


def make_gemv(n, k, precision=None, weight=None, act=None, device="cpu", seed=0, target=None) -> Kernel:
    return make_gemm(1, n, k, precision, weight, act, device, seed, op="gemv", target=target)


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


def _torchao_kernel(kern, label, w, a, x32, w32, device, target):
    """GPU paths through torchao (``roofline_kernels.torchao_paths``, the one place its configs are chosen): int8 /
    int4 weight-only, and on Blackwell NVFP4 / MXFP4 with dynamically quantized activations (their bf16
    input is read and quantized inside the call: the theory's bytes count it at 4 bits). The forward is
    probed when built, so a config that quantizes but cannot run is refused here, not mid-measurement."""
    torch = _torch()
    try:
        from .torchao_paths import TorchaoPathUnavailable, quantized_linear
    except ImportError as e:
        raise UnsupportedKernel(label, target, f"torchao is not importable: {e}") from None
    dt = _dtype(a) if a in _FLOAT_DTYPES else torch.bfloat16
    try:
        q = quantized_linear(w32, w, a, device, _cuda_capability(target))
    except TorchaoPathUnavailable as e:
        raise UnsupportedKernel(label, target, e.why) from None
    x = x32.to(device, dt)
    out = a if a in ("fp16", "bf16") else "bf16"
    # the reference uses the unquantized weights: 4-bit formats carry ~10% quantization noise
    tol = 5e-2 if w == "int8" else 0.15
    # a module the simulation could not quantize (the packing needs CUDA) holds bf16 weights: not weighed
    operands = {"activations": [x], "weights": [q.module]} if q.probed else {"activations": [x]}
    kernel = kern(lambda i: i["lin"](i["x"]), {"x": x, "lin": q.module}, lambda: x.float() @ w32.to(device).t(), out,
                  f"torchao {q.config_name}: {q.path}", operands, rtol=tol, atol=tol,
                  note="" if q.probed else q.probe_note)
    return dataclasses.replace(kernel, launches=count_launches(kernel.fn))  # a tensor subclass: several ops per call


def make_attention(batch, heads, kv_heads, seq_q, seq_kv, head_dim, precision="bf16", kv=None, device="cpu",
                   seed=0, target=None) -> Kernel:
    """SDPA with grouped KV heads; causal when ``seq_q > 1`` (prefill), a KV-cache read when decoding."""
    target = target or device
    _check_device(device, target)
    torch = _torch()
    a = get_format(precision).name
    kv_name = get_format(kv).name if kv is not None else a
    if a not in _FLOAT_DTYPES or kv_name != a:
        raise UnsupportedKernel(f"{a} (kv {kv_name})", target, "SDPA runs fp32/bf16/fp16 with Q, K and V in one "
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
        raise UnsupportedKernel(a, target, "SDPA's is_causal aligns the mask to the top-left; chunked prefill "
                                f"(seq_q={seq_q} < seq_kv={seq_kv}) needs an explicit mask kernel")
    if target == "cuda" and a == "fp32" and heads != kv_heads:
        # flash attention has no fp32 kernel and memory-efficient attention no GQA: SDPA falls back to its
        # math path, which materialises the score matrix; its time says nothing about a fused kernel's roof
        raise UnsupportedKernel(a, target, "fp32 SDPA with grouped KV heads has no fused CUDA kernel (flash: "
                                "16-bit only; memory-efficient: no GQA), so it would time the math fallback")
    tol = 1e-4 if a == "fp32" else 3e-2
    gqa = heads != kv_heads
    emulated = target == "cpu" and a == "fp16" and not _cpu_has_fp16()
    return Kernel("attention", a, target,
                  lambda i: sdpa(i["q"], i["k"], i["v"], is_causal=causal, enable_gqa=gqa), {"q": q, "k": k_, "v": v},
                  reference, cost, "F.scaled_dot_product_attention" + (" (GQA)" if gqa else "") + (
                      " (fp16 converted in software: no AVX512-FP16/AMX-FP16 on this CPU)" if emulated else ""),
                  emulated=emulated, operands={"q": [q], "k": [k_], "v": [v]}, rtol=tol, atol=tol)
