"""What the real CUDA stack refuses, refused on a simulated GPU: a table of rules read from the sources.

A simulated GPU runs CUDA's paths with CPU tensors, and the CPU's kernels accept what CUDA's refuse (the CPU's
``torch._scaled_mm`` multiplies two E5M2 matrices; its ``torch._int_mm`` takes M <= 16). ``install_cuda_rules``
wraps the GEMM entry points so that, on the simulated device, each call is first held to the rules the CUDA
build enforces, raising what CUDA raises (``TORCH_CHECK``: RuntimeError, ``TORCH_CHECK_VALUE``: ValueError,
``TORCH_CHECK_NOT_IMPLEMENTED``: NotImplementedError) with CUDA's message; a call that passes them runs on the
CPU, except block-scaled FP4, which the CPU has no kernel for (``SimulatedKernelUnavailable``).

This table is the fakes' own reading of the sources, kept apart from the product's (``roofline_kernels.kernel.
GEMM_RULES``): a rule the product forgets is then a backend error in the simulated run, as on the board.
Sources: pytorch/pytorch aten/src/ATen/native/cuda/ScaledBlas.cpp (at 0174dfab) and Blas.cpp (at 492e246a),
the files torch 2.13's CUDA wheels are built from; for ``torch._grouped_mm`` GroupedMMUtils.h (at 2295ac79),
cuda/GroupedBlas.cpp (at 00d4eaf9) and cuda/GroupMM.cu (at 117b8633), main-branch snapshots.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

SCALED_BLAS = "aten/src/ATen/native/cuda/ScaledBlas.cpp"
BLAS = "aten/src/ATen/native/cuda/Blas.cpp"
GROUPED_MM_UTILS = "aten/src/ATen/native/GroupedMMUtils.h"  # the checks _grouped_mm runs on every device


# callers that run only because the tensors are on the CPU (a GPU takes another branch): CUDA's rules do not apply
CPU_ONLY_CALLERS = frozenset({"_int_scaled_matmul_cpu"})


class SimulatedKernelUnavailable(NotImplementedError):
    """The call passes every CUDA rule, but the CPU standing in for the GPU has no such kernel (block-scaled FP4)."""


@dataclass(frozen=True)
class Call:
    """One GEMM call as the rules see it: ``a`` [M, K'] times ``b`` [K', N] (K' = K / 2 for packed FP4); for the
    scaled GEMMs also the bias, the output dtype and the first scale's dtype (which recipe: e8m0 for MX, e4m3 for
    NVFP4's blocks)."""
    op: str                # "_scaled_mm" (torch._scaled_mm, v1), "scaled_mm" (F.scaled_mm, v2), "_int_mm"
    a: object
    b: object
    capability: tuple
    bias: object = None
    out_dtype: object = None
    scale_dtype: object = None

    @property
    def fp4(self) -> bool:
        import torch
        return self.a.dtype == torch.float4_e2m1fn_x2

    def dtypes(self):
        return self.a.dtype, self.b.dtype


@dataclass(frozen=True)
class Rule:
    ops: tuple             # the entry points it binds
    name: str
    allows: Callable       # Call -> bool
    error: type            # what CUDA raises
    message: Callable      # Call -> CUDA's message
    source: str            # the upstream file and function
    modulus: int = 1       # a shape rule's multiple on a logical dimension (probe shapes keep it: see simulation)


def _is_fp8(dtype) -> bool:
    import torch
    return dtype in (torch.float8_e4m3fn, torch.float8_e5m2)


def _e5m2(dtype) -> bool:
    import torch
    return dtype == torch.float8_e5m2


def _row_major(t) -> bool:
    return t.stride(1) == 1


def _col_major(t) -> bool:
    return t.stride(0) == 1


ARCH_MESSAGE = ("torch._scaled_mm is only supported on CUDA devices with compute capability >= 9.0 or 8.9, "
                "or ROCm MI300+")
def _fp8_or_fp4(c) -> bool:
    return all(_is_fp8(d) or d == _fp4() for d in c.dtypes())


def _tn(c) -> bool:
    return _row_major(c.a) and _col_major(c.b)


def _bias_rules(op: str, error: type) -> tuple:
    """The four bias checks, in upstream order (v1 TORCH_CHECK: RuntimeError; v2 TORCH_CHECK_VALUE: ValueError)."""
    import torch
    where = f"{SCALED_BLAS} {'_scaled_mm_out_cuda' if op == '_scaled_mm' else '_scaled_mm_cuda_v2_out'}: if (bias)"
    fp32, bf16, fp16 = (getattr(torch, n, None) for n in ("float32", "bfloat16", "float16"))
    return (
        Rule((op,), "bias with fp32 out", lambda c: c.bias is None or c.out_dtype != fp32, error,
             lambda c: "Bias is not supported when out_dtype is set to Float32", where),
        Rule((op,), "bias dtype", lambda c: c.bias is None or c.bias.dtype in (bf16, fp16), error,
             lambda c: f"Bias must be BFloat16 or Half, but got {c.bias.dtype}", where),
        Rule((op,), "bias bf16 for bf16 out", lambda c: c.bias is None or c.out_dtype not in (fp32, bf16)
             or c.bias.dtype == bf16, error,
             lambda c: f"Bias must be BFloat16 to compute {c.out_dtype} output, but got {c.bias.dtype}", where),
        Rule((op,), "bias fp16 for fp16 out", lambda c: c.bias is None or c.out_dtype != fp16 or c.bias.dtype == fp16,
             error, lambda c: f"Bias must be Float16 to compute {c.out_dtype} output, but got {c.bias.dtype}", where),
    )


# cuBLASLt's FP8 GEMMs take A row-major and B column-major (TN) alone except on Blackwell datacenter parts (sm_10x,
# sm_11x) and sm_130 on: NVIDIA/TransformerEngine transformer_engine/common/transformer_engine.cpp
# nvte_is_non_tn_fp8_gemm_supported() (>= 100 and < 120, or >= 130); pytorch/pytorch#198126 (sm_120 NN/NT:
# CUBLAS_STATUS_NOT_SUPPORTED from cublasLtMatmulAlgoGetHeuristic). PyTorch checks it itself on sm_90 only.
def _non_tn_supported(capability) -> bool:
    return (10, 0) <= tuple(capability) < (12, 0) or tuple(capability) >= (13, 0)


RULES: tuple[Rule, ...] = (
    # --- torch._scaled_mm (v1) and F.scaled_mm (v2), each in its upstream order --------------------------------
    Rule(("_scaled_mm",), "arch", lambda c: c.capability >= (8, 9), RuntimeError, lambda c: ARCH_MESSAGE,
         f"{SCALED_BLAS} _scaled_mm_out_cuda: TORCH_CHECK(scaled_mm_arch_allowed())"),
    Rule(("scaled_mm",), "arch", lambda c: c.capability >= (8, 9), NotImplementedError, lambda c: ARCH_MESSAGE,
         f"{SCALED_BLAS} _scaled_mm_cuda_v2_out: TORCH_CHECK_NOT_IMPLEMENTED(scaled_mm_arch_allowed())"),
    # v1 picks the scaling scheme first (get_joint_scaling): every scheme needs float8 (or packed fp4) data, so other
    # dtypes are refused there, before any size check
    Rule(("_scaled_mm",), "dtypes", _fp8_or_fp4, RuntimeError,
         lambda c: f"Invalid scaling configuration. Got a.dtype()={c.a.dtype}, b.dtype()={c.b.dtype}",
         f"{SCALED_BLAS} _scaled_mm_out_cuda -> get_joint_scaling: TORCH_CHECK(false, \"Invalid scaling "
         "configuration...\")"),
    # v1 checks the stored (packed) K: for fp4x2 that is K / 2, so the logical K must be a multiple of 32
    Rule(("_scaled_mm",), "mat1 K % 16", lambda c: c.a.shape[1] % 16 == 0, RuntimeError,
         lambda c: f"Expected trailing dimension of mat1 to be divisible by 16 but got mat1 shape: "
                   f"({c.a.shape[0]}x{c.a.shape[1]}).",
         f"{SCALED_BLAS} _scaled_mm_out_cuda: mat1.sizes()[1] % 16 == 0", modulus=32),
    Rule(("_scaled_mm",), "mat2 % 16", lambda c: c.b.shape[0] % 16 == 0 and c.b.shape[1] % 16 == 0, RuntimeError,
         lambda c: f"mat2 shape ({c.b.shape[0]}x{c.b.shape[1]}) must be divisible by 16",
         f"{SCALED_BLAS} _scaled_mm_out_cuda: mat2.sizes()[0] % 16 == 0 && mat2.sizes()[1] % 16 == 0", modulus=32),
    # v2 multiplies the packed K back (K_multiplier): the logical K must be a multiple of 16
    Rule(("scaled_mm",), "mat_a K % 16", lambda c: (2 if c.fp4 else 1) * c.a.shape[1] % 16 == 0, ValueError,
         lambda c: f"Expected trailing dimension of mat1 to be divisible by 16 but got mat1 shape: "
                   f"({c.a.shape[0]}x{(2 if c.fp4 else 1) * c.a.shape[1]}).",
         f"{SCALED_BLAS} _scaled_mm_cuda_v2_out: K_multiplier * mat_a.sizes()[1] % 16 == 0", modulus=16),
    Rule(("scaled_mm",), "mat_b % 16",
         lambda c: (2 if c.fp4 else 1) * c.b.shape[0] % 16 == 0 and c.b.shape[1] % 16 == 0, ValueError,
         lambda c: f"mat2 shape ({c.b.shape[0]}x{c.b.shape[1]}) must be divisible by 16",
         f"{SCALED_BLAS} _scaled_mm_cuda_v2_out: K_multiplier * mat_b.sizes()[0] % 16, mat_b.sizes()[1] % 16",
         modulus=16),
    Rule(("scaled_mm",), "dtypes", _fp8_or_fp4, ValueError,
         lambda c: f"Expected mat_a to be Float8 or Float4_x2 matrix got {c.a.dtype}",
         f"{SCALED_BLAS} _scaled_mm_cuda_v2_out: TORCH_CHECK_VALUE(isFloat8Type(mat_a) || Float4_e2m1fn_x2), after "
         "the K % 16 checks"),
    Rule(("_scaled_mm", "scaled_mm"), "e5m2 x e5m2", lambda c: not (_e5m2(c.a.dtype) and _e5m2(c.b.dtype)),
         ValueError, lambda c: "Multiplication of two Float8_e5m2 matrices is not supported",
         f"{SCALED_BLAS} _scaled_mm_out_cuda / _scaled_mm_cuda_v2_out: TORCH_CHECK_VALUE (type restrictions "
         "imposed by cuBLASLt)"),
    *_bias_rules("_scaled_mm", RuntimeError),
    *_bias_rules("scaled_mm", ValueError),
    # both entry points reach _scaled_gemm (v2: tensorwise, cuBLAS rowwise, MXFP8, NVFP4)
    Rule(("_scaled_mm", "scaled_mm"), "sm_90 layout", lambda c: c.capability[0] != 9 or _tn(c),
         RuntimeError, lambda c: "Only multiplication of row-major and column-major matrices is supported by cuBLASLt",
         f"{SCALED_BLAS} _scaled_gemm: scaled_mm_arch_allowed(sm90_only=true) -> transa == 't' && transb == 'n'"),
    Rule(("_scaled_mm", "scaled_mm"), "cuBLASLt FP8 layout",
         lambda c: c.capability[0] == 9 or _non_tn_supported(c.capability) or c.fp4 or _tn(c), RuntimeError,
         lambda c: (f"CUDA error: CUBLAS_STATUS_NOT_SUPPORTED when calling cublasLtMatmulAlgoGetHeuristic: no "
                    f"non-TN FP8 layout on sm_{c.capability[0]}{c.capability[1]}"),
         "cuBLASLt (TransformerEngine nvte_is_non_tn_fp8_gemm_supported; pytorch/pytorch#198126)"),
    # only the MX recipe (e8m0 block scales) checks the arch; NVFP4 (e4m3 block scales) goes to cuBLASLt unchecked
    Rule(("scaled_mm",), "MXFP4 arch", lambda c: not (c.fp4 and _e8m0(c.scale_dtype)) or c.capability[0] == 10,
         NotImplementedError, lambda c: "MXFP4 scaling only supported in CUDA for B200/B300",
         f"{SCALED_BLAS} _scaled_mxfp4_mxfp4 -> _check_mxfp4_support: dprops->major == 10 (not _scaled_nvfp4_nvfp4)"),
    # --- torch._int_mm ---------------------------------------------------------------------------------------
    Rule(("_int_mm",), "M > 16", lambda c: c.a.shape[0] > 16, RuntimeError,
         lambda c: f"self.size(0) needs to be greater than 16, but got {c.a.shape[0]}",
         f"{BLAS} _int_mm_out_cuda: TORCH_CHECK(self.size(0) > 16)"),
    Rule(("_int_mm",), "K % 8", lambda c: c.a.shape[1] > 0 and c.a.shape[1] % 8 == 0, RuntimeError,
         lambda c: f"self.size(1) needs to be greater than 0 and a multiple of 8, but got {c.a.shape[1]}",
         f"{BLAS} _int_mm_out_cuda: TORCH_CHECK(self.size(1) % 8 == 0)", modulus=8),
    Rule(("_int_mm",), "N % 8", lambda c: c.b.shape[1] > 0 and c.b.shape[1] % 8 == 0, RuntimeError,
         lambda c: f"mat2.size(1) needs to be greater than 0 and a multiple of 8, but got {c.b.shape[1]}",
         f"{BLAS} _int_mm_out_cuda: TORCH_CHECK(mat2.size(1) % 8 == 0)", modulus=8),
    # --- torch._grouped_mm (a: [rows, K] or [G, M, K], b: [G, K, N]) --------------------------------------------
    Rule(("_grouped_mm",), "dtypes", lambda c: all(_grouped_dtype(d) for d in c.dtypes()), RuntimeError,
         lambda c: f"Expected mat_a to be Float32, BFloat16 or Float16 matrix, got {c.a.dtype}",
         f"{GROUPED_MM_UTILS} _grouped_mm_validate_inputs"),
    Rule(("_grouped_mm",), "data_ptr % 16", lambda c: c.a.data_ptr() % 16 == 0 and c.b.data_ptr() % 16 == 0,
         RuntimeError, lambda c: "expected data_ptr to be aligned to 16 bytes\n",
         f"{GROUPED_MM_UTILS} check_valid_strides_and_return_transposed: TORCH_CHECK(data_ptr % 16 == 0)"),
    Rule(("_grouped_mm",), "strides % 16 bytes", lambda c: _lead_bytes(c.a) % 16 == 0 and _lead_bytes(c.b) % 16 == 0,
         RuntimeError, lambda c: "strides should be multiple of 16 bytes",
         f"{GROUPED_MM_UTILS} check_valid_strides_and_return_transposed", modulus=8),
    Rule(("_grouped_mm",), "groups < 1024 (fused)",
         lambda c: not _grouped_fused(c) or c.b.shape[0] < 1024, RuntimeError,
         lambda c: "Can't process more than 1024 groups",
         "aten/src/ATen/native/cuda/GroupMM.cu bf16bf16_grouped_gemm_impl_sm90_sm100"),
)


def _grouped_dtype(dtype) -> bool:
    import torch
    return dtype in (torch.float32, torch.bfloat16, torch.float16)


def _lead_bytes(t) -> int:
    """The leading stride of a (batched) matrix's last two dimensions, in bytes: row-major or column-major, else -1
    (GroupedMMUtils.h refuses other layouts too)."""
    if t.stride(-1) == 1:
        return t.stride(-2) * t.element_size()
    if t.stride(-2) == 1:
        return t.stride(-1) * t.element_size()
    return -1


def _grouped_fused(c) -> bool:
    """Where _grouped_mm_cuda takes its fused CUTLASS kernel (GroupedBlas.cpp: bf16 operands on sm_90/sm_100)."""
    import torch
    return c.a.dtype == c.b.dtype == torch.bfloat16 and c.capability[0] in (9, 10)


def _fp4():
    import torch
    return torch.float4_e2m1fn_x2


def _e8m0(dtype) -> bool:
    import torch
    return dtype is not None and dtype == getattr(torch, "float8_e8m0fnu", object())


def _v1_call(cap, a, b, scale_a=None, scale_b=None, bias=None, scale_result=None, out_dtype=None,
             use_fast_accum=False, **_):
    """torch._scaled_mm's arguments as aten::_scaled_mm names them; its output dtype defaults to mat1's."""
    return Call("_scaled_mm", a, b, cap, bias, out_dtype or a.dtype, getattr(scale_a, "dtype", None))


def _v2_call(cap, mat_a, mat_b, scale_a=None, scale_recipe_a=None, scale_b=None, scale_recipe_b=None,
             swizzle_a=None, swizzle_b=None, bias=None, output_dtype=None, **_):
    """F.scaled_mm's arguments (torch/nn/functional.py scaled_mm); its output dtype defaults to bf16."""
    import torch
    first = scale_a[0] if isinstance(scale_a, (list, tuple)) else scale_a
    return Call("scaled_mm", mat_a, mat_b, cap, bias, output_dtype or torch.bfloat16, getattr(first, "dtype", None))


def refusal(call: Call) -> Rule | None:
    """The first rule this call breaks, or None."""
    for rule in RULES:
        if call.op in rule.ops and not rule.allows(call):
            return rule
    return None


def _enforce(call: Call):
    rule = refusal(call)
    if rule is not None:
        err = rule.error(rule.message(call))
        err.cuda_rule = rule  # which rule refused, for tests
        raise err
    if call.fp4:
        raise SimulatedKernelUnavailable(
            f"{call.op} on packed FP4 passes every CUDA rule on sm_{call.capability[0]}{call.capability[1]}, but "
            "the CPU standing in for the GPU has no block-scaled FP4 kernel: runs only on CUDA")


def install_cuda_rules(mp, capability: tuple[int, int]) -> None:
    """Hold ``torch._scaled_mm``, ``F.scaled_mm``, ``torch._int_mm`` and ``torch._grouped_mm`` to ``RULES`` for a GPU
    of ``capability``
    (``mp``: a pytest.MonkeyPatch; ``mp.undo()`` restores the CPU's entry points)."""
    import torch
    import torch.nn.functional as F
    cap = tuple(capability)
    scaled_mm, int_mm, v2 = torch._scaled_mm, torch._int_mm, getattr(F, "scaled_mm", None)

    def _scaled_mm(a, b, *args, **kwargs):
        _enforce(_v1_call(cap, a, b, *args, **kwargs))
        return scaled_mm(a, b, *args, **kwargs)

    def _int_mm_(a, b, *args, **kwargs):
        # torchao routes CPU tensors to its CPU branch (kernel/intmm.py int_scaled_matmul -> _int_scaled_matmul_cpu),
        # which a GPU never runs: that call is the CPU's own, not the simulated GPU's, and CUDA's rules do not bind it
        if sys._getframe(1).f_code.co_name not in CPU_ONLY_CALLERS:
            _enforce(Call("_int_mm", a, b, cap))
        return int_mm(a, b, *args, **kwargs)

    grouped_mm = torch._grouped_mm

    def _grouped_mm_(a, b, *args, **kwargs):
        _enforce(Call("_grouped_mm", a, b, cap))
        return grouped_mm(a, b, *args, **kwargs)

    mp.setattr(torch, "_scaled_mm", _scaled_mm)
    mp.setattr(torch, "_int_mm", _int_mm_)
    mp.setattr(torch, "_grouped_mm", _grouped_mm_)
    if v2 is not None:
        def _scaled_mm_v2(a, b, *args, **kwargs):
            _enforce(_v2_call(cap, a, b, *args, **kwargs))
            return v2(a, b, *args, **kwargs)
        mp.setattr(F, "scaled_mm", _scaled_mm_v2)
