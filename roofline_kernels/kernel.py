"""What a kernel is, and what the CUDA stack refuses: the ground floor ``ops`` and ``torchao_paths`` both build on.

``Kernel`` (one timed callable with its inputs, reference and the theory's cost), ``UnsupportedKernel``, the
helpers that count a call's launches and its stored bytes, and ``GEMM_RULES``: one table of what each GEMM path
refuses on CUDA, each rule with the upstream file that enforces it. It lived in ``ops``, and ``torchao_paths``
imported it from there while ``ops`` imported ``torchao_paths``: an import cycle (issue 20). ``ops`` still
re-exports every name, so ``from roofline_kernels.ops import Kernel`` keeps working.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from roofline import OpCost, get_format
from roofline.hardware import sm_name as _sm
from roofline.moe import fused_grouped_refusal

INT4_GROUP = 128
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
    checked_call_s: float | None = field(default=None, compare=False)  # wall time of ``check``'s call of the kernel

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
        import time

        import torch
        t0 = time.perf_counter()
        out = self.fn()
        if isinstance(out, (list, tuple)):  # a grouped kernel: one output per group
            out = torch.stack(list(out))
        out = out.float().cpu()  # the copy to the host waits for a device's work
        self.checked_call_s = time.perf_counter() - t0
        ref = self.reference().float().cpu()
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


def grouped_mm_refusal(weight: str, act: str, groups: int, k: int, capability=None) -> str | None:
    """Why ``torch._grouped_mm`` does not run its fused kernel for these experts on ``capability`` (None: a CPU, which
    has none), or None where it does: ``roofline.moe.FUSED_GROUPED_RULES``, each with its upstream file, and a ROCm
    build (whose MI300 reports capability 9.4, where GroupedBlas.cpp's CUDA fast path does not apply)."""
    torch = _torch() if capability is not None else None
    if torch is not None and getattr(torch.version, "hip", None):
        return "a ROCm build: torch._grouped_mm's CUTLASS fast path is CUDA's (GroupedBlas.cpp _grouped_mm_cuda)"
    return fused_grouped_refusal(weight, act, groups, k, capability)


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
