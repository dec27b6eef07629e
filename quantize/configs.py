"""Each quantization precision mapped to torchao 0.18's ``*Config`` API, per device.

A precision the device cannot run raises ``QuantizationUnsupported`` naming the precision, the
device and what would run instead: never a silent ``False``, never a silently unquantized model.
``weight_format`` is the ``roofline`` format the quantized weights are stored in: the byte
prediction the apply report is checked against.
"""
from __future__ import annotations

from dataclasses import dataclass

from kernels.ops import INT4_GROUP


class QuantizationUnsupported(ValueError):
    def __init__(self, precision: str, device: str, why: str, instead: str = ""):
        self.precision, self.device = precision, device
        super().__init__(f"cannot quantize to {precision} on {device}: {why}" +
                         (f"; what would run instead: {instead}" if instead else ""))


@dataclass(frozen=True)
class Precision:
    name: str
    weight_format: str    # roofline format of the stored weights
    act_format: str       # roofline format the matmul reads activations in
    method: str
    needs: str            # "any", "cuda", "sm89", "blackwell"


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("int8", "int8", "bf16", "torchao Int8WeightOnlyConfig (per-row scales)", "any"),
    Precision("int8_dynamic", "int8", "int8", "torchao Int8DynamicActivationInt8WeightConfig (W8A8)", "any"),
    Precision("int4", "int4_tinygemm", "bf16",
              "weight-only INT4 group 128: torchao Int4WeightOnlyConfig on CUDA, packed Int4PackedLinear on CPU",
              "any"),
    Precision("fp8", "fp8_e4m3", "fp8_e4m3", "torchao Float8DynamicActivationFloat8WeightConfig", "sm89"),
    Precision("fp8_weight_only", "fp8_e4m3", "bf16", "torchao Float8WeightOnlyConfig", "sm89"),
    Precision("nvfp4", "nvfp4", "nvfp4", "torchao mx_formats NVFP4DynamicActivationNVFP4WeightConfig", "blackwell"),
    Precision("mxfp4", "mxfp4", "mxfp4", "torchao mx_formats MXDynamicActivationMXWeightConfig (fp4 e2m1)",
              "blackwell"),
)}
ALIASES = {"w8a8": "int8_dynamic", "int8_weight_only": "int8", "int4_weight_only": "int4", "e4m3": "fp8",
           "nv_fp4": "nvfp4", "mx_fp4": "mxfp4"}
# what each roofline recommendation is applied as
FROM_RECOMMENDATION = {"int8/bf16": "int8", "int8/fp16": "int8", "int8": "int8_dynamic",
                       "int4_tinygemm/bf16": "int4", "int4_tinygemm/fp16": "int4", "fp8_e4m3": "fp8",
                       "fp8_e4m3/bf16": "fp8_weight_only", "fp8_e4m3/fp16": "fp8_weight_only",
                       "nvfp4": "nvfp4", "mxfp4": "mxfp4"}


def get_precision(name: str) -> Precision:
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise ValueError(f"unknown quantization precision {name!r}; known: {', '.join(PRECISIONS)}, auto")
    return PRECISIONS[key]


def _capability(info) -> tuple[int, int] | None:
    if info.kind == "cpu" or not info.compute_capability:
        return None
    major, minor = info.compute_capability.split(".")
    return int(major), int(minor)


def check_supported(prec: Precision, info) -> None:
    cap = _capability(info)
    device = f"{info.hardware_key} ({info.name}" + (f", sm_{cap[0]}{cap[1]})" if cap else ")")
    if prec.needs == "sm89" and (cap is None or cap < (8, 9)):
        raise QuantizationUnsupported(prec.name, device, "FP8 matmuls need an sm_89+ GPU (Ada, Hopper, Blackwell)",
                                      "int8 (weight-only) or int8_dynamic (W8A8)")
    if prec.needs == "blackwell" and (cap is None or cap[0] not in (10, 12)):
        raise QuantizationUnsupported(prec.name, device, "block-scaled FP4 matmuls need Blackwell (sm_100, sm_120/121)",
                                      "int4 (weight-only, group 128)" + (" or fp8" if cap and cap >= (8, 9) else ""))


def torchao_config(prec: Precision, info, group_size: int = INT4_GROUP):
    """The torchao config object for ``prec`` on this device, or None for the CPU packed INT4 path."""
    check_supported(prec, info)
    if prec.name == "int4" and info.kind == "cpu":
        return None
    try:
        import torch
        import torchao.quantization as q
    except ImportError as e:
        raise QuantizationUnsupported(prec.name, info.hardware_key, f"torchao is not importable ({e})",
                                      "pip install torchao") from None
    if prec.name == "int8":
        return q.Int8WeightOnlyConfig()
    if prec.name == "int8_dynamic":
        return q.Int8DynamicActivationInt8WeightConfig()
    if prec.name == "int4":
        return q.Int4WeightOnlyConfig(group_size=group_size)
    if prec.name == "fp8":
        return q.Float8DynamicActivationFloat8WeightConfig()
    if prec.name == "fp8_weight_only":
        return q.Float8WeightOnlyConfig()
    from torchao.prototype import mx_formats as mx
    if prec.name == "nvfp4":
        return mx.NVFP4DynamicActivationNVFP4WeightConfig()
    return mx.MXDynamicActivationMXWeightConfig(activation_dtype=torch.float4_e2m1fn_x2,
                                                weight_dtype=torch.float4_e2m1fn_x2)
