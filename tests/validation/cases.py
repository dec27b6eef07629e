"""The validation cases as data: (operator, shape, precision) per hardware family.

Shapes follow what transformer inference runs: decode GEMVs of Llama projections, a small-batch GEMM,
a prefill GEMM, and GQA attention for decode (KV-cache read) and prefill (causal). The precision sweep
runs every precision on every shape, each its own case, so one unsupported precision skips alone.
"""
from __future__ import annotations

from dataclasses import dataclass

# (label, kernel kwargs)
GEMM_PRECISIONS = [
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
ATTENTION_PRECISIONS = ["fp32", "bf16", "fp16"]
SWEEP_SHAPE = "1x4096x4096"  # the shape every precision runs on, slow ones included


@dataclass(frozen=True)
class Case:
    op: str            # "gemv", "gemm", "attention"
    name: str          # shape label
    shape: dict
    precision: str     # label
    kwargs: dict
    expected_bound: str

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


ATTENTION_SHAPES = [
    ("decode_b1_h32_kv8_s4096", {"batch": 1, "heads": 32, "kv_heads": 8, "seq_q": 1, "seq_kv": 4096,
                                 "head_dim": 128}, "memory"),
    ("prefill_b1_h32_kv8_s1024", {"batch": 1, "heads": 32, "kv_heads": 8, "seq_q": 1024, "seq_kv": 1024,
                                  "head_dim": 128}, "compute"),
]


def cases_for(family: str) -> list[Case]:
    out = []
    for op, name, shape, bound in gemm_shapes(family):
        for label, kwargs in GEMM_PRECISIONS:
            out.append(Case(op, name, shape, label, kwargs, bound))
    for name, shape, bound in ATTENTION_SHAPES:
        for prec in ATTENTION_PRECISIONS:
            out.append(Case("attention", name, shape, prec, {"precision": prec}, bound))
    return out


# Precision pairs whose speed ratio on a memory-bound GEMV should follow the byte ratio.
RATIO_SHAPE = {"m": 1, "n": 11008, "k": 4096}
RATIO_PAIRS = [("bf16", "int8"), ("bf16", "int4_tinygemm/bf16"), ("fp32", "bf16"), ("bf16", "int8/bf16")]
# Pairs whose fast path is not expected at its memory roof on CUDA, so their ratio is reported, not held
# to the byte ratio: torch 2.13's CUDA _weight_int8pack_mm (aten/src/ATen/native/cuda/int8mm.cu) reads
# the int8 weight directly but runs one thread per output in fp32 without tensor cores (a coalesced
# rewrite is an open pull request); promising 2x over bf16 for it would be a wrong promise.
RATIO_NOT_AT_ROOF_ON_CUDA = {("bf16", "int8/bf16"): "CUDA's _weight_int8pack_mm is one thread per output, fp32, no "
                             "tensor cores: it reads 1 byte per weight but is not expected at the memory roof"}
