"""Which power mode, precision and batch size to run a model in, for a latency, throughput or energy target.

1. Candidates: every power mode of the board (``roofline.clocks``; other hardware has one, as it is) x
   every precision ``recommend_model`` prices (``plan.choices``: the unquantized baseline and the paths
   real libraries ship) x batch sizes. A precision the hardware cannot run is never priced; one whose
   weights + KV cache + workspace do not fit memory (``memory.memory_plan``) is excluded, said so.
2. Each is priced with ``predict(model_step(...))`` on the mode-scaled entry and ``energy.predict_energy``
   (an energy profile's calibrated costs for the mode where given, else the sourced defaults).
3. A mode holds the board to its nvpmodel budget (``clocks.power_budget_w``): where the predicted power at
   the mode's clocks exceeds it, the board clocks down until it fits, so the option is priced at the clocks
   its budget allows (``throttle``: the step stretches until dynamic energy / time + static power = the
   budget; dynamic energy per step is kept, which over-prices it, since lower clocks lower the voltage) and
   its bound is ``power``. A mode whose static power alone exceeds its budget is excluded, said so.
4. ``max_power_w`` admits an option whose predicted power (after 3.) is at most W. A mode whose budget is
   at most W is held under it by its caps (3.). A mode with no budget (MAXN), or one whose budget exceeds
   W, has nothing holding it to W but the prediction: it is admitted only when the prediction stays under
   W across the stated uncertainty of the costs (the top of ``EnergyPrediction.power_range_w`` where the
   DRAM figure is an estimate), and the reason says it rests on a prediction. ``min_tokens_per_s`` drops
   anything slower.
5. Targets: ``latency`` minimises the step time (per-token latency in decode, time to first token in
   prefill), ``throughput`` maximises tokens/s, ``energy`` maximises tokens/J. Options within
   ``tie_tolerance`` of the best tie; ties go to the lower power budget (the tighter envelope for the
   same result), then the smaller batch (less memory, less waiting), then the more accurate formats
   (``plan.accuracy``: more bits per weight value, then wider activations), then the other measure
   (tokens/J, or tokens/s for the energy target).
6. The reason sets the choice against the best alternative differing in one dimension (another mode,
   another precision, another batch), each with what it loses on, and lists what was excluded and why.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .clocks import POWER_MODES, apply_power_mode, find_power_mode, power_budget_w
from .energy import EnergyPrediction, energy_costs, predict_energy
from .formats import get_format
from .hardware import get_hardware
from .memory import BYTES_PER_GB, memory_plan
from .models import DEFAULT_CONTEXT, PHASES, get_model_config, model_step, step_formats
from .plan import accuracy, choices, tokens_per_step
from .predict import UnsupportedPathError, predict
from .recommend import CANDIDATES

TARGETS = ("latency", "throughput", "energy")
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64)


@dataclass(frozen=True)
class Option:
    mode: str | None
    budget_w: float | None
    precision: str
    batch: int
    weight_bits: float
    time_s: float  # one step: per-token latency in decode, time to first token in prefill
    tokens_per_s: float
    memory_gb: float
    bound: str
    bandwidth_gbs: float
    energy: EnergyPrediction
    excluded: str = ""  # why it may not be chosen; "" when it may
    accuracy: tuple = ()  # plan.accuracy of its formats: higher is more accurate
    throttle: float = 1.0  # how much longer a step takes at the clocks the mode's budget allows (1: none)

    @property
    def power_w(self) -> float:
        return self.energy.power_w

    @property
    def tokens_per_j(self) -> float:
        return self.energy.tokens_per_j

    @property
    def label(self) -> str:
        return f"{self.mode + ' / ' if self.mode else ''}{self.precision} / batch {self.batch}"

    def to_dict(self) -> dict:
        return {"mode": self.mode, "budget_w": self.budget_w, "precision": self.precision, "batch": self.batch,
                "time_s": self.time_s, "throttle": self.throttle, "tokens_per_s": self.tokens_per_s,
                "power_w": self.power_w, "power_range_w": self.energy.power_range_w,
                "tokens_per_j": self.tokens_per_j, "energy_j": self.energy.energy_j, "memory_gb": self.memory_gb,
                "bound": self.bound, "excluded": self.excluded, "energy": self.energy.to_dict()}


@dataclass(frozen=True)
class Schedule:
    model: str
    hardware: str
    target: str
    phase: str
    context: int
    max_power_w: float | None
    min_tokens_per_s: float | None
    choice: Option
    runners_up: tuple
    excluded: tuple  # one line per kind of exclusion
    reason: str
    basis: str
    options: tuple = field(default=(), repr=False)  # every option priced

    def to_dict(self) -> dict:
        return {"model": self.model, "hardware": self.hardware, "target": self.target, "phase": self.phase,
                "context": self.context, "max_power_w": self.max_power_w, "min_tokens_per_s": self.min_tokens_per_s,
                "choice": self.choice.to_dict(), "runners_up": [o.to_dict() for o in self.runners_up],
                "excluded": list(self.excluded), "reason": self.reason, "energy_basis": self.basis}


def _objective(target: str, o: Option) -> float:
    """The target's measure, larger is better (ties within the tolerance are decided by ``_best``)."""
    return {"latency": -o.time_s, "throughput": o.tokens_per_s, "energy": o.tokens_per_j}[target]


def _second(target: str, o: Option) -> float:
    return o.tokens_per_s if target == "energy" else o.tokens_per_j


def _best(target: str, options: list[Option], tol: float) -> Option:
    top = max(_objective(target, o) for o in options)
    tied = [o for o in options if _objective(target, o) >= top - abs(top) * tol]
    return max(tied, key=lambda o: (-(o.budget_w if o.budget_w is not None else float("inf")), -o.batch,
                                    o.accuracy, _second(target, o)))


def _modes(hw, modes) -> list:
    known = POWER_MODES.get(hw.key)
    if not known:
        if modes:
            raise ValueError(f"{hw.key} has no power modes; boards with modes: {', '.join(POWER_MODES)}")
        return [None]
    return list(modes) if modes else list(known)


def throttled(pred, costs, tokens, budget_w):
    """(energy, throttle, why excluded): the energy of ``pred`` in a mode whose budget is ``budget_w``, priced at the
    clocks that budget allows where the predicted power exceeds it (see 3. above)."""
    energy = predict_energy(pred, costs, tokens, budget_w=budget_w)
    if not energy.over_budget:
        return energy, 1.0, ""
    static_w = costs.static_w.value if costs.static_w is not None else 0.0
    if static_w >= budget_w:
        return energy, 1.0, f"static power {static_w:g} W alone exceeds the mode's {budget_w:g} W budget"
    throttle = (energy.dram_j + energy.compute_j) / ((budget_w - static_w) * pred.time_s)
    return predict_energy(pred, costs, tokens, time_s=pred.time_s * throttle, budget_w=budget_w), throttle, ""


def price_options(model, hardware, phase="decode", context=DEFAULT_CONTEXT, batches=DEFAULT_BATCHES, modes=None,
                  baseline="fp16", memory_limit_gb=None, energy_profile=None, peaks="datasheet",
                  candidates=CANDIDATES) -> list[Option]:
    """Every (mode, precision, batch) that runs on the hardware, priced; ``excluded`` says which may not be chosen."""
    cfg, hw = get_model_config(model), get_hardware(hardware)
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
    if not batches or any(int(b) != b or b < 1 for b in batches):
        raise ValueError(f"batches={batches!r} must be positive integers")
    if not get_format(baseline).is_16bit_or_wider_float:
        raise ValueError(f"baseline {baseline!r} must be a 16/32-bit float format (fp16, bf16, fp32)")
    base = get_format(baseline).name
    _, combos = choices(cfg, base, candidates)
    combos = [c for c in combos if not c.refusal(base)]  # a path that cannot take these activations is no option
    out = []
    for mode in _modes(hw, modes):
        mhw = apply_power_mode(hw, mode) if mode is not None else hw
        budget = power_budget_w(hw.key, mode) if mode is not None else None
        name = find_power_mode(hw.key, mode)[0] if mode is not None else None
        costs = energy_costs(mhw, energy_profile)
        for c in combos:
            kw = c.formats(base)
            label = c.label(base)
            for b in sorted(set(batches)):
                try:
                    pred = predict(model_step(cfg, phase, b, context, **kw), mhw, peaks)
                except UnsupportedPathError:
                    break  # no path at any batch
                plan = memory_plan(cfg, phase, b, context, mhw, memory_limit_gb,
                                   formats=step_formats(cfg, **kw), find_limits=False)
                tokens = tokens_per_step(phase, b, context)
                if budget is not None:
                    energy, throttle, hot = throttled(pred, costs, tokens, budget.value)
                else:
                    energy, throttle, hot = predict_energy(pred, costs, tokens), 1.0, ""
                why = "" if plan.fits is not False else (f"needs {plan.total_bytes / BYTES_PER_GB:.3g} GB > "
                                                         f"{plan.capacity_gb:.3g} GB")
                t = pred.time_s * throttle
                out.append(Option(name, budget.value if budget else None, label, b,
                                  get_format(kw["weight"]).bits_per_element, t, tokens / t,
                                  plan.total_bytes / BYTES_PER_GB, "power" if throttle > 1 else pred.bound,
                                  mhw.bandwidth_gbs(peaks), energy, why or hot, accuracy(cfg, c, base), throttle))
    return out


def _admit(o: Option, max_power_w, min_tokens_per_s) -> str:
    if o.excluded:
        return o.excluded
    if max_power_w is not None:
        capped = o.budget_w is not None and o.budget_w <= max_power_w  # its caps hold it there (3.)
        high = o.power_w if capped or not o.energy.power_range_w else max(o.power_w, o.energy.power_range_w[1])
        if high > max_power_w * (1 + 1e-9):
            return (f"predicted {o.power_w:.3g} W" + (f" (up to {high:.3g} W)" if high > o.power_w else "") +
                    f" > {max_power_w:g} W")
    if min_tokens_per_s is not None and o.tokens_per_s < min_tokens_per_s:
        return f"{o.tokens_per_s:.3g} tokens/s < {min_tokens_per_s:g}"
    return ""


def schedule(model, hardware, target="energy", max_power_w=None, min_tokens_per_s=None, phase="decode",
             context=DEFAULT_CONTEXT, batches=DEFAULT_BATCHES, modes=None, baseline="fp16", memory_limit_gb=None,
             energy_profile=None, peaks="datasheet", tie_tolerance=0.02, runners_up=3) -> Schedule:
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; allowed: {', '.join(TARGETS)}")
    for name, v in (("max_power_w", max_power_w), ("min_tokens_per_s", min_tokens_per_s)):
        if v is not None and not (0 < v < float("inf")):
            raise ValueError(f"{name}={v!r} must be a positive number")
    if not 0 <= tie_tolerance < 1:
        raise ValueError(f"tie_tolerance={tie_tolerance!r} must be in [0, 1)")
    hw = get_hardware(hardware)
    priced = price_options(model, hw, phase, context, batches, modes, baseline, memory_limit_gb, energy_profile, peaks)
    if not priced:
        raise ValueError(f"no precision of {model} runs on {hw.key}")
    judged = [(o, _admit(o, max_power_w, min_tokens_per_s)) for o in priced]
    eligible = [o for o, why in judged if not why]
    excluded = _exclusions(judged, batches)
    if not eligible:
        raise ValueError(f"nothing meets the constraints on {hw.key}: " + "; ".join(excluded))
    choice = _best(target, eligible, tie_tolerance)
    rest = sorted((o for o in eligible if o is not choice), key=lambda o: _objective(target, o), reverse=True)
    reason = _reason(target, choice, eligible, tie_tolerance, max_power_w)
    e = choice.energy
    basis = e.basis + "".join(f"; {n}" for n in e.notes if not n.startswith(e.basis))
    return Schedule(get_model_config(model).name, hw.key, target, phase, context, max_power_w, min_tokens_per_s,
                    choice, tuple(rest[:runners_up]), tuple(excluded), reason, basis, tuple(priced))


def _exclusions(judged, batches) -> list[str]:
    """One line per kind of exclusion, naming what it excluded."""
    memory, hot, predicted, slow = {}, {}, {}, 0
    for o, why in judged:
        if why.startswith("needs"):
            memory[o.precision] = min(memory.get(o.precision, o.batch), o.batch)
        elif why.startswith("static power"):
            hot[o.mode] = why
        elif why.startswith("predicted"):
            top = max(o.power_w, *(o.energy.power_range_w or ()))
            lo, hi = predicted.get(o.mode, (float("inf"), 0.0))
            predicted[o.mode] = (min(lo, o.power_w), max(hi, top))
        elif why:
            slow += 1
    budgets = {o.mode: o.budget_w for o, _ in judged}
    lines = []
    if memory:
        lines.append("does not fit in memory: " + ", ".join(
            p + ("" if b == min(batches) else f" from batch {b}") for p, b in memory.items()))
    for m, why in hot.items():
        lines.append(f"{m}: {why}")
    if predicted:
        lines.append("predicted power over the limit: " + ", ".join(
            f"{m + ' ' if m else ''}({'no budget' if budgets.get(m) is None else f'budget {budgets[m]:g} W'}, "
            f"{lo:.3g} W and up" + (f", to {hi:.3g} W at the top of the cost range" if hi > lo else "") + ")"
            for m, (lo, hi) in predicted.items()))
    if slow:
        lines.append(f"{slow} options under the minimum tokens/s")
    return lines


def _measure(target: str, o: Option) -> str:
    return {"latency": f"{o.time_s * 1e3:.4g} ms/step", "throughput": f"{o.tokens_per_s:.4g} tokens/s",
            "energy": f"{o.tokens_per_j:.4g} tokens/J"}[target]


def _why_mode(c: Option, o: Option) -> str:
    if c.bound == "memory" and o.bandwidth_gbs != c.bandwidth_gbs:
        roof = f"memory-bound at {o.bandwidth_gbs:g} vs {c.bandwidth_gbs:g} GB/s"
    else:
        roof = f"{o.bound}-bound, step {o.time_s * 1e3:.4g} vs {c.time_s * 1e3:.4g} ms"
    return f"{roof}; {o.power_w:.3g} vs {c.power_w:.3g} W"


def _reason(target, c: Option, eligible, tol, max_power_w) -> str:
    head = (f"{target}: {c.label}: {c.tokens_per_s:.4g} tokens/s, {c.time_s * 1e3:.4g} ms/step, {c.power_w:.3g} W, "
            f"{c.tokens_per_j:.4g} tokens/J ({c.bound}-bound, {c.memory_gb:.3g} GB)")
    if c.throttle > 1:
        static_w = (c.energy.static_j or 0.0) / c.energy.time_s
        full = (c.power_w - static_w) * c.throttle + static_w  # the same dynamic energy in the unthrottled time
        head += (f"; at the mode's clocks it would draw {full:.3g} W, over its {c.budget_w:g} W budget: priced at "
                 f"the clocks the budget allows, {c.throttle:.3g}x slower")
    if max_power_w is not None and (c.budget_w is None or c.budget_w > max_power_w):
        head += (f"; admitted under {max_power_w:g} W on a predicted power (" +
                 (f"{'the mode has' if c.mode else 'there is'} no budget" if c.budget_w is None else
                  f"the mode's budget is {c.budget_w:g} W") + (", the top of its range included"
                                                               if c.energy.power_range_w else "") + ")")
    if c.energy.power_range_w and c.throttle == 1:
        lo, hi = c.energy.power_range_w
        capped = c.budget_w is not None and hi > c.budget_w
        head += (f"; {lo:.3g}-{min(hi, c.budget_w) if capped else hi:.3g} W over the DRAM estimate's range" +
                 (" (the mode's budget caps the top: the board would clock down)" if capped else ""))
    parts = [head]
    dims = (("mode", lambda o: o.mode != c.mode and o.precision == c.precision and o.batch == c.batch, _why_mode),
            ("precision", lambda o: o.precision != c.precision and o.mode == c.mode and o.batch == c.batch,
             lambda c_, o: f"{o.bound}-bound, {o.energy.dram_j / max(o.energy.energy_j, 1e-30):.0%} of its energy "
                           f"in DRAM"),
            ("batch", lambda o: o.batch != c.batch and o.mode == c.mode and o.precision == c.precision,
             lambda c_, o: f"{o.tokens_per_s:.4g} tokens/s, {o.time_s * 1e3:.4g} ms/step, {o.power_w:.3g} W"))
    for dim, same_else, why in dims:
        alts = [o for o in eligible if same_else(o)]
        if not alts:
            continue
        best = max(alts, key=lambda o: _objective(target, o))
        a, b = _objective(target, best), _objective(target, c)
        verdict = ("ties, lost on the tie-break" if a >= b - abs(b) * tol else
                   f"{abs(a - b) / abs(b):.0%} {'slower' if target == 'latency' else 'worse'}")
        value = {"mode": best.mode, "precision": best.precision, "batch": f"batch {best.batch}"}[dim]
        parts.append(f"best other {dim}, {value}: {_measure(target, best)}, {verdict} ({why(c, best)})")
    return "; ".join(parts)
