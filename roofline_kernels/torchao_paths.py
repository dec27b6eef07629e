"""torchao 0.18 paths for the roofline formats: the one place a torchao config is chosen.

``torchao_config(weight, act, capability)`` maps a (weight, activation) pair of roofline format names
to the torchao config that runs on that capability with what this project installs (torch 2.13 and
torchao 0.18; no mslk, no fbgemm-gpu-genai, no flashinfer), with a description of what every call
really does and moves; otherwise it raises ``TorchaoPathUnavailable`` with the real reason.
``quantized_linear`` quantizes one linear layer with it and probes its forward, so a config that
quantizes but cannot run is refused when it is built, not at the first measurement.

What torchao 0.18 does (file:line under site-packages/torchao) and what is chosen here:

1. NVFP4: ``NVFP4DynamicActivationNVFP4WeightConfig()`` defaults to ``use_triton_kernel=True``
   (prototype/mx_formats/inference_workflow.py:221): ``quantize_`` succeeds, but every forward
   quantizes the activation with mslk's Triton kernel (nvfp4_tensor.py:160-165, 610-616), which asserts
   the mslk package (prototype/mx_formats/kernels.py:1212). Chosen: ``use_triton_kernel=False``
   (torchao's PyTorch quantization, nvfp4_tensor.py:167) and torch._scaled_mm's block-scaled FP4 GEMM
   (cuBLAS; nvfp4_tensor.py:561). torchao asserts sm_100+ (inference_workflow.py:301-303).
2. MXFP4: ``MXDynamicActivationMXWeightConfig`` with ``KernelPreference.AUTO`` calls
   ``F.scaled_mm(BlockWise1x32)`` (prototype/mx_formats/mx_tensor.py:817-828); PyTorch runs MXFP4 with
   the mslk/FBGEMM-GenAI ``f4f4bf16`` kernel built into its CUDA wheels and only on sm_100/sm_103
   (aten/src/ATen/native/cuda/ScaledBlas.cpp ``_check_mxfp4_support``, pytorch/pytorch#167857: it
   failed on sm_120; PyTorch's source, so the probe checks it on a real GPU). ``KernelPreference.EMULATED``
   dequantizes both operands to bf16 (mx_tensor.py:831-835): not an FP4 kernel, so sm_12x (GB10 is
   sm_121) is refused, not emulated.
3. INT4 weight-only: ``Int4WeightOnlyConfig`` defaults to ``Int4PackingFormat.PLAIN``
   (quantization/quant_api.py:550), whose Int4Tensor needs mslk (int4_tensor.py:139-140) for both
   packing and its GEMM. Chosen: ``tile_packed_to_4d``, the tinygemm layout (bf16 scale and zero per
   group of 128, ``int4_tinygemm``) run by torch's own ``aten._weight_int4pack_mm`` (CUDA only;
   int4_tile_packed_to_4d_tensor.py:287), sm_80+ (same file :124). It pads K to a multiple of 1024 and N
   to a multiple of 8 (:130-131) and pads and casts the activation on every call (:278-280).
4. INT8 weight-only: ``Int8WeightOnlyConfig``'s per-row path runs ``torch.mm(x, qdata.t().to(dtype))``
   (int8_tensor.py:348-353): each call reads the int8 weight, writes it in bf16 and the GEMM reads that
   back, 1 + 2 + 2 = 5 bytes per weight against the 1 stored. torch 2.13 registers
   ``aten._weight_int8pack_mm`` for CPU and CUDA (torch/include/ATen/ops/
   _weight_int8pack_mm_cuda_dispatch.h), which reads the int8 weight directly; it is used here through a
   torchao ``Int8Tensor`` subclass (same storage: int8, fp32 scale and int8 zero point per row).
   Its CUDA kernel (aten/src/ATen/native/cuda/int8mm.cu) is one thread per output, uncoalesced, fp32
   FMAs without tensor cores, with the activation converted to fp32 and the fp32 output cast back per
   call: 1 byte per weight, but latency-bound rather than bandwidth-bound on a large GPU.
5. INT8 W8A8: ``Int8DynamicActivationInt8WeightConfig`` quantizes activations per row on every call and
   multiplies with ``torch._int_mm`` (kernel/intmm.py:87); CUDA's _int_mm refuses M <= 16 and torchao
   then silently multiplies in fp32 (intmm.py:88-93: the weight is read, written as fp32 and read
   again, 9 bytes per weight), and K or N not a multiple of 8 is computed on the host (intmm.py:71-75).
6. FP8: ``Float8DynamicActivationFloat8WeightConfig`` asserts sm_89+ (quant_api.py:1334-1336,
   float8/inference.py:297-305). With ``KernelPreference.AUTO`` it would pick mslk's kernels whenever
   mslk is installed on sm_90+ (float8_tensor.py:184-195, 365-373); ``TORCH`` with per-tensor scales
   is chosen so the path is torch._scaled_mm (cuBLASLt) whatever is installed. ``Float8WeightOnlyConfig``
   needs nothing (no gate, runs anywhere) but dequantizes the whole weight on every call
   (float8_tensor.py:465, quantization/quant_primitives.py:2368-2374): fp8 -> fp32, x scale, -> bf16,
   then a bf16 GEMM: 1 + 4 + 4 + 4 + 4 + 2 + 2 = 21 bytes moved per weight against 1 stored.

Every config is built with ``set_inductor_config=False`` where it has one: torchao otherwise rewrites
global torch._inductor settings as a side effect of quantizing.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import torch

from roofline import get_format
from roofline.recommend import WEIGHT_ONLY_ACTS  # the theory's one list: what recommend offers is what builds

from .kernel import INT4_GROUP, _sm, gemm_refusal

# Optional packages some torchao 0.18 kernels need; none is installed by this project. An error that
# names one is a missing package on the real GPU too, never a "needs CUDA" note on a simulated one.
OPTIONAL_PACKAGES = ("mslk", "fbgemm", "flashinfer", "triton")
PROBE_ROWS = (1, 32)  # the probe's activations: a GEMV (decode) and a small GEMM (prefill, M > 16)
_PROBE_SEED = 0


class TorchaoPathUnavailable(ValueError):
    """No torchao path runs this (weight, act) pair here; ``why`` names what is needed."""

    def __init__(self, weight: str, act: str, where: str, why: str):
        self.weight, self.act, self.where, self.why = weight, act, where, why
        super().__init__(f"no torchao path for {weight} weights x {act} activations on {where}: {why}")


@dataclass(frozen=True)
class QuantizedLinear:
    module: torch.nn.Module
    config_name: str
    path: str
    probed: bool
    probe_note: str


# --- capability gates: None when the path runs there, else why not -----------------------------------

def _anywhere(capability):
    return None


def _tinygemm_gate(capability):
    if capability is None:
        return ("the tinygemm INT4 kernels (aten._convert_weight_to_int4pack, aten._weight_int4pack_mm) are "
                "CUDA-only in torch 2.13, and torchao 0.18 has no other packed INT4 layout that runs without mslk "
                "(the CPU's packed INT4 path is roofline_quantize.int4_cpu.Int4PackedLinear)")
    return gemm_refusal("int4_tinygemm", "bf16", capability=capability, kinds=("arch",))


def _fp8_gemm_gate(capability):
    if capability is None:
        return ("torchao's FP8 dynamic config asserts a CUDA GPU with sm_89+ (FP8 tensor cores for "
                "torch._scaled_mm); a CPU has none")
    return gemm_refusal("fp8_e4m3", "fp8_e4m3", capability=capability, kinds=("arch",))


def _rule_gate(fmt):
    """The capability rules of ``roofline_kernels.kernel.GEMM_RULES`` for a W4A4 path (one table for both modules)."""
    return lambda capability: gemm_refusal(fmt, fmt, capability=capability, kinds=("arch",))


_nvfp4_gate, _mxfp4_gate = _rule_gate("nvfp4"), _rule_gate("mxfp4")


# --- shape rules: None when torchao quantizes this [N, K] weight, else why not -------------------------

def _any_shape(n, k):
    return None


def _rule_shape(weight, act):
    """The shape rules of ``roofline_kernels.kernel.GEMM_RULES`` for an [N, K] weight on this pair's CUDA path."""
    return lambda n, k: gemm_refusal(weight, act, None, n, k, kinds=("shape",))


# --- the paths -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TorchaoPath:
    weight: str
    acts: tuple            # activation formats the path takes
    gate: Callable         # capability -> None or why not
    shape_rule: Callable   # (N, K) -> None or why torchao would not quantize that weight
    cpu_kernels: bool      # quantize_ and the forward run with CPU tensors (probed on a CPU)
    kernel: str            # what the forward runs: named in refusals and probe notes
    per_call: str          # what each call does and moves
    max_rel_error: float   # probe bound on ||y - y_fp32|| / ||y_fp32|| (~2x the format's noise on Gaussian data)
    build: Callable        # torchao's modules -> config


def _int8_weight_only(m):
    return _int8_packed_mm()[0]()


def _w8a8(m):
    return m.q.Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)


def _int4_tinygemm(m):
    return m.q.Int4WeightOnlyConfig(group_size=INT4_GROUP, int4_packing_format="tile_packed_to_4d",
                                    int4_choose_qparams_algorithm="tinygemm", set_inductor_config=False)


def _fp8_dynamic(m):
    return m.q.Float8DynamicActivationFloat8WeightConfig(granularity=m.q.PerTensor(),
                                                          kernel_preference=m.KernelPreference.TORCH,
                                                          set_inductor_config=False)


def _fp8_weight_only(m):
    return m.q.Float8WeightOnlyConfig(set_inductor_config=False)


def _nvfp4(m):
    return m.mx.NVFP4DynamicActivationNVFP4WeightConfig(use_triton_kernel=False)


def _mxfp4(m):
    return m.mx.MXDynamicActivationMXWeightConfig(activation_dtype=torch.float4_e2m1fn_x2,
                                                  weight_dtype=torch.float4_e2m1fn_x2,
                                                  kernel_preference=m.KernelPreference.AUTO)


PATHS: tuple[TorchaoPath, ...] = (
    TorchaoPath("int8", WEIGHT_ONLY_ACTS, _anywhere, _any_shape, True,
                "aten._weight_int8pack_mm",
                "int8 weight-only: aten._weight_int8pack_mm reads the int8 weight directly (1 byte per weight, "
                "plus a fp32 scale and int8 zero point per row); on CUDA torch 2.13's kernel is one thread per "
                "output with fp32 FMAs (no tensor cores) and converts the activation to fp32 and the fp32 output "
                "back on every call", 0.03, _int8_weight_only),
    TorchaoPath("int8", ("int8",), _anywhere, _any_shape, True,
                "torch._int_mm",
                "W8A8: activations quantized per row on every call, torch._int_mm (int32) then both scales; on "
                "CUDA, M <= 16 makes torchao fall back silently to an fp32 matmul of both operands (9 bytes per "
                "weight), and K or N not a multiple of 8 to the host", 0.05, _w8a8),
    TorchaoPath("int4_tinygemm", WEIGHT_ONLY_ACTS, _tinygemm_gate, _rule_shape("int4_tinygemm", "bf16"), False,
                "aten._weight_int4pack_mm (tinygemm)",
                "INT4 weight-only, group 128, tinygemm tile_packed_to_4d: 4-bit weights with a bf16 scale and "
                "zero per group (4.25 bits) of the weight padded to K % 1024 == 0 and N % 8 == 0; the activation "
                "is cast to bf16 and padded on every call", 0.2, _int4_tinygemm),
    TorchaoPath("fp8_e4m3", ("fp8_e4m3",), _fp8_gemm_gate, _rule_shape("fp8_e4m3", "fp8_e4m3"), True,
                "torch._scaled_mm (FP8, per-tensor scales)",
                "FP8 W8A8: activation amax and cast to e4m3 on every call (two passes over it), torch._scaled_mm "
                "with per-tensor scales (KernelPreference.TORCH: cuBLASLt whatever is installed), bf16 out",
                0.1, _fp8_dynamic),
    TorchaoPath("fp8_e4m3", WEIGHT_ONLY_ACTS, _anywhere, _any_shape, True,
                "dequantize + matmul",
                "FP8 weight-only (Float8WeightOnlyConfig, per-row scales): every call dequantizes the whole "
                "weight (fp8 -> fp32, x scale, -> bf16) and runs a bf16 GEMM: about 21 bytes moved per weight "
                "against the 1 stored", 0.08, _fp8_weight_only),
    TorchaoPath("nvfp4", ("nvfp4",), _nvfp4_gate, _rule_shape("nvfp4", "nvfp4"), False,
                "torch._scaled_mm (block-scaled NVFP4, cuBLAS)",
                "NVFP4 W4A4: activation quantized to NVFP4 on every call by torchao's PyTorch code (amax, "
                "block scales, cast: several passes over it; use_triton_kernel=False needs no mslk), "
                "torch._scaled_mm block-scaled FP4, then the per-tensor scales applied to the bf16 output",
                0.3, _nvfp4),
    TorchaoPath("mxfp4", ("mxfp4",), _mxfp4_gate, _rule_shape("mxfp4", "mxfp4"), False,
                "F.scaled_mm (MXFP4, f4f4bf16 in PyTorch)",
                "MXFP4 W4A4: activation quantized to MXFP4 on every call (torchao PyTorch code), F.scaled_mm "
                "BlockWise1x32 (PyTorch's built-in f4f4bf16 kernel, sm_100/sm_103), bf16 out", 0.3, _mxfp4),
)


def _canonical(name: str) -> str:
    return get_format(name).name


def find_path(weight: str, act: str) -> TorchaoPath:
    """The torchao path for this pair of roofline format names (aliases accepted)."""
    w, a = _canonical(weight), _canonical(act)
    for p in PATHS:
        if p.weight == w and a in p.acts:
            return p
    raise TorchaoPathUnavailable(w, a, "any device", "no torchao path is chosen for this pair; paths: "
                                 + ", ".join(f"{p.weight} x {'/'.join(p.acts)}" for p in PATHS))


def arch_refusal(weight: str, act: str, capability) -> str | None:
    """Why this pair's torchao path cannot run on ``capability`` (None = a CPU), or None when it can."""
    return find_path(weight, act).gate(_capability(capability))


def shape_refusal(weight: str, act: str, n: int, k: int) -> str | None:
    """Why torchao would not quantize an [N, K] weight on this pair's path, or None."""
    return find_path(weight, act).shape_rule(n, k)


def _capability(capability):
    if capability is None:
        return None
    try:
        major, minor = capability
        return int(major), int(minor)
    except (TypeError, ValueError):
        raise ValueError(f"capability {capability!r} must be (major, minor) like (12, 1), or None for a CPU") from None


class _Torchao:
    """torchao's modules, imported when a path is first built (the theory never needs them)."""

    def __init__(self):
        import torchao.quantization as q
        from torchao.prototype import mx_formats as mx
        from torchao.quantization.quantize_.common.kernel_preference import KernelPreference
        self.q, self.mx, self.KernelPreference = q, mx, KernelPreference


def _import_torchao(w, a, where) -> _Torchao:
    try:
        return _Torchao()
    except Exception as e:  # not only ImportError: torchao 0.18 under a torch < 2.8 raises AttributeError
        from .stack import import_failure
        raise TorchaoPathUnavailable(w, a, where, import_failure("torchao", e)) from None


def _act_dtype(act: str):
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(act, torch.bfloat16)


def torchao_config(weight: str, act: str, capability):
    """(config object, description) for a pair of roofline format names on ``capability`` (None = CPU).

    Pairs: ("int8", "bf16") int8 weight-only, ("int8", "int8") W8A8 dynamic, ("int4_tinygemm", "bf16") INT4
    weight-only group 128 tinygemm layout, ("fp8_e4m3", "fp8_e4m3") FP8 dynamic, ("fp8_e4m3", "bf16") FP8
    weight-only, ("nvfp4", "nvfp4"), ("mxfp4", "mxfp4"); weight-only paths take fp16 activations too.
    Raises ``TorchaoPathUnavailable`` naming what is needed (architecture, package or kernel)."""
    path = find_path(weight, act)
    w, a, cap = path.weight, _canonical(act), _capability(capability)
    why = path.gate(cap)
    if why:
        raise TorchaoPathUnavailable(w, a, _sm(cap), why)
    return path.build(_import_torchao(w, a, _sm(cap))), path.per_call


# --- int8 weight-only through aten._weight_int8pack_mm ---------------------------------------------------

@functools.cache
def _int8_packed_mm():
    """(config class, tensor class): torchao's Int8Tensor whose linear is aten._weight_int8pack_mm.

    Defined when first needed so that importing this module never imports torchao."""
    import torch.nn.functional as F
    from torchao.core.config import AOBaseConfig
    from torchao.quantization.granularity import PerRow
    from torchao.quantization.quantize_.workflows.int8.int8_tensor import Int8Tensor
    from torchao.quantization.transform_module import register_quantize_module_handler

    class Int8PackedMMTensor(Int8Tensor):
        """Int8Tensor (per-row symmetric: int8 data, fp32 scale, int8 zero point) read by _weight_int8pack_mm."""

    @Int8PackedMMTensor.implements(torch.ops.aten.linear.default)
    @Int8PackedMMTensor.implements_torch_function(F.linear)
    def _linear(func, types, args, kwargs):
        x, w = args[0], args[1]
        bias = args[2] if len(args) > 2 else None
        scale = w.scale.reshape(-1)
        if not x.is_cuda:  # the CPU kernel takes the scales in the activations' dtype; CUDA's converts to fp32
            scale = scale.to(x.dtype)
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, x.shape[-1]).contiguous(), w.qdata, scale)
        y = y.reshape(*x.shape[:-1], w.shape[0])
        return y if bias is None else y + bias

    @dataclass
    class Int8PackedWeightOnlyConfig(AOBaseConfig):
        """int8 weight-only, symmetric per row, multiplied by aten._weight_int8pack_mm (no dequantized copy)."""

    @register_quantize_module_handler(Int8PackedWeightOnlyConfig)
    def _transform(module, config, *, parameter_name="weight"):
        weight = getattr(module, parameter_name)
        qweight = Int8PackedMMTensor.from_hp(weight, granularity=PerRow())
        setattr(module, parameter_name, torch.nn.Parameter(qweight, requires_grad=False))
        return module

    for cls in (Int8PackedWeightOnlyConfig, Int8PackedMMTensor):  # named (repr, pickle) like module-level classes
        cls.__qualname__ = cls.__name__
        globals()[cls.__name__] = cls
    return Int8PackedWeightOnlyConfig, Int8PackedMMTensor


# --- build and probe ---------------------------------------------------------------------------------------

def _missing_package(e: BaseException) -> str | None:
    text = str(e).lower()
    for pkg in OPTIONAL_PACKAGES:
        if pkg in text:
            return pkg
    if isinstance(e, ImportError):
        return e.name or str(e)
    return None


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def failure_reason(e: BaseException) -> str:
    """A torchao failure in words, naming the missing package when that is what it is."""
    pkg = _missing_package(e)
    if pkg:
        return f"needs {pkg}, which is not installed (or not built into this PyTorch): {_first_line(e)}"
    return _first_line(e)


def _check_simulation(capability):
    """A simulated GPU must be the one torchao's gates see, or they would judge another device."""
    from torchao.utils import is_sm_version
    if not is_sm_version(*capability):
        raise ValueError(
            f"the device is 'cpu' with capability {capability} (a simulated GPU), but torchao does not see "
            f"sm_{capability[0]}{capability[1]}: its gates (torchao/utils.py is_sm_version, is_sm_at_least_89/90/100) "
            "read torch.cuda.is_available(), torch.version.cuda (None on a CPU build) and "
            "torch.cuda.get_device_capability(); fake all three")


def quantized_linear(w32: torch.Tensor, weight: str, act: str, device: str, capability) -> QuantizedLinear:
    """nn.Linear(K -> N, bias=False) holding ``w32`` [N, K] (fp32), quantized in place by torchao on
    ``device`` and probed: one forward per ``PROBE_ROWS`` input, checked against the fp32 product.

    ``device == "cpu"`` with a GPU's ``capability`` is a simulated GPU (torch.cuda faked, tensors on the
    CPU): a path whose kernels need CUDA comes back ``probed=False`` with ``probe_note`` saying why; a
    failure that would happen on the real GPU too (a missing package, a config or shape error) raises
    ``TorchaoPathUnavailable``, as does any failure on a real device."""
    path = find_path(weight, act)
    w, a, cap = path.weight, _canonical(act), _capability(capability)
    device = str(device)
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; allowed: cpu, cuda[:N]")
    if device.startswith("cuda") and cap is None:
        raise ValueError(f"device {device!r} needs the GPU's capability, not None (None means a CPU)")
    config, description = torchao_config(w, a, cap)
    simulated = device == "cpu" and cap is not None
    where = f"{_sm(cap)} (simulated on the CPU)" if simulated else _sm(cap)
    if simulated:
        _check_simulation(cap)
    if w32.dim() != 2:
        raise ValueError(f"w32 must be a 2-D [N, K] weight; got shape {tuple(w32.shape)}")
    n, k = w32.shape
    why = path.shape_rule(n, k)
    if why:
        raise TorchaoPathUnavailable(w, a, where, why)

    import torchao.quantization as q
    name = type(config).__name__
    dtype = torch.bfloat16 if w == "int4_tinygemm" else _act_dtype(a)  # tinygemm packs bf16 weights only
    lin = torch.nn.Linear(k, n, bias=False, device=device, dtype=dtype)

    def failed(stage: str, e: Exception) -> QuantizedLinear:
        if _missing_package(e):
            raise TorchaoPathUnavailable(w, a, where, f"{name} {stage} {failure_reason(e)}") from None
        # on a simulated GPU only a kernel the CPU lacks is "not probed" (torch raises NotImplementedError for an op
        # with no CPU kernel); anything else (a shape or dtype CUDA refuses, a wrong config) fails there as here
        if simulated and not path.cpu_kernels and isinstance(e, NotImplementedError):
            kept = "; the layer keeps its unquantized weights" if stage == "quantize_" else ""
            return QuantizedLinear(lin, name, description, False,
                                   f"not probed: {path.kernel} runs only on CUDA, and this GPU is simulated on the "
                                   f"CPU ({stage} stopped at {_first_line(e)}){kept}")
        raise TorchaoPathUnavailable(w, a, where, f"{name} {stage} failed: {_first_line(e)}") from None

    with torch.no_grad():
        lin.weight.copy_(w32.to(device=device, dtype=dtype))
        try:
            q.quantize_(lin, config)
        except Exception as e:  # torchao raises assertions, ImportErrors and kernel errors alike
            return failed("quantize_", e)
        if type(lin.weight.data) is torch.Tensor:
            raise TorchaoPathUnavailable(w, a, where, f"{name} left the [{n}, {k}] weight unquantized")
        gen = torch.Generator().manual_seed(_PROBE_SEED)
        for rows in PROBE_ROWS:
            x32 = torch.randn(rows, k, generator=gen)
            try:
                y = lin(x32.to(device=device, dtype=_act_dtype(a)))
            except Exception as e:
                return failed(f"forward ({rows} x {k} input)", e)
            ref = x32.to(_act_dtype(a)).float() @ w32.detach().float().cpu().t()
            err = float((y.float().cpu() - ref).norm() / ref.norm().clamp_min(1e-12))
            if not err <= path.max_rel_error:  # also catches NaN
                raise TorchaoPathUnavailable(w, a, where, f"{name}'s forward ran but is wrong: relative error "
                                             f"{err:.3g} on a {rows} x {k} input exceeds {path.max_rel_error}")
    return QuantizedLinear(lin, name, description, True, "")


# --- the NVFP4 GEMM alone: the FP4 compute roof ----------------------------------------------------------------

def nvfp4_gemm_kernel(m: int, n: int, k: int, device: str = "cuda", target: str | None = None, seed: int = 0):
    """``y[M,N] = x[M,K] @ W[N,K]^T`` as one block-scaled NVFP4 ``torch._scaled_mm`` on operands quantized once,
    before any call: the GEMM alone, what an FP4 compute peak is. torchao's ``lin(x)`` (the ``nvfp4`` kernel of
    ``ops.make_gemm``) quantizes the activation on every call (``NVFP4Tensor.to_nvfp4``: amax, scale, clamp, pack)
    before the same GEMM: that is the pipeline, measured as its own case. The call is the one torchao makes
    (prototype/mx_formats/nvfp4_tensor.py ``_addmm_nvfp4_dispatch``): packed fp4x2 operands, the weight
    column-major, e4m3 block scales per 16 in the swizzled (blocked) layout, bf16 out, no per-tensor scale."""
    from .kernel import Kernel, UnsupportedKernel, _check_device, gemm_refusal
    from roofline import gemm
    target = target or device
    _check_device(device, target)
    cap = tuple(torch.cuda.get_device_capability()) if target == "cuda" else None
    why = gemm_refusal("nvfp4", "nvfp4", m, n, k, cap)
    if why:
        raise UnsupportedKernel("nvfp4", target, why)
    try:
        from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor
        from torchao.prototype.mx_formats.utils import to_blocked
    except ImportError as e:
        raise UnsupportedKernel("nvfp4", target, f"torchao is not importable: {e}") from None
    gen = torch.Generator().manual_seed(seed)
    x32, w32 = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen) / k ** 0.5
    xq = NVFP4Tensor.to_nvfp4(x32.to(torch.bfloat16).to(device))
    wq = NVFP4Tensor.to_nvfp4(w32.to(torch.bfloat16).to(device))
    a = xq.qdata.view(torch.float4_e2m1fn_x2)                 # [M, K/2], row-major
    b = wq.qdata.view(torch.float4_e2m1fn_x2).t()             # [K/2, N], column-major
    sa = to_blocked(xq.scale.view(m, k // 16)).view(torch.float8_e4m3fn)
    sb = to_blocked(wq.scale.view(n, k // 16)).view(torch.float8_e4m3fn)
    x_dq, w_dq = xq.dequantize(torch.float32), wq.dequantize(torch.float32)

    def call(i):
        return torch._scaled_mm(i["a"], i["b"], i["sa"], i["sb"], out_dtype=torch.bfloat16)

    return Kernel("gemm", "nvfp4", target, call, {"a": a, "b": b, "sa": sa, "sb": sb},
                  lambda: x_dq.cpu() @ w_dq.cpu().t(), gemm(m, n, k, weight="nvfp4", act="nvfp4", out="bf16"),
                  "torch._scaled_mm block-scaled NVFP4 on operands quantized once (the GEMM alone)",
                  operands={"activations": [a, sa], "weights": [b, sb]}, rtol=2e-2, atol=2e-2, weight_elements=n * k)
