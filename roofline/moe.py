"""The mixture-of-experts FFN: a router, routed experts as grouped GEMMs, and shared experts.

Assumptions:
1. Each token picks ``k = experts_per_token`` of the ``E`` routed experts. Under uniform, independent
   routing a token misses a given expert with probability ``1 - k/E``, so ``T`` tokens touch
   ``E * (1 - (1 - k/E)**T)`` distinct experts on average: exactly ``k`` at T=1 (decode at batch 1
   reads only the active experts), tending to ``E`` as T grows (a long prefill reads them all).
   Real routers are skewed; since ``1 - (1 - p)**T`` is concave in an expert's share ``p``, any skew
   touches fewer experts, so this is the most bytes routing can cost.
2. A grouped GEMM reads each touched expert's weights once per step; every (token, expert) pair reads
   the token's activations and writes its own output; FLOPs are ``2 * T * k * N * K``.
3. The router is a GEMM in the residual-stream format (gpt-oss keeps it bf16); softmax and top-k
   are not counted. The combine is a weighted sum of k outputs per token (elementwise).
4. Shared experts see every token: one dense gated FFN ``shared_experts * expert_intermediate`` wide.
"""
from __future__ import annotations

from .formats import tensor_bytes
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
