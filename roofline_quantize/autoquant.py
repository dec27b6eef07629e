"""``quantize --precision auto``: the roofline prunes, measurement decides (torchao autoquant's idea).

1. The recommender ranks every path this device runs for the model's largest projection (by expected
   time where the calibration carries an efficiency profile, else by the bound). The top ``top_k``
   that map to a torchao config here are the candidates; the rest are not worth measuring.
2. Each candidate quantizes a copy of the model and is measured on the model's own shapes (the whole
   decode step and prefill, hot, like the baseline), with its logit error against the FP32 copy.
3. The fastest on the phase asked for whose logit error is within ``max_logit_error`` wins; if none
   beats the unquantized model, the answer is no quantization. The report keeps the roofline's pick,
   the measured pick and, where they differ, why (each candidate's measured speedup, or its error).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field


DEFAULT_MAX_LOGIT_ERROR = 0.10  # relative L2 error of the logits vs FP32: 10% keeps top-1 mostly intact
DEFAULT_TOP_K = 3


@dataclass
class Trial:
    precision: str
    from_roofline: str          # the recommender's label it came from, e.g. "int8/bf16"
    roofline_rank: int          # its place among the paths the recommender priced: 1 is the roofline's own pick
    status: str = "measured"    # "measured", "unsupported", "failed"
    reason: str = ""
    decode_s: float | None = None
    prefill_s: float | None = None
    speedup: float | None = None  # baseline time / this time, on the phase asked for
    logits_rel_error: float | None = None


@dataclass
class AutoQuant:
    phase: str
    max_logit_error: float
    roofline_pick: str | None
    measured_pick: str | None    # None: nothing beat the unquantized model within the error budget
    why: str
    trials: list[Trial] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def candidates(rec, top_k: int = DEFAULT_TOP_K) -> list[tuple[str, str, int]]:
    """(torchao precision, recommender label, rank) of the best-ranked paths that run, fit and have a config."""
    from .configs import FROM_RECOMMENDATION  # torch-backed: imported when used, so the CLI's parser stays light
    out, seen = [], set()
    # ranked paths first, in their order; then those the recommender could not rank (never measured here). The rank
    # is the place among the priced paths, 1 the roofline's pick: counting the rows of paths that cannot run (listed
    # first) put the pick at 4
    priced = [row for row in rec.ranking if row[2] is not None]
    rows = sorted(enumerate(priced, 1), key=lambda r: (r[1][3].startswith("not ranked"), r[0]))
    for rank, (label, _method, t, note) in rows:
        prec = FROM_RECOMMENDATION.get(label)
        if prec is None or prec in seen or "exceed" in note:
            continue
        seen.add(prec)
        out.append((prec, label, rank))
    return out[:top_k]


def run(model, reference, tokens, rec, info, phase: str, baseline_timing, measure, accuracy, rep_ms: float,
        max_logit_error: float = DEFAULT_MAX_LOGIT_ERROR, top_k: int = DEFAULT_TOP_K, setup_cache=None):
    """Measure the candidates; ``measure(model, tokens, rep_ms)`` and ``accuracy(model, reference, tokens)`` are the
    pipeline's own (so a trial is timed exactly like the before/after). Returns (AutoQuant, {precision: (model,
    timing, QuantReport)}) for the candidates that were measured."""
    from .apply import apply_quantization  # torch: only when a trial runs (the CLI imports this module for its
    from .configs import FROM_RECOMMENDATION, QuantizationUnsupported, check_supported, get_precision  # defaults)
    if not (max_logit_error > 0):
        raise ValueError(f"max_logit_error={max_logit_error!r} must be a positive fraction (e.g. 0.1)")
    base_t = getattr(baseline_timing, f"{phase}_s")
    trials, models = [], {}
    for prec, label, rank in candidates(rec, top_k):
        trial = Trial(prec, label, rank)
        trials.append(trial)
        try:
            check_supported(get_precision(prec), info)
            q = copy.deepcopy(model)
            report = apply_quantization(q, prec, info)
            if setup_cache is not None:
                setup_cache(q)
            t = measure(q, tokens, rep_ms)
        except QuantizationUnsupported as e:
            trial.status, trial.reason = "unsupported", str(e)
            continue
        except (RuntimeError, ValueError) as e:  # a backend refusing this model's shapes
            trial.status, trial.reason = "failed", f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
            continue
        trial.decode_s, trial.prefill_s = t.decode_s, t.prefill_s
        trial.speedup = base_t / getattr(t, f"{phase}_s")
        trial.logits_rel_error = accuracy(q, reference, tokens)["logits_rel_error"]
        models[prec] = (q, t, report)
    ok = [t for t in trials if t.status == "measured" and t.logits_rel_error <= max_logit_error]
    best = max(ok, key=lambda t: t.speedup) if ok else None
    measured_pick = best.precision if best and best.speedup > 1 else None
    roofline_pick = FROM_RECOMMENDATION.get(rec.precision)
    return AutoQuant(phase, max_logit_error, roofline_pick, measured_pick,
                     explain(roofline_pick, measured_pick, trials, max_logit_error, phase), trials), models


def explain(roofline_pick, measured_pick, trials, max_err, phase) -> str:
    seen = "; ".join(
        f"{t.precision} {t.speedup:.2f}x (logits {t.logits_rel_error:.1%})" if t.status == "measured"
        else f"{t.precision} {t.status}" for t in trials)
    if measured_pick is None:
        return (f"no candidate beat the unquantized model on {phase} within {max_err:.0%} logit error ({seen}): "
                "keep it unquantized")
    if measured_pick == roofline_pick:
        return f"measurement agrees with the roofline: {measured_pick} is fastest on {phase} ({seen})"
    rp = next((t for t in trials if t.precision == roofline_pick), None)
    if roofline_pick is None:
        return (f"the roofline recommends no quantization, but measured on this model {measured_pick} is faster "
                f"within budget ({seen})")
    if rp is None:
        lost = "it was not among the candidates measured"
    elif rp.status != "measured":
        lost = f"it {rp.status}: {rp.reason[:120]}"
    elif rp.logits_rel_error > max_err:
        lost = f"its logits moved {rp.logits_rel_error:.1%}, over the {max_err:.0%} budget"
    else:
        lost = f"it measured {rp.speedup:.2f}x here, the path does not reach its roof on this device"
    return (f"the roofline picks {roofline_pick}, but {lost}; measured fastest within budget: {measured_pick} "
            f"({seen})")
