"""The mixture-of-experts FFN: a router, routed experts as grouped GEMMs, and shared experts.

Assumptions:
1. Each token picks ``k = experts_per_token`` of the ``E`` routed experts. Under uniform, independent
   routing a token misses a given expert with probability ``1 - k/E``, so ``T`` tokens touch
   ``E * (1 - (1 - k/E)**T)`` distinct experts on average: exactly ``k`` at T=1 (decode at batch 1
   reads only the active experts), tending to ``E`` as T grows (a long prefill reads them all).
   Real routers are skewed; since ``1 - (1 - p)**T`` is concave in an expert's share ``p``, any skew
   touches fewer experts, so this is the most bytes routing can cost.
2. A grouped GEMM reads each touched expert's weights once per step; every (token, expert) pair reads
   the token's activations and writes its own output; FLOPs are ``2 * T * k * N * K``. That is the work of
   one GEMM per touched expert over its share of the rows, which is how a device's expected time for it is
   read (``roofline.efficiency``: its GEMM model at one expert's shape).
3. The router is a GEMM in the residual-stream format (gpt-oss keeps it bf16); softmax and top-k
   are not counted. The combine is a weighted sum of k outputs per token (elementwise).
4. Shared experts see every token: one dense gated FFN ``shared_experts * expert_intermediate`` wide.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .formats import get_format, tensor_bytes
from .hardware import capability_of, sm_name
from .operators import (Composite, OpCost, check_dim, elementwise, ffn, gemm, gemm_flops, gemm_operand_bytes,
                        operand_formats)


def experts_touched(experts: int, per_token: int, tokens: int) -> float:
    """Expected distinct experts ``tokens`` tokens route to (uniform routing; see the module docstring)."""
    experts, per_token, tokens = check_dim("experts", experts), check_dim("experts_per_token", per_token), \
        check_dim("tokens", tokens)
    if per_token > experts:
        raise ValueError(f"experts_per_token={per_token} is invalid; allowed: 1..experts ({experts})")
    return experts * (1.0 - (1.0 - per_token / experts) ** tokens)


def routed_gemm(tokens, per_token, experts, n, k, weight, act, out, name="experts") -> OpCost:
    """``tokens * per_token`` rows through the experts they route to: ``[rows, K] x [K, N]`` per expert."""
    tokens, n, k = check_dim("tokens", tokens), check_dim("n", n), check_dim("k", k)
    touched = experts_touched(experts, per_token, tokens)
    w, a, o = operand_formats(None, weight, act, out)
    rows = tokens * per_token
    nbytes = gemm_operand_bytes(rows, n, k, w, a, o)
    nbytes["weights"] = touched * tensor_bytes(w, k * n)  # each touched expert is its own [K, N] tensor
    return OpCost("grouped_gemm", name, gemm_flops(rows, n, k), nbytes, w.name, a.name, o.name,
                  {"tokens": tokens, "experts_per_token": per_token, "experts": experts,
                   "experts_touched": touched, "n": n, "k": k})


def grouped_gemm(groups, m, n, k, precision=None, weight=None, act=None, out=None, name="grouped_gemm") -> OpCost:
    """``groups`` experts with ``m`` rows each, ``[m, K] x [K, N]`` per expert, each its own GEMM: what a loop over
    experts runs (``roofline_kernels.ops.make_grouped_gemm``), ``groups`` times a GEMM's FLOPs and bytes (each
    expert's activations and output are tensors of their own, with their own scales). ``routed_gemm`` is the same
    work at a routing's expected experts, its activations one tensor of all the rows."""
    groups, m, n, k = check_dim("groups", groups), check_dim("m", m), check_dim("n", n), check_dim("k", k)
    w, a, o = operand_formats(precision, weight, act, out)
    nbytes = {part: groups * b for part, b in gemm_operand_bytes(m, n, k, w, a, o).items()}
    return OpCost("grouped_gemm", name, groups * gemm_flops(m, n, k), nbytes, w.name, a.name, o.name,
                  {"groups": groups, "m": m, "n": n, "k": k})


def per_expert(shape: dict) -> tuple[float, float, int, int]:
    """(experts, rows per expert, N, K) of a grouped GEMM's shape, either form: a kernel's ``groups`` x ``m``, or a
    routing's ``experts_touched`` with ``tokens * experts_per_token`` rows spread evenly over them (the uniform routing
    of assumption 1: at decode batch 1 that is exactly one row for each of ``k`` experts)."""
    try:
        if "groups" in shape:
            out = float(shape["groups"]), float(shape["m"]), int(shape["n"]), int(shape["k"])
        else:
            touched = float(shape["experts_touched"])
            out = touched, shape["tokens"] * shape["experts_per_token"] / touched, int(shape["n"]), int(shape["k"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        raise ValueError(f"grouped_gemm shape {shape!r} lacks or mangles {e}; it takes groups, m, n, k, or tokens, "
                         "experts_per_token, experts_touched, n, k") from None
    if not (out[0] > 0 and out[1] >= 1 - 1e-9 and out[2] >= 1 and out[3] >= 1):  # a routing spreads >= 1 row an expert
        raise ValueError(f"grouped_gemm shape {shape!r}: experts {out[0]:g}, rows per expert {out[1]:g}, n {out[2]}, "
                         f"k {out[3]}; allowed: experts > 0 and every other >= 1")
    return out


# torch._grouped_mm (every expert in one call, what MoE implementations call on CUDA) runs its fused CUTLASS kernel only
# where all of these hold; elsewhere it takes a fallback (a loop of mm after copying the offsets to the host: a sync) or
# refuses the call (the stride rule). Pure facts of PyTorch's CUDA build, kept here so that the theory (a launch count)
# and the kernels (``roofline_kernels.ops.make_grouped_gemm``) read one table. PyTorch sources: pytorch/pytorch
# GroupedBlas.cpp at 00d4eaf9, GroupedMMUtils.h at 2295ac79, GroupMM.cu at 117b8633 (main-branch snapshots).
GROUPED_BLAS = "aten/src/ATen/native/cuda/GroupedBlas.cpp"
GROUPED_MM_UTILS = "aten/src/ATen/native/GroupedMMUtils.h"
GROUP_MM = "aten/src/ATen/native/cuda/GroupMM.cu"
# a fused call's device kernels: prepare_grouped_gemm_data<<<1, groups>>> (each expert's pointers), then the CUTLASS GEMM
FUSED_GROUPED_LAUNCHES = 2


@dataclass(frozen=True)
class GroupedRule:
    holds: Callable    # (groups, k, capability, weight, act) -> bool
    says: str          # "{sm}" is replaced by the device
    source: str


FUSED_GROUPED_RULES: tuple[GroupedRule, ...] = (
    GroupedRule(lambda g, k, cap, w, a: w == a == "bf16",
                "torch._grouped_mm's fused kernel takes bf16 operands and output only (fp32 and fp16 take its "
                "fallback, a loop of mm with a host sync)",
                f"{GROUPED_BLAS} _grouped_mm_cuda: use_fast_path needs mat_a, mat_b and out kBFloat16"),
    GroupedRule(lambda g, k, cap, w, a: cap is not None and cap[0] in (9, 10),
                "torch._grouped_mm's fused kernel (CUTLASS) is built for sm_90 and sm_100/sm_103 only; {sm} takes "
                "its fallback, a loop of mm with a host sync",
                f"{GROUPED_BLAS} _grouped_mm_cuda: _scaled_mm_allowed_device(sm90_only=true, sm100_only=true)"),
    GroupedRule(lambda g, k, cap, w, a: k * 2 % 16 == 0,
                "torch._grouped_mm needs every operand's leading stride a multiple of 16 bytes (K % 8 == 0 at bf16; "
                "RuntimeError 'strides should be multiple of 16 bytes')",
                f"{GROUPED_MM_UTILS} check_valid_strides_and_return_transposed"),
    GroupedRule(lambda g, k, cap, w, a: g < 1024,
                "torch._grouped_mm's fused kernel takes fewer than 1024 groups (RuntimeError \"Can't process more "
                "than 1024 groups\")", f"{GROUP_MM} bf16bf16_grouped_gemm_impl_sm90_sm100"),
)


def fused_grouped_refusal(weight: str, act: str, groups: float, k: int, capability) -> str | None:
    """Why ``torch._grouped_mm`` does not run its fused kernel for these experts on ``capability`` (None: no CUDA
    device), with the upstream source; None where it does."""
    w, a = get_format(weight).name, get_format(act).name
    for rule in FUSED_GROUPED_RULES:
        if not rule.holds(groups, k, capability, w, a):
            return f"{rule.says.replace('{sm}', sm_name(capability))} [{rule.source}]"
    return None


def grouped_launches(cost: OpCost, arch: str | None) -> float:
    """Kernel launches a grouped GEMM takes on a device of ``arch``: the fused kernel's two where it runs
    (``fused_grouped_refusal``), else one an expert (its experts' GEMMs one after another: the expected count, for a
    routing's fractional experts); one for any other operator."""
    if cost.op != "grouped_gemm":
        return 1.0
    groups, _, _, k = per_expert(cost.shape)
    if fused_grouped_refusal(cost.weight_format or cost.act_format, cost.act_format, groups, k,
                             capability_of(arch)) is None:
        return float(FUSED_GROUPED_LAUNCHES)
    return groups


def moe_ffn(tokens, hidden, experts, per_token, expert_intermediate, weight, act, out, shared_experts=0,
            shared=None, name="moe") -> Composite:
    """Router, routed SwiGLU experts (gate, up, silu*mul, down), combine, then any shared experts.

    ``weight``/``act``: the routed experts' formats; ``shared``: the shared experts' (weight, act)
    (default: the routed experts'); ``out``: the residual stream, which the router also runs in.
    """
    tokens = check_dim("tokens", tokens)
    rows = tokens * check_dim("experts_per_token", per_token)
    parts = [
        gemm(tokens, experts, hidden, weight=out, act=out, out=out, name="router"),
        routed_gemm(tokens, per_token, experts, expert_intermediate, hidden, weight, act, out, name="expert_gate"),
        routed_gemm(tokens, per_token, experts, expert_intermediate, hidden, weight, act, out, name="expert_up"),
        elementwise(rows * check_dim("expert_intermediate", expert_intermediate), out, n_inputs=2,
                    flops_per_element=5.0, name="expert_silu_mul"),
        routed_gemm(tokens, per_token, experts, hidden, expert_intermediate, weight, act, out, name="expert_down"),
        elementwise(tokens * check_dim("hidden", hidden), out, n_inputs=per_token,
                    flops_per_element=2.0 * per_token, name="moe_combine"),
    ]
    if shared_experts:
        sw, sa = shared or (weight, act)
        parts.append(ffn(tokens, hidden, shared_experts * expert_intermediate, weight=sw, act=sa, out=out,
                         name="shared_experts"))
    return Composite(name, tuple(parts))
