"""``apply_quantization``: quantize a model's linear layers in place and report what happened.

The report names the layers quantized and the layers skipped (with why), parameter bytes before and
after (counting the inner tensors of torchao's tensor subclasses and the packed INT4 buffers), and the
bytes ``roofline.formats`` predicts for the quantized layers. Every eligible layer is checked after
the fact: a layer torchao left unquantized is an error, not a silent pass, and one layer of each shape
runs a forward before the report is returned, so a config that quantizes but cannot run (a kernel
needing a package that is not installed) is refused here with its reason, not mid-measurement.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from roofline_kernels.kernel import storage_bytes
from roofline_kernels.torchao_paths import failure_reason, shape_refusal
from roofline import tensor_bytes

from .configs import Precision, QuantizationUnsupported, get_precision, torchao_config
from .int4_cpu import Int4PackedLinear, int4_cpu_unsupported_reason


# bytes really stored, tensor-subclass internals included: one definition, in roofline_kernels.ops
tensor_storage_bytes = storage_bytes


def param_bytes(model: torch.nn.Module) -> int:
    """Parameters and buffers, each storage once (tied weights count once)."""
    return storage_bytes(model)


@dataclass
class QuantReport:
    precision: str
    method: str
    device: str
    config: str
    weight_format: str
    quantized: list = field(default_factory=list)   # layer names
    skipped: list = field(default_factory=list)     # (layer name, why)
    bytes_before: int = 0
    bytes_after: int = 0
    predicted_bytes_after: float = 0.0

    @property
    def bytes_vs_prediction(self) -> float:
        return self.bytes_after / self.predicted_bytes_after

    @property
    def reduction(self) -> float:
        return self.bytes_before / self.bytes_after

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(bytes_vs_prediction=self.bytes_vs_prediction, reduction=self.reduction)
        return d


def _layer_skip_reason(prec: Precision, lin: torch.nn.Linear, info, group_size: int) -> str | None:
    if prec.name == "int4" and info.kind == "cpu":
        return int4_cpu_unsupported_reason(lin, group_size)
    n, k = lin.weight.shape
    return shape_refusal(prec.weight_format, prec.act_format, n, k)


def _probe_forwards(model: torch.nn.Module, names: list, prec: Precision, device: str) -> None:
    """One forward through the first quantized layer of each [N, K] shape (a 1-row input)."""
    seen = set()
    for name in names:
        mod = model.get_submodule(name)
        w = mod.weight
        if tuple(w.shape) in seen:
            continue
        seen.add(tuple(w.shape))
        try:
            mod(torch.randn(1, w.shape[1], generator=torch.Generator().manual_seed(0)).to(w.device, w.dtype))
        except Exception as e:  # torchao's kernels raise assertions, ImportErrors and runtime errors alike
            raise QuantizationUnsupported(prec.name, device, f"layer {name} is quantized but its forward "
                                          f"fails: {failure_reason(e)}") from None


def _set_submodule(model: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def _is_quantized(module: torch.nn.Module) -> bool:
    if isinstance(module, Int4PackedLinear):
        return True
    w = getattr(module, "weight", None)
    return w is not None and type(w.data if isinstance(w, torch.nn.Parameter) else w) is not torch.Tensor


def apply_quantization(model: torch.nn.Module, precision: str, device_info=None, group_size: int = 128,
                       filter_fn: Callable[[torch.nn.Module, str], bool] | None = None) -> QuantReport:
    """Quantize ``model``'s linear layers in place to ``precision`` (see ``configs.PRECISIONS``)."""
    from roofline_kernels.device import detect
    info = device_info or detect()
    prec = get_precision(precision)
    config = torchao_config(prec, info, group_size)  # raises QuantizationUnsupported
    report = QuantReport(prec.name, prec.method, info.hardware_key,
                         "Int4PackedLinear(group_size=%d)" % group_size if config is None else repr(config),
                         prec.weight_format, bytes_before=param_bytes(model))
    eligible, weight_bytes_before, predicted = [], 0, 0.0
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or (filter_fn is not None and not filter_fn(mod, name)):
            continue
        why = _layer_skip_reason(prec, mod, info, group_size)
        if why:
            report.skipped.append((name, why))
            continue
        eligible.append(name)
        predicted += tensor_bytes(prec.weight_format, mod.weight.numel())
    # a weight shared with a module left as it is (a tied embedding: lm_head.weight is embed_tokens.weight) stays in
    # memory beside its quantized copy: its storage is not freed, so it is not taken off (the table was counted zero
    # times: a tiny tied Llama's int8 prediction read 3.28 MB against 7.54 measured)
    chosen = set(eligible)
    kept = {p.data_ptr() for n, m in model.named_modules() if n not in chosen for p in m.parameters(recurse=False)}
    weight_bytes_before = sum(tensor_storage_bytes(model.get_submodule(n).weight) for n in eligible
                              if model.get_submodule(n).weight.data_ptr() not in kept)
    if not eligible:
        raise QuantizationUnsupported(prec.name, info.hardware_key, "no linear layer is eligible: " +
                                      "; ".join(f"{n}: {w}" for n, w in report.skipped) if report.skipped
                                      else "the model has no linear layers")
    with torch.no_grad():
        if config is None:
            for name in eligible:
                _set_submodule(model, name, Int4PackedLinear(model.get_submodule(name), group_size))
        else:
            import torchao.quantization as q
            names = set(eligible)
            try:
                q.quantize_(model, config, filter_fn=lambda m, fqn: fqn in names)
            except Exception as e:  # torchao's own refusal (kernel library missing, layout rules)
                raise QuantizationUnsupported(prec.name, info.hardware_key, f"torchao failed: {e}") from None
    left = [n for n in eligible if not _is_quantized(model.get_submodule(n))]
    if left:
        raise RuntimeError(f"{prec.name}: these layers were left unquantized: {', '.join(left)}")
    if config is not None:
        with torch.no_grad():
            _probe_forwards(model, eligible, prec, info.hardware_key)
    report.quantized = eligible
    report.bytes_after = param_bytes(model)
    report.predicted_bytes_after = report.bytes_before - weight_bytes_before + predicted
    return report
