"""Which quantization to use for a GEMM on a piece of hardware, by the roofline.

1. Candidates are the paths real libraries ship (torchao configs, native low-precision matmuls).
   One whose math has no path on the hardware (``compute_path`` raises) is never considered.
2. Each runnable candidate is priced with ``predict``; the fastest wins. Candidates within
   ``tie_tolerance`` of the fastest count as tied, and ties go to the more accurate (``accuracy_rank``):
   more bits per weight value, then wider activations at equal weight bits (W4A16 over W4A4), then finer
   block scales (NVFP4 over MXFP4), then floating point before integer, which keeps FP8's range. Bits
   are each value's (``Format.element_bits``), scales left out: NVFP4's 4.5 stored bits per element
   are 4-bit values and do not outrank a 4.25-bit weight-only INT4.
3. So decode shapes on bandwidth-bound hardware pick the fewest bytes that run, and compute-bound
   prefill picks the highest-throughput native format, without special cases.
4. ``memory_limit_gb`` (and the hardware's own capacity) excludes candidates whose weights do not fit.
5. The reason names what decided, from the numbers: the winner and the runner-up (the fastest other
   candidate that fits) each with the roofline term that bound it. The runner-up lost on ``bytes`` when
   its memory time is its roof, on ``compute peak`` when its compute time is, and to the ``tie`` rule
   when it is within ``tie_tolerance`` of the fastest.
6. With ``expected`` (a prediction -> expected time, from this device's efficiency profile:
   ``roofline.efficiency``), the candidates that have one are ranked by expected time instead (when
   at least two do); a candidate never measured here is listed but not ranked (mixing expectations
   with bare bounds would favour whichever path has no measurement). Where that ranking picks another
   path than the bound alone, ``decided_by`` is ``measured efficiency`` and the reason names the
   roofline's pick and why it lost: a path known to be slow on this device is not recommended because
   its bytes look good. ``ranked_by`` says which ranking was used and what was left out of it.
"""
from __future__ import annotations

from dataclasses import dataclass

from .formats import get_format
from .hardware import get_hardware
from .models import PHASES
from .operators import gemm
from .predict import Prediction, UnsupportedPathError, precision_label, predict


# The activation formats torchao's weight-only configs run with, the paths ``roofline_kernels.torchao_paths`` builds
# (Int4WeightOnlyConfig's tinygemm kernel, aten._weight_int4pack_mm, takes bf16 and casts an fp16 activation to it;
# Int8WeightOnlyConfig and Float8WeightOnlyConfig are applied to bf16/fp16 models): an fp32 model is cast first
WEIGHT_ONLY_ACTS = ("bf16", "fp16")


@dataclass(frozen=True)
class Candidate:
    weight: str
    act: str  # None -> the baseline activation format (weight-only paths)
    method: str
    acts: tuple[str, ...] | None = None  # a weight-only path: the baseline activations it takes (None: any)

    def refusal(self, baseline: str) -> str | None:
        """Why this path cannot take the baseline's activations, or None."""
        base = get_format(baseline).name
        if self.act is None and self.acts is not None and base not in self.acts:
            return (f"cannot run: {self.method} takes {' or '.join(self.acts)} activations, not {base} (the model "
                    f"is cast to {self.acts[0]} first, a precision change of its own)")
        return None


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("nvfp4", "nvfp4", "native NVFP4 W4A4 (torchao mx_formats NVFP4 inference config)"),
    Candidate("mxfp4", "mxfp4", "native MXFP4 W4A4 (torchao mx_formats MXFP4 inference config)"),
    Candidate("fp8_e4m3", "fp8_e4m3", "native FP8 W8A8 (torchao Float8DynamicActivationFloat8WeightConfig)"),
    Candidate("int8", "int8", "INT8 W8A8 (torchao Int8DynamicActivationInt8WeightConfig)"),
    Candidate("int4_tinygemm", None, "weight-only INT4 group-128 (torchao Int4WeightOnlyConfig)", WEIGHT_ONLY_ACTS),
    Candidate("int8", None, "weight-only INT8 (torchao Int8WeightOnlyConfig)", WEIGHT_ONLY_ACTS),
    Candidate("fp8_e4m3", None, "weight-only FP8 (torchao Float8WeightOnlyConfig)", WEIGHT_ONLY_ACTS),
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
    decided_by: str = ""  # "bytes", "compute peak", "tie", or "only candidate": what beat the runner-up
    runner_up: Prediction | None = None  # the fastest candidate that fits, other than the choice
    ranked_by: str = "roofline bound"  # or "expected time", or why expected time could not be used

    def to_dict(self) -> dict:
        return {"precision": self.precision, "method": self.method, "reason": self.reason,
                "decided_by": self.decided_by, "ranked_by": self.ranked_by,
                "predicted_speedup": self.predicted_speedup,
                "prediction": self.prediction.to_dict(), "baseline": self.baseline.to_dict(),
                "runner_up": None if self.runner_up is None else self.runner_up.to_dict(),
                "ranking": [dict(zip(("precision", "method", "time_s", "note"), r)) for r in self.ranking]}


def accuracy_rank(weight, act) -> tuple:
    """Higher is more accurate: (bits per weight value, bits per activation value, stored bits per weight with
    its scales, float weights). Shared by every tie-break toward accuracy (GEMM, whole model, schedule)."""
    w, a = get_format(weight), get_format(act)
    return (w.element_bits, a.element_bits, w.bits_per_element, w.is_float)


TIE_RULES = ("more bits per weight value", "wider activations at equal weight bits (W4A16 over W4A4)",
             "finer block scales at equal value bits", "floating point over integer")


def tie_rule(winner: tuple, loser: tuple) -> str:
    """Which part of ``accuracy_rank`` set ``winner`` above ``loser`` (one of TIE_RULES), or "" when tied."""
    for rule, w, l in zip(TIE_RULES, winner, loser):
        if w != l:
            return rule
    return ""


def _precision_rank(p: Prediction):
    return accuracy_rank(p.weight_format, p.act_format)


def recommend_quantization(hardware, m, n, k, phase: str | None = "decode", memory_limit_gb=None, baseline="fp16",
                           peaks="datasheet", tie_tolerance=0.02, candidates=CANDIDATES,
                           expected=None) -> Recommendation:
    hw = get_hardware(hardware)
    if phase is not None and phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
    base_fmt = get_format(baseline)
    if not base_fmt.is_16bit_or_wider_float:
        raise ValueError(f"baseline {baseline!r} must be a 16/32-bit float format (fp16, bf16, fp32)")
    if memory_limit_gb is not None and not (memory_limit_gb > 0 and memory_limit_gb < float("inf")):
        raise ValueError(f"memory_limit_gb={memory_limit_gb!r} must be a positive number")
    if not 0 <= tie_tolerance < 1:
        raise ValueError(f"tie_tolerance={tie_tolerance!r} must be in [0, 1)")
    usable = hw.model_memory  # a unified-memory device leaves the OS its share
    limit_gb = min(x for x in (memory_limit_gb, usable.value if usable else None, float("inf")) if x is not None)

    base_pred = predict(gemm(m, n, k, weight=base_fmt, act=base_fmt), hw, peaks)
    options = [(base_pred, f"{base_fmt.name} baseline (no quantization)")]
    ranking = []
    for c in candidates:
        if c.refusal(base_fmt.name):
            ranking.append((precision_label(get_format(c.weight).name, base_fmt.name), c.method, None,
                            c.refusal(base_fmt.name)))
            continue
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

    exp = {id(p): expected(p) for p, _ in options} if expected is not None else {}
    known = [(p, meth) for p, meth in fitting if exp.get(id(p))]
    use_expected = len(known) >= 2  # one measured path alone ranks nothing
    ranked_by = "expected time (this device's efficiency profile)" if use_expected else "roofline bound"
    if expected is not None and not use_expected:
        ranked_by = "roofline bound: fewer than two candidates have a measured efficiency on this device"
    elif use_expected and len(known) < len(fitting):
        # a path never measured here is not recommended on its bytes alone: it is listed, not ranked
        for p, meth in fitting:
            if not exp.get(id(p)):
                ranking.append((p.precision, meth, p.time_s, f"not ranked: no measured efficiency on this device "
                                f"(bound {p.bound})"))
        ranked_by += "; not ranked (never measured here): " + ", ".join(
            p.precision for p, _ in fitting if not exp.get(id(p)))
        fitting = known

    def time_of(p: Prediction) -> float:
        return exp[id(p)] if use_expected else p.time_s

    def speedup(p: Prediction) -> float:  # the baseline may not fit or be measured, and so have no expectation
        return time_of(base_pred) / time_of(p) if not use_expected or exp.get(id(base_pred)) else base_pred.time_s / p.time_s

    def pick(t):
        best = min(t(p) for p, _ in fitting)
        tied = [(p, meth) for p, meth in fitting if t(p) <= best * (1 + tie_tolerance)]
        return best, max(tied, key=lambda pm: _precision_rank(pm[0]))

    best_time, (choice, method) = pick(time_of)
    for p, meth in sorted(fitting, key=lambda pm: time_of(pm[0])):
        ranking.append((p.precision, meth, time_of(p), ("chosen" if p is choice else p.bound + "-bound")
                        + (f" (expected; bound {p.time_s:.4g} s)" if use_expected else "")))

    others = [p for p, _ in fitting if p is not choice]
    runner_up = min(others, key=time_of) if others else None
    case = f"{phase + ' ' if phase else ''}{m}x{n}x{k} on {hw.key}"  # None: the shape alone says it (M rows)
    if use_expected:
        _, (roof_pick, _) = pick(lambda p: p.time_s)
        if roof_pick is not choice:
            reason = (f"{case}: {choice.precision} expected {time_of(choice):.4g} s, fastest on this device's measured "
                      f"efficiency; the roofline alone picks {roof_pick.precision} ({bound_term(roof_pick)}), but "
                      f"this device reaches {roof_pick.time_s / time_of(roof_pick):.0%} of that roof on it: expected "
                      f"{time_of(roof_pick):.4g} s")
            return Recommendation(choice.precision, method, reason, speedup(choice), choice, base_pred,
                                  tuple(ranking), "measured efficiency", roof_pick, ranked_by)
    decided_by = decision(choice, runner_up, best_time, tie_tolerance, time_of)
    reason = explain(case, choice, runner_up, base_pred, decided_by, tie_tolerance)
    if use_expected:
        reason += "; ranked by expected time (this device's efficiency profile), which agrees with the roofline"
    return Recommendation(choice.precision, method, reason, speedup(choice), choice, base_pred, tuple(ranking),
                          decided_by, runner_up, ranked_by)


def decision(choice: Prediction, runner_up: Prediction | None, best_time: float, tie_tolerance: float,
             time_of=lambda p: p.time_s) -> str:
    """What beat the runner-up: the tie rule, or the roofline term that bound the runner-up."""
    if runner_up is None:
        return "only candidate"
    if time_of(runner_up) <= best_time * (1 + tie_tolerance):
        return "tie"
    return "bytes" if runner_up.bound == "memory" else "compute peak"


def _time(t: float) -> str:
    return f"{t * 1e3:.4g} ms" if t >= 1e-3 else f"{t * 1e6:.4g} us"


def bound_term(p: Prediction) -> str:
    """``p``'s time and the roofline term that set it, with the other term beside it."""
    memory = f"{p.bytes / 1e6:.4g} MB at {p.bandwidth_gbs:g} GB/s"
    compute = f"{p.flops / 1e9:.4g} GFLOP at the {p.compute_class} peak {p.peak_tflops:g} TFLOP/s"
    if p.bound == "memory":
        return f"{p.precision} {_time(p.time_s)}, memory-bound ({memory}; compute {_time(p.t_compute_s)})"
    return f"{p.precision} {_time(p.time_s)}, compute-bound ({compute}; memory {_time(p.t_memory_s)})"


def explain(case: str, choice: Prediction, runner_up: Prediction | None, baseline: Prediction, decided_by: str,
            tie_tolerance: float) -> str:
    head = f"{case}: " + ("no quantization beats the baseline, " if choice is baseline else "") + bound_term(choice)
    if runner_up is None:
        return f"{head}; nothing else runs and fits"
    why = {
        "tie": f"within {tie_tolerance:.0%} of each other: the tie goes to the more accurate, by "
           f"{tie_rule(_precision_rank(choice), _precision_rank(runner_up)) or 'the order of the candidates'}",
        "bytes": f"{runner_up.precision} loses on bytes: moving its {runner_up.bytes / 1e6:.4g} MB takes longer "
                 f"than {choice.precision}'s {choice.bound}-bound time",
        "compute peak": f"{runner_up.precision} loses on compute peak: {runner_up.peak_tflops:g} TFLOP/s "
                        f"({runner_up.compute_class}) takes longer than {choice.precision}'s {choice.bound}-bound time",
    }[decided_by]
    base = "" if baseline in (choice, runner_up) else f"; baseline {bound_term(baseline)}"
    return f"{head}; runner-up {bound_term(runner_up)}; {why}{base}"
