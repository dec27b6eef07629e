"""Which quantization to use for a GEMM on a piece of hardware, by the roofline.

1. Candidates are the paths real libraries ship (torchao configs, native low-precision matmuls).
   One whose math has no path on the hardware (``compute_path`` raises) is never considered.
2. Each runnable candidate is priced with ``predict``; the fastest wins. Candidates within
   ``tie_tolerance`` of the fastest count as tied, and ties go to the higher precision (more weight
   bits, then more activation bits, then floating point before integer, which keeps FP8's range).
3. So decode shapes on bandwidth-bound hardware pick the fewest bytes that run, and compute-bound
   prefill picks the highest-throughput native format, without special cases.
4. ``memory_limit_gb`` (and the hardware's own capacity) excludes candidates whose weights do not fit.
"""
from __future__ import annotations

from dataclasses import dataclass

from .formats import get_format
from .hardware import get_hardware
from .models import PHASES
from .operators import gemm
from .predict import Prediction, UnsupportedPathError, precision_label, predict


@dataclass(frozen=True)
class Candidate:
    weight: str
    act: str  # None -> the baseline activation format (weight-only paths)
    method: str


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("nvfp4", "nvfp4", "native NVFP4 W4A4 (torchao mx_formats NVFP4 inference config)"),
    Candidate("mxfp4", "mxfp4", "native MXFP4 W4A4 (torchao mx_formats MXFP4 inference config)"),
    Candidate("fp8_e4m3", "fp8_e4m3", "native FP8 W8A8 (torchao Float8DynamicActivationFloat8WeightConfig)"),
    Candidate("int8", "int8", "INT8 W8A8 (torchao Int8DynamicActivationInt8WeightConfig)"),
    Candidate("int4_tinygemm", None, "weight-only INT4 group-128 (torchao Int4WeightOnlyConfig)"),
    Candidate("int8", None, "weight-only INT8 (torchao Int8WeightOnlyConfig)"),
    Candidate("fp8_e4m3", None, "weight-only FP8 (torchao Float8WeightOnlyConfig)"),
)


@dataclass(frozen=True)
class Recommendation:
    precision: str
    method: str
    reason: str
    predicted_speedup: float
    prediction: Prediction
    baseline: Prediction
    ranking: tuple  # ((precision, method, time_s or None, note), ...) for every candidate considered

    def to_dict(self) -> dict:
        return {"precision": self.precision, "method": self.method, "reason": self.reason,
                "predicted_speedup": self.predicted_speedup, "prediction": self.prediction.to_dict(),
                "baseline": self.baseline.to_dict(),
                "ranking": [dict(zip(("precision", "method", "time_s", "note"), r)) for r in self.ranking]}


def _precision_rank(p: Prediction):
    w, a = get_format(p.weight_format), get_format(p.act_format)
    return (w.bits_per_element, a.bits_per_element, w.is_float)


def recommend_quantization(hardware, m, n, k, phase="decode", memory_limit_gb=None, baseline="fp16",
                           peaks="datasheet", tie_tolerance=0.02, candidates=CANDIDATES) -> Recommendation:
    hw = get_hardware(hardware)
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
    base_fmt = get_format(baseline)
    if not base_fmt.is_16bit_or_wider_float:
        raise ValueError(f"baseline {baseline!r} must be a 16/32-bit float format (fp16, bf16, fp32)")
    if memory_limit_gb is not None and not (memory_limit_gb > 0 and memory_limit_gb < float("inf")):
        raise ValueError(f"memory_limit_gb={memory_limit_gb!r} must be a positive number")
    if not 0 <= tie_tolerance < 1:
        raise ValueError(f"tie_tolerance={tie_tolerance!r} must be in [0, 1)")
    limit_gb = min(x for x in (memory_limit_gb, hw.memory.value if hw.memory else None, float("inf"))
                   if x is not None)

    base_pred = predict(gemm(m, n, k, weight=base_fmt, act=base_fmt), hw, peaks)
    options = [(base_pred, f"{base_fmt.name} baseline (no quantization)")]
    ranking = []
    for c in candidates:
        try:
            options.append((predict(gemm(m, n, k, weight=c.weight, act=c.act or base_fmt), hw, peaks), c.method))
        except UnsupportedPathError as e:
            label = precision_label(get_format(c.weight).name, get_format(c.act or base_fmt).name)
            ranking.append((label, c.method, None, f"cannot run: {e}"))

    def weight_gb(p: Prediction) -> float:
        return gemm(m, n, k, weight=p.weight_format, act=p.act_format).operand_bytes["weights"] / 1e9

    fitting = []
    for p, method in options:
        if weight_gb(p) > limit_gb:
            ranking.append((p.precision, method, p.time_s, f"weights {weight_gb(p):.3g} GB exceed the {limit_gb:.3g} GB limit"))
        else:
            fitting.append((p, method))
    if not fitting:
        raise ValueError(f"nothing fits in {limit_gb:.3g} GB: the smallest weights need "
                         f"{min(weight_gb(p) for p, _ in options):.3g} GB")

    best_time = min(p.time_s for p, _ in fitting)
    tied = [(p, meth) for p, meth in fitting if p.time_s <= best_time * (1 + tie_tolerance)]
    choice, method = max(tied, key=lambda pm: _precision_rank(pm[0]))
    for p, meth in sorted(fitting, key=lambda pm: pm[0].time_s):
        ranking.append((p.precision, meth, p.time_s, "chosen" if p is choice else p.bound + "-bound"))

    speedup = base_pred.time_s / choice.time_s
    if choice is base_pred:
        reason = (f"no runnable quantization on {hw.key} beats {base_fmt.name} by more than "
                  f"{tie_tolerance:.0%} for this {phase} shape ({choice.bound}-bound)")
    elif choice.bound == "memory":
        reason = (f"{phase} {m}x{n}x{k} is memory-bound on {hw.key} (AI {choice.ai:.3g} < critical "
                  f"{choice.critical_ai:.3g} FLOP/B): the fewest bytes that run win; {choice.precision} moves "
                  f"{choice.bytes / base_pred.bytes:.0%} of the {base_fmt.name} bytes")
    else:
        reason = (f"{phase} {m}x{n}x{k} is compute-bound on {hw.key} (AI {choice.ai:.3g} >= critical "
                  f"{choice.critical_ai:.3g} FLOP/B): the highest-throughput native path wins; "
                  f"{choice.compute_class} peak {choice.peak_tflops:g} vs {base_pred.peak_tflops:g} TFLOP/s")
    return Recommendation(choice.precision, method, reason, speedup, choice, base_pred, tuple(ranking))
