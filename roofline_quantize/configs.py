"""Each quantization precision mapped to a torchao 0.18 config, per device.

The configs, the capability gates and the shape rules live in ``roofline_kernels.torchao_paths`` (the one place
a torchao config is chosen); this module names the precisions the quantize pipeline offers and what it
suggests instead. A precision the device cannot run raises ``QuantizationUnsupported`` naming the
precision, the device, the real reason and what would run instead: never a silent ``False``, never a
silently unquantized model. ``weight_format`` is the ``roofline`` format the quantized weights are
stored in: the byte prediction the apply report is checked against.
"""
from __future__ import annotations

from dataclasses import dataclass

from roofline_kernels import torchao_paths
from roofline_kernels.ops import INT4_GROUP


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


PRECISIONS: dict[str, Precision] = {p.name: p for p in (
    Precision("int8", "int8", "bf16", "int8 weight-only, per-row scales: torchao Int8Tensor read by "
              "aten._weight_int8pack_mm (no dequantized copy)"),
    Precision("int8_dynamic", "int8", "int8", "torchao Int8DynamicActivationInt8WeightConfig (W8A8)"),
    Precision("int4", "int4_tinygemm", "bf16",
              "weight-only INT4 group 128: torchao Int4WeightOnlyConfig (tinygemm tile_packed_to_4d) on CUDA, "
              "packed Int4PackedLinear on CPU"),
    Precision("fp8", "fp8_e4m3", "fp8_e4m3", "torchao Float8DynamicActivationFloat8WeightConfig (per-tensor)"),
    Precision("fp8_weight_only", "fp8_e4m3", "bf16", "torchao Float8WeightOnlyConfig (dequantizes per call)"),
    Precision("nvfp4", "nvfp4", "nvfp4", "torchao mx_formats NVFP4DynamicActivationNVFP4WeightConfig "
              "(no mslk Triton kernel)"),
    Precision("mxfp4", "mxfp4", "mxfp4", "torchao mx_formats MXDynamicActivationMXWeightConfig (fp4 e2m1)"),
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


def _device(info, cap) -> str:
    return f"{info.hardware_key} ({info.name}" + (f", sm_{cap[0]}{cap[1]})" if cap else ")")


def _instead(prec: Precision, cap) -> str:
    if prec.name.startswith("fp8"):
        return "int8 (weight-only) or int8_dynamic (W8A8)"
    if prec.name in ("nvfp4", "mxfp4"):
        if prec.name == "mxfp4" and torchao_paths.arch_refusal("nvfp4", "nvfp4", cap) is None:
            return "nvfp4"
        return "int4 (weight-only, group 128)" + (" or fp8" if cap and cap >= (8, 9) else "")
    return "int8 (weight-only)" if prec.name == "int4" else ""


def _cpu_int4(prec: Precision, cap) -> bool:
    """INT4 on a CPU is roofline_quantize.int4_cpu's packed layer: torchao has no packed INT4 path there."""
    return prec.name == "int4" and cap is None


def check_supported(prec: Precision, info) -> None:
    cap = _capability(info)
    if _cpu_int4(prec, cap):
        return
    why = torchao_paths.arch_refusal(prec.weight_format, prec.act_format, cap)
    if why:
        raise QuantizationUnsupported(prec.name, _device(info, cap), why, _instead(prec, cap))


def torchao_config(prec: Precision, info, group_size: int = INT4_GROUP):
    """The torchao config object for ``prec`` on this device, or None for the CPU packed INT4 path."""
    check_supported(prec, info)
    cap = _capability(info)
    if _cpu_int4(prec, cap):
        return None
    if prec.name == "int4" and group_size != INT4_GROUP:
        raise QuantizationUnsupported(prec.name, _device(info, cap), f"the tinygemm INT4 path (format int4_tinygemm) "
                                      f"is built for group size {INT4_GROUP}, not {group_size}")
    try:
        config, _ = torchao_paths.torchao_config(prec.weight_format, prec.act_format, cap)
    except torchao_paths.TorchaoPathUnavailable as e:
        raise QuantizationUnsupported(prec.name, _device(info, cap), e.why, _instead(prec, cap)) from None
    return config
