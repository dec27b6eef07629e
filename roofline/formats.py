"""Number formats and their exact storage cost.

What this models:
1. A tensor of ``numel`` elements in a format occupies ``numel * bits_per_element / 8`` bytes plus a
   fixed ``per_tensor_bits / 8`` (NVFP4's FP32 global scale). ``bits_per_element`` already includes
   block scales and zero points, spread over the block (MXFP4: 4 + 8/32 = 4.25).
2. Every format names the *compute class* whose tensor-core peak prices its math when it runs
   natively (``fp16``, ``fp8``, ``fp4``...). Formats without any native math (NF4, group-wise INT4)
   have ``compute_class=None``: they are storage formats, dequantised before the math.
3. TF32 is a compute mode: it is stored as FP32.
4. ``block_scale`` names a block-float format's scale type and block (``e8m0/32`` for OCP MX, ``e4m3/16``
   for NVFP4): formats sharing one can feed one block-scaled matmul instruction (MXFP6 x MXFP8).

Sources: ../shared/reference/hardware.md, "Storage formats" table (OCP MX spec v1.0, NVIDIA NVFP4
blog, bitsandbytes NF4 paper, GPTQ/AWQ layouts, torchao tinygemm layout).
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Format:
    name: str
    bits_per_element: float
    kind: str  # "float", "int", "block-float", "block-int"
    compute_class: str | None
    layout: str
    source: str
    per_tensor_bits: int = 0
    aliases: tuple[str, ...] = field(default=())
    block_scale: str = ""  # scale type / block size of a block-float format; "" for the others

    @property
    def bytes_per_element(self) -> float:
        return self.bits_per_element / 8.0

    @property
    def is_float(self) -> bool:
        return self.kind in ("float", "block-float")

    @property
    def is_16bit_or_wider_float(self) -> bool:
        return self.kind == "float" and self.bits_per_element >= 16

    @property
    def element_bits(self) -> int:
        """Bits of each value, its block scales and zero points left out (NVFP4 4, MXFP4 4, INT4 g128 4, Q8_0 8):
        what a tie-break toward accuracy compares. Every format's scale overhead is under one bit per element
        (``tests/test_formats.py`` holds each to it), so this is the whole part of ``bits_per_element``."""
        return int(self.bits_per_element)


_REF = "shared/reference/hardware.md, storage formats"
MX_BLOCK_SCALE = "e8m0/32"  # OCP MX v1.0: one E8M0 scale per 32 elements

FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("fp32", 32, "float", "fp32", "IEEE binary32", _REF, aliases=("float32", "float", "single")),
        Format("tf32", 32, "float", "tf32", "stored as FP32; 10-bit mantissa math on tensor cores",
               _REF, aliases=("tensorfloat32",)),
        Format("fp16", 16, "float", "fp16", "IEEE binary16", _REF, aliases=("float16", "half")),
        Format("bf16", 16, "float", "bf16", "bfloat16", _REF, aliases=("bfloat16",)),
        Format("fp8_e4m3", 8, "float", "fp8", "OCP FP8 E4M3 (per-tensor scale ignored)", _REF,
               aliases=("e4m3", "fp8", "float8_e4m3fn", "float8_e4m3")),
        Format("fp8_e5m2", 8, "float", "fp8", "OCP FP8 E5M2 (per-tensor scale ignored)", _REF,
               aliases=("e5m2", "float8_e5m2")),
        Format("int32", 32, "int", None, "32-bit integer: the accumulator output of INT8 matmuls "
               "(torch._int_mm)", _REF, aliases=("i32",)),
        Format("int8", 8, "int", "int8", "8-bit integer (per-channel scale ignored)", _REF,
               aliases=("i8", "w8a8")),
        Format("int4", 4, "int", "int4", "plain packed 4-bit integer, no scales", _REF,
               aliases=("i4",)),
        Format("mxfp8", 8.25, "block-float", "fp8", "E4M3/E5M2 values, one E8M0 scale per 32", _REF,
               aliases=("mx_fp8",), block_scale=MX_BLOCK_SCALE),
        Format("mxfp6", 6.25, "block-float", "fp8", "E2M3/E3M2 values, one E8M0 scale per 32 "
               "(runs at the FP8 rate on Blackwell)", _REF, aliases=("mx_fp6",), block_scale=MX_BLOCK_SCALE),
        Format("mxfp4", 4.25, "block-float", "fp4", "E2M1 values, one E8M0 scale per 32", _REF,
               aliases=("mx_fp4",), block_scale=MX_BLOCK_SCALE),
        Format("nvfp4", 4.5, "block-float", "fp4", "E2M1 values, one E4M3 scale per 16, "
               "one FP32 scale per tensor", _REF, per_tensor_bits=32, aliases=("nv_fp4",), block_scale="e4m3/16"),
        Format("nf4", 4.5, "block-int", None, "bitsandbytes NF4, block 64, FP32 absmax", _REF,
               aliases=("bnb_nf4",)),
        Format("nf4_dq", 4 + 8 / 64 + 32 / (64 * 256), "block-int", None,
               "NF4 with double quantisation: 8-bit absmax per 64, FP32 per 256 blocks", _REF,
               aliases=("nf4_double_quant",)),
        Format("int4_g128", 4 + 16 / 128 + 4 / 128, "block-int", None,
               "GPTQ/AWQ int4, group 128: FP16 scale + int4 zero per group", _REF,
               aliases=("gptq", "awq", "int4_gptq", "int4_awq")),
        Format("q8_0", 8 + 16 / 32, "block-int", None,
               "GGML Q8_0: 32 int8 values and one fp16 scale per block (34 bytes per 32), dequantised before the "
               "math", "ggml/src/ggml-common.h block_q8_0 (sizeof == sizeof(ggml_half) + QK8_0, QK8_0 = 32)",
               aliases=("gguf_q8_0", "ggml_q8_0")),
        Format("int4_tinygemm", 4 + 32 / 128, "block-int", None,
               "torchao Int4WeightOnlyConfig / tinygemm layout, group 128: bf16 scale + bf16 zero "
               "per group", "torchao quantization docs; torch _weight_int4pack_mm scales_and_zeros",
               aliases=("int4_g128_bf16", "int4_wo", "int4wo")),
    )
}

_ALIASES: dict[str, str] = {}
for _f in FORMATS.values():
    for _n in (_f.name, *_f.aliases):
        _ALIASES[_n.lower()] = _f.name


def known_format_names() -> list[str]:
    return list(FORMATS)


def get_format(name: str | Format) -> Format:
    """Look a format up by name or alias, case-insensitively (``Half``, ``e4m3``, ``float16``)."""
    if isinstance(name, Format):
        return name
    key = str(name).strip().lower().replace("-", "_")
    if key in _ALIASES:
        return FORMATS[_ALIASES[key]]
    raise ValueError(f"unknown precision {name!r}; known: {', '.join(FORMATS)} "
                     f"(aliases: {', '.join(sorted(a for a in _ALIASES if a not in FORMATS))})")


def tensor_bytes(fmt: str | Format, numel):
    """Bytes a tensor of ``numel`` elements occupies in ``fmt``, scales included.

    Works on Python numbers and numpy arrays alike: the scalar and vectorised paths share it.
    """
    f = get_format(fmt)
    return numel * f.bits_per_element / 8.0 + f.per_tensor_bits / 8.0
