"""The validation cases as data: (operator, shape, precision) per hardware family.

Shapes follow what transformer inference runs: decode GEMVs of Llama projections, a small-batch GEMM,
a prefill GEMM, and GQA attention for decode (KV-cache read) and prefill (causal). The precision sweep
runs every precision on every shape, each its own case, so one unsupported precision skips alone.
"""
from __future__ import annotations

from dataclasses import dataclass

from roofline_kernels.ops import ATTENTION_KERNELS as ATTENTION_PRECISIONS
from roofline_kernels.ops import GEMM_KERNELS as GEMM_PRECISIONS

SWEEP_SHAPE = "1x4096x4096"  # the shape every precision runs on, slow ones included


@dataclass(frozen=True)
class Case:
    op: str            # "gemv", "gemm", "grouped_gemm", "attention"
    name: str          # shape label
    shape: dict
    precision: str     # label
    kwargs: dict
    expected_bound: str | None  # None for a shape given with --shape: the prediction on each hardware decides

    @property
    def id(self) -> str:
        return f"{self.op}-{self.name}-{self.precision.replace('/', '_')}"

    def is_slow(self, family: str) -> bool:
        """Heavy on that hardware: on any CPU, FP8 (no CPU has FP8 matrix units: it is always software,
        68-250 ms per GEMV where measured); the sweep shape keeps one FP8 E4M3 case in the default run.
        FP16 is not listed: it is native on CPUs with AVX512-FP16/AMX-FP16, and where it is converted in
        software the kernel says so (``emulated``) and the suite skips its heavy shapes by their FLOPs."""
        if family != "cpu":
            return False
        return self.precision.startswith("fp8") and not (self.precision == "fp8_e4m3" and self.name == SWEEP_SHAPE)


def gemm_shapes(family: str) -> list[tuple[str, str, dict, str]]:
    prefill_m = 512 if family == "cpu" else 2048  # a CPU prefill of 2048 tokens takes seconds per call
    return [
        ("gemv", "1x4096x4096", {"m": 1, "n": 4096, "k": 4096}, "memory"),
        ("gemv", "1x11008x4096", {"m": 1, "n": 11008, "k": 4096}, "memory"),
        ("gemv", "1x4096x14336", {"m": 1, "n": 4096, "k": 14336}, "memory"),
        ("gemm", "16x4096x4096", {"m": 16, "n": 4096, "k": 4096}, "memory"),
        ("gemm", f"{prefill_m}x4096x4096", {"m": prefill_m, "n": 4096, "k": 4096}, "compute"),
    ]


def grouped_shapes(family: str) -> list[tuple[str, str, dict, str]]:
    """MoE experts at decode: Qwen3-30B-A3B's eight routed experts of one token (gate/up projection, 768 x 2048 each,
    N not a power of two), as a grouped GEMM. Its expected time is read from the GEMM model at one expert's shape
    (``roofline.efficiency``), so this case checks that reading on every device the suite runs on."""
    return [("grouped_gemm", "8x1x768x2048", {"groups": 8, "m": 1, "n": 768, "k": 2048}, "memory")]


def attention_shapes(family: str) -> list[tuple[str, dict, str]]:
    """A decode (KV-cache read) and a causal prefill. The prefill is 2048 tokens on a GPU: at 1024 its AI (~410
    FLOP/byte) sits under GB10's bf16 ridge (125 TFLOP/s / 273 GB/s = 458), so it is not the compute-bound case it
    stands for there; a CPU keeps 1024 (a CPU prefill of 2048 tokens takes seconds per call)."""
    seq = 1024 if family == "cpu" else 2048
    return [
        ("decode_b1_h32_kv8_s4096", {"batch": 1, "heads": 32, "kv_heads": 8, "seq_q": 1, "seq_kv": 4096,
                                     "head_dim": 128}, "memory"),
        (f"prefill_b1_h32_kv8_s{seq}", {"batch": 1, "heads": 32, "kv_heads": 8, "seq_q": seq, "seq_kv": seq,
                                        "head_dim": 128}, "compute"),
    ]


SHAPE_FORMS = {"gemm": ("m", "n", "k"), "gemv": ("n", "k"), "grouped_gemm": ("groups", "m", "n", "k"),
               "attention": ("batch", "heads", "kv_heads", "seq_q", "seq_kv", "head_dim")}
SHAPE_EXAMPLES = "gemm:4096x4096x4096, gemv:4096x14336 (N x K), grouped_gemm:8x1x768x2048 (groups x M x N x K), " \
                 "attention:1x32x8x1x4096x128 (batch x heads x kv_heads x seq_q x seq_kv x head_dim)"


def parse_shape_option(text: str) -> tuple[str, str, dict]:
    """``--shape OP:DIMS`` -> (op, name, shape dict); ValueError naming the bad value and the forms allowed."""
    op, _, dims = text.strip().lower().partition(":")
    if op not in SHAPE_FORMS:
        raise ValueError(f"--shape {text!r}: unknown operator {op!r}; forms: {SHAPE_EXAMPLES}")
    keys = SHAPE_FORMS[op]
    try:
        values = [int(v) for v in dims.split("x")]
    except ValueError:
        values = []
    if len(values) != len(keys) or min(values) < 1:
        raise ValueError(f"--shape {text!r}: {op} takes {len(keys)} positive integers "
                         f"({' x '.join(keys)}); forms: {SHAPE_EXAMPLES}")
    shape = dict(zip(keys, values))
    if op == "gemv":
        shape = {"m": 1, **shape}
    if op == "attention" and shape["heads"] % shape["kv_heads"]:
        raise ValueError(f"--shape {text!r}: heads ({shape['heads']}) must be a multiple of kv_heads "
                         f"({shape['kv_heads']})")
    return op, "user_" + "x".join(map(str, values)), shape


def user_cases(specs) -> list[Case]:
    """Every precision of each ``--shape`` given on the command line, as cases like the built-in ones."""
    out = []
    for spec in specs or ():
        op, name, shape = parse_shape_option(spec)
        if op == "attention":
            out += [Case(op, name, shape, p, {"precision": p}, None) for p in ATTENTION_PRECISIONS]
        else:
            out += [Case(op, name, shape, label, kwargs, None) for label, kwargs in GEMM_PRECISIONS]
    return out


def cases_for(family: str, extra: list[Case] = ()) -> list[Case]:
    """The built-in cases of a family, then ``extra`` (the user's ``--shape`` cases)."""
    out = []
    for op, name, shape, bound in gemm_shapes(family) + grouped_shapes(family):
        for label, kwargs in GEMM_PRECISIONS:
            out.append(Case(op, name, shape, label, kwargs, bound))
    for name, shape, bound in attention_shapes(family):
        for prec in ATTENTION_PRECISIONS:
            out.append(Case("attention", name, shape, prec, {"precision": prec}, bound))
    return out + [c for c in extra if c.id not in {o.id for o in out}]


# Precision pairs whose speed ratio on a memory-bound GEMV should follow the byte ratio.
RATIO_SHAPE = {"m": 1, "n": 11008, "k": 4096}
RATIO_PAIRS = [("bf16", "int8"), ("bf16", "int4_tinygemm/bf16"), ("fp32", "bf16"), ("bf16", "int8/bf16")]
# Pairs whose fast path is not expected at its memory roof on CUDA, so their ratio is reported, not held
# to the byte ratio: torch 2.13's CUDA _weight_int8pack_mm (aten/src/ATen/native/cuda/int8mm.cu) reads
# the int8 weight directly but runs one thread per output in fp32 without tensor cores (a coalesced
# rewrite is an open pull request); promising 2x over bf16 for it would be a wrong promise.
RATIO_NOT_AT_ROOF_ON_CUDA = {("bf16", "int8/bf16"): "CUDA's _weight_int8pack_mm is one thread per output, fp32, no "
                             "tensor cores: it reads 1 byte per weight but is not expected at the memory roof"}
