"""FLOPs and compulsory bytes of the operators a transformer runs.

Assumptions (the model of performance, stated once):
1. Compulsory bytes: every operand is read from DRAM once and every result written once. Caches,
   re-reads and tiling live in ``tiling.py``; a kernel that does worse than this is the kernel's gap.
2. A matmul of ``[M,K] x [K,N]`` costs ``2*M*N*K`` FLOPs. Activations ``A[M,K]`` are in the activation
   format, weights ``B[K,N]`` (or ``W[N,K]``) in the weight format, the result in the output format.
3. GEMV ``y[N] = W[N,K] x[K]`` is the GEMM with ``M=1``: one formula serves both.
4. Attention counts the two matmuls (``QK^T`` and ``PV``: 4 FLOPs per visible query-key pair per head
   dimension) and moves Q, K, V once and O once (flash-style: scores never reach DRAM). With causal
   masking the ``seq_q`` queries are the last ``seq_q`` positions of ``seq_kv``, so query ``i`` sees
   ``seq_kv - seq_q + i + 1`` keys. Softmax FLOPs are not counted. K/V are in the KV-cache format.
5. Elementwise ops (norms, SwiGLU) read their inputs and write their outputs once; their few FLOPs per
   element run on vector units (priced at the FP32 peak).
6. Default output format: the activation format when that is a 16/32-bit float, else FP16.

Every function works on Python ints and on numpy integer arrays (the vectorised sweep path). Dimensions are
capped at ``MAX_DIM`` (2**31-1); element counts are not (a long prefill's ``tokens * intermediate`` passes
2**31), and products of dimensions are formed in float64 (``elements``) so they never wrap around.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .formats import Format, get_format, tensor_bytes

MAX_DIM = 2**31 - 1  # beyond this a dimension is a typo, not a tensor


def _check_positive_int(name: str, value, limit: int | None):
    """A positive integer no larger than ``limit`` (None: any size); arrays are checked elementwise."""
    allowed = f"integers 1..{limit}" if limit is not None else "positive integers"
    if isinstance(value, np.ndarray):
        if value.size == 0:
            raise ValueError(f"{name} is an empty array")
        if not np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.complexfloating):
            raise ValueError(f"{name} must be a numeric array, got dtype {value.dtype}")
        bad = ~np.isfinite(value) | (value < 1) | (value != np.floor(value))
        if limit is not None:
            bad |= value > limit
        if bad.any():
            raise ValueError(f"{name} has invalid value {value[bad].flat[0]!r}; allowed: {allowed}")
        return value.astype(np.int64)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}={value!r} is not a number; allowed: {allowed}")
    if value != value or value in (float("inf"), float("-inf")) or value != int(value) or value < 1 \
            or (limit is not None and value > limit):
        raise ValueError(f"{name}={value!r} is invalid; allowed: {allowed}")
    return int(value)


def check_dim(name: str, value):
    """A dimension must be a positive integer no larger than MAX_DIM; arrays are checked elementwise."""
    return _check_positive_int(name, value, MAX_DIM)


def check_count(name: str, value) -> int:
    """An element count (a product of dimensions) must be a positive integer; it has no cap of its own:
    ``tokens * intermediate`` of a long prefill passes 2**31 while every dimension is sane."""
    return _check_positive_int(name, value, None)


def elements(*dims) -> float:
    """The element count of a tensor, in float64. Scalars and int64 arrays take the same float steps, so the
    scalar and vectorised paths agree exactly, and four large dimensions cannot wrap around int64."""
    out = 1.0
    for d in dims:
        out = out * d
    return out


def default_out_format(act: str | Format) -> Format:
    a = get_format(act)
    return a if a.is_16bit_or_wider_float else get_format("fp16")


def operand_formats(precision=None, weight=None, act=None, out=None) -> tuple[Format, Format, Format]:
    """Resolve (weight, activation, output) formats the way the CLI flags read.

    ``precision`` sets both weights and activations; a storage-only format (NF4, group-wise INT4: no
    math of its own) given as ``precision`` means weight-only with FP16 activations.
    """
    base = get_format(precision) if precision is not None else None
    w = get_format(weight) if weight is not None else base
    if act is not None:
        a = get_format(act)
    elif base is not None and base.compute_class is not None:
        a = base
    else:
        a = get_format("fp16")
    if w is None:
        w = a
    o = get_format(out) if out is not None else default_out_format(a)
    return w, a, o


@dataclass(frozen=True)
class OpCost:
    """One kernel's work: FLOPs, compulsory bytes per operand, and the formats that set its math."""
    op: str
    name: str
    flops: float
    operand_bytes: dict[str, float]
    weight_format: str | None  # the operand whose format, with act_format, picks the math path
    act_format: str
    out_format: str
    shape: dict = field(default_factory=dict)
    # the units a measured kernel's math really runs on, where that is not what the formats pick (CUDA's int8
    # weight-only kernel multiplies in fp32 on CUDA cores, not on the bf16 tensor cores): None = the formats'
    compute_class: str | None = None
    compute_note: str = ""

    @property
    def bytes(self) -> float:
        return sum(self.operand_bytes.values())

    @property
    def ai(self) -> float:
        return self.flops / self.bytes


@dataclass(frozen=True)
class Composite:
    """A sequence of kernels (a layer, a model step), optionally repeated (``repeat`` layers)."""
    name: str
    parts: tuple
    repeat: int = 1

    @property
    def flops(self) -> float:
        return self.repeat * sum(p.flops for p in self.parts)

    @property
    def bytes(self) -> float:
        return self.repeat * sum(p.bytes for p in self.parts)

    @property
    def ai(self) -> float:
        return self.flops / self.bytes

    def flat(self, scale: int = 1):
        """(cost, multiplicity) for every kernel, repeats multiplied through."""
        return flat_parts(self, scale)


def flat_parts(node, scale: int = 1):
    """(leaf, multiplicity) for every leaf under a tree of ``parts`` repeated ``repeat`` times: the one walk of a
    composite's kernels (``Composite.flat``, ``CompositePrediction.flat``)."""
    for p in node.parts:
        if hasattr(p, "parts"):
            yield from flat_parts(p, scale * node.repeat)
        else:
            yield p, scale * node.repeat


# --- formulas shared by scalar and vectorised paths ---------------------------------------------

def gemm_flops(m, n, k):
    return 2.0 * m * n * k


def gemm_operand_bytes(m, n, k, weight, act, out) -> dict:
    return {"activations": tensor_bytes(act, elements(m, k)), "weights": tensor_bytes(weight, elements(k, n)),
            "output": tensor_bytes(out, elements(m, n))}


def attention_pairs(seq_q, seq_kv, causal: bool):
    """Visible (query, key) pairs per head."""
    if causal:
        return elements(seq_q, seq_kv) - elements(seq_q, seq_q - 1) / 2.0
    return elements(seq_q, seq_kv)


def attention_flops(batch, heads, seq_q, seq_kv, head_dim, causal: bool):
    return 4.0 * batch * heads * attention_pairs(seq_q, seq_kv, causal) * head_dim


def attention_operand_bytes(batch, heads, kv_heads, seq_q, seq_kv, head_dim, act, kv, out) -> dict:
    kv_one = tensor_bytes(kv, elements(batch, kv_heads, seq_kv, head_dim))
    q_elements = elements(batch, heads, seq_q, head_dim)
    return {"q": tensor_bytes(act, q_elements), "k": kv_one, "v": kv_one, "output": tensor_bytes(out, q_elements)}


# --- operators ----------------------------------------------------------------------------------

def gemm(m, n, k, precision=None, weight=None, act=None, out=None, name="gemm") -> OpCost:
    """``C[M,N] = A[M,K] B[K,N]``: A activations, B weights."""
    m, n, k = check_dim("m", m), check_dim("n", n), check_dim("k", k)
    w, a, o = operand_formats(precision, weight, act, out)
    return OpCost("gemm", name, gemm_flops(m, n, k), gemm_operand_bytes(m, n, k, w, a, o),
                  w.name, a.name, o.name, {"m": m, "n": n, "k": k})


def gemv(n, k, precision=None, weight=None, act=None, out=None, name="gemv") -> OpCost:
    """``y[N] = W[N,K] x[K]``: the GEMM with M=1."""
    cost = gemm(1, n, k, precision, weight, act, out, name)
    return OpCost("gemv", name, cost.flops, cost.operand_bytes, cost.weight_format, cost.act_format,
                  cost.out_format, {"n": cost.shape["n"], "k": cost.shape["k"]})


def attention(batch, heads, kv_heads, seq_q, seq_kv, head_dim, precision=None, act=None, kv=None, out=None,
              causal=None, name="attention") -> OpCost:
    """Scaled dot-product attention with grouped KV heads; ``causal`` defaults to True for prefill
    (seq_q > 1) and is moot for decode (seq_q == 1 sees the whole cache either way)."""
    batch, heads, kv_heads = check_dim("batch", batch), check_dim("heads", heads), check_dim("kv_heads", kv_heads)
    seq_q, seq_kv, head_dim = check_dim("seq_q", seq_q), check_dim("seq_kv", seq_kv), check_dim("head_dim", head_dim)
    if heads % kv_heads:
        raise ValueError(f"heads={heads} is not a multiple of kv_heads={kv_heads}")
    causal = True if causal is None else bool(causal)
    if causal and seq_q > seq_kv:
        raise ValueError(f"causal attention needs seq_q <= seq_kv (queries are the last positions of the "
                         f"sequence); got seq_q={seq_q}, seq_kv={seq_kv}")
    _, a, o = operand_formats(precision, None, act, out)
    kvf = get_format(kv) if kv is not None else a
    return OpCost("attention", name, attention_flops(batch, heads, seq_q, seq_kv, head_dim, causal),
                  attention_operand_bytes(batch, heads, kv_heads, seq_q, seq_kv, head_dim, a, kvf, o),
                  kvf.name, a.name, o.name,
                  {"batch": batch, "heads": heads, "kv_heads": kv_heads, "seq_q": seq_q, "seq_kv": seq_kv,
                   "head_dim": head_dim, "causal": causal})


def elementwise(numel, fmt, n_inputs=1, n_outputs=1, flops_per_element=1.0, name="elementwise") -> OpCost:
    numel = check_count("numel", numel)
    f = get_format(fmt)
    return OpCost("elementwise", name, float(flops_per_element) * numel,
                  {"inputs": n_inputs * tensor_bytes(f, numel), "output": n_outputs * tensor_bytes(f, numel)},
                  None, f.name, f.name, {"numel": numel})


def ffn(tokens, hidden, intermediate, precision=None, weight=None, act=None, out=None, name="ffn") -> Composite:
    """Gated FFN (SwiGLU): gate and up projections, ``silu(gate) * up``, down projection."""
    w, a, o = operand_formats(precision, weight, act, out)
    return Composite(name, (
        gemm(tokens, intermediate, hidden, weight=w, act=a, out=o, name="gate_proj"),
        gemm(tokens, intermediate, hidden, weight=w, act=a, out=o, name="up_proj"),
        elementwise(check_dim("tokens", tokens) * check_dim("intermediate", intermediate), o, n_inputs=2,
                    flops_per_element=5.0, name="silu_mul"),
        gemm(tokens, hidden, intermediate, weight=w, act=a, out=o, name="down_proj"),
    ))
