"""Which formats to run a whole model in: the fastest that fits, per layer kind where that pays.

1. Candidates are ``recommend.CANDIDATES`` (the paths real libraries ship) and the unquantized
   baseline; a checkpoint that ships its experts quantized (gpt-oss: MXFP4) adds those experts as
   published (weight-only beside 16-bit activations), and its baseline keeps them so.
2. A dense model takes one choice for all its linear layers. A MoE model also tries the routed experts
   and the rest (attention, shared experts) in different formats; such a mix is chosen only when it
   beats the best single choice by more than ``tie_tolerance`` (where it pays).
3. Each combination is priced with ``predict(model_step(...))`` and held against memory with
   ``memory.memory_plan``: weights, KV cache and workspace of the whole model must fit in the smaller
   of ``memory_limit_gb`` and the device's memory (not one GEMM's weights, which let a 70B model
   through a 24 GB limit). A path the hardware cannot run (``UnsupportedPathError``) is never chosen.
4. The fastest that fits wins. Ties (within ``tie_tolerance``) go to experts kept as published, then
   to one format for the whole model, then to the more accurate formats (``recommend.accuracy_rank``,
   weighted by the parameters each format holds): more bits per weight value, then wider activations at
   equal weight bits (W4A16 over W4A4), then finer block scales, then floats. The reason names the
   fastest option and the rule that set the choice above it.
5. The LM head follows ``lm_head`` (default: the weight format, as ``roofline_quantize/`` does); the KV cache is
   in ``kv`` (default: the residual stream's format); neither is searched.
6. Tokens/s: decode produces ``batch`` tokens per step, prefill ``batch * context``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .formats import get_format
from .hardware import get_hardware
from .memory import MemoryPlan, capacity, memory_plan
from .models import DEFAULT_CONTEXT, ModelConfig, get_model_config, model_step, step_formats, tokens_per_step
from .predict import BYTES_PER_GB, CompositePrediction, UnsupportedPathError, precision_label, predict
from .recommend import CANDIDATES, Candidate, accuracy_rank, tie_rule


@dataclass(frozen=True)
class Choice:
    linear: Candidate  # attention projections, dense FFN, shared experts
    experts: Candidate | None = None  # routed experts (None: a dense model)

    def formats(self, baseline: str) -> dict:
        kw = {"weight": self.linear.weight, "act": self.linear.act or baseline}
        if self.experts is not None:
            kw.update(expert_weight=self.experts.weight, expert_act=self.experts.act or baseline)
        return kw

    def refusal(self, baseline: str) -> str | None:
        """Why a part's path cannot take the baseline's activations (``Candidate.refusal``), or None."""
        return self.linear.refusal(baseline) or (self.experts.refusal(baseline) if self.experts else None)

    def label(self, baseline: str) -> str:
        kw = {k: get_format(v).name for k, v in self.formats(baseline).items()}
        lin = precision_label(kw["weight"], kw["act"])
        if self.experts is None or self.experts == self.linear:
            return lin
        return f"{lin} + experts {precision_label(kw['expert_weight'], kw['expert_act'])}"


@dataclass(frozen=True)
class Priced:
    choice: Choice
    label: str
    prediction: CompositePrediction | None  # None: cannot run on this hardware
    memory: MemoryPlan
    note: str = ""

    @property
    def time_s(self):
        return None if self.prediction is None else self.prediction.time_s


@dataclass(frozen=True)
class ModelRecommendation:
    model: str
    hardware: str
    phase: str
    batch: int
    context: int
    label: str
    method: str
    reason: str
    tokens_per_s: float
    predicted_speedup: float | None  # None: the baseline cannot run here
    chosen: Priced
    baseline: Priced
    ranking: tuple  # Priced for every combination considered, fastest runnable first

    def to_dict(self) -> dict:
        def row(p: Priced):
            return {"precision": p.label, "time_s": p.time_s, "tokens_per_s": None if p.time_s is None else
                    tokens_per_step(self.phase, self.batch, self.context) / p.time_s,
                    "total_gb": p.memory.total_bytes / BYTES_PER_GB, "fits": p.memory.fits, "note": p.note}
        return {"model": self.model, "hardware": self.hardware, "phase": self.phase, "batch": self.batch,
                "context": self.context, "precision": self.label, "method": self.method, "reason": self.reason,
                "tokens_per_s": self.tokens_per_s, "predicted_speedup": self.predicted_speedup,
                "prediction": self.chosen.prediction.to_dict(), "memory": self.chosen.memory.to_dict(),
                "baseline": row(self.baseline), "ranking": [row(p) for p in self.ranking]}


def choices(cfg: ModelConfig, baseline: str, candidates=CANDIDATES) -> tuple[Choice, list[Choice]]:
    """(the baseline, every combination to price) for this model."""
    base = Candidate(baseline, baseline, f"{baseline} baseline (no quantization)")
    linear = [base, *candidates]
    if not cfg.is_moe:
        return Choice(base), [Choice(c) for c in linear]
    experts = list(linear)
    published = base
    if cfg.expert_format:
        published = Candidate(cfg.expert_format, None, f"{cfg.expert_format} experts as published, weight-only")
        experts.append(published)
    combos = [Choice(lin, exp) for lin in linear for exp in experts]
    return Choice(base, published), combos


def _price(cfg, hw, phase, batch, context, choice: Choice, baseline, lm_head, kv, peaks, limit) -> Priced:
    kw = dict(choice.formats(baseline), kv=kv, lm_head=lm_head)
    plan = memory_plan(cfg, phase, batch, context, hw, limit, formats=step_formats(cfg, **kw), find_limits=False)
    why = choice.refusal(baseline)
    if why:
        return Priced(choice, choice.label(baseline), None, plan, why)
    try:
        pred = predict(model_step(cfg, phase, batch, context, **kw), hw, peaks)
    except UnsupportedPathError as e:
        return Priced(choice, choice.label(baseline), None, plan, f"cannot run: {e}")
    note = "" if plan.fits is not False else (f"needs {plan.total_bytes / BYTES_PER_GB:.3g} GB > "
                                              f"{plan.capacity_gb:.3g} GB ({plan.capacity_source})")
    return Priced(choice, choice.label(baseline), pred, plan, note)


def accuracy(cfg: ModelConfig, c: Choice, baseline: str) -> tuple:
    """``recommend.accuracy_rank`` of a whole-model choice: each part weighted by the parameters its formats hold
    (the floats part: all weights float). Higher is more accurate."""
    n, kw = cfg.param_counts(), c.formats(baseline)
    kinds = [(kw["weight"], kw["act"], n["attention"] + n["ffn"] + n["shared_experts"])]
    if c.experts is not None:
        kinds.append((kw["expert_weight"], kw["expert_act"], n["experts"]))
    total = sum(params for *_, params in kinds) or 1
    ranks = [(accuracy_rank(w, a), params) for w, a, params in kinds]
    return tuple(sum(r[i] * params for r, params in ranks) / total for i in range(3)) + (
        all(r[3] for r, _ in ranks),)


def _rank(p: Priced, cfg: ModelConfig, published: Candidate | None, baseline: str):
    """Tie-break order (higher first): experts as published, one format, then the more accurate formats."""
    c = p.choice
    return (published is not None and c.experts == published, _single(c), *accuracy(cfg, c, baseline))


def _single(c: Choice) -> bool:
    return c.experts in (None, c.linear)


def recommend_model(model, hardware, phase="decode", batch=1, context=DEFAULT_CONTEXT, memory_limit_gb=None,
                    baseline="bf16", lm_head=None, kv=None, peaks="datasheet", tie_tolerance=0.02,
                    candidates=CANDIDATES) -> ModelRecommendation:
    cfg, hw = get_model_config(model), get_hardware(hardware)
    if not get_format(baseline).is_16bit_or_wider_float:
        raise ValueError(f"baseline {baseline!r} must be a 16/32-bit float format (fp16, bf16, fp32)")
    if not 0 <= tie_tolerance < 1:
        raise ValueError(f"tie_tolerance={tie_tolerance!r} must be in [0, 1)")
    baseline = get_format(baseline).name
    tokens = tokens_per_step(phase, batch, context)
    base_choice, combos = choices(cfg, baseline, candidates)
    priced = [_price(cfg, hw, phase, batch, context, c, baseline, lm_head, kv, peaks, memory_limit_gb)
              for c in combos]
    base = next((p for p in priced if p.choice == base_choice), None) or _price(
        cfg, hw, phase, batch, context, base_choice, baseline, lm_head, kv, peaks, memory_limit_gb)
    runnable = sorted((p for p in priced if p.prediction is not None), key=lambda p: p.time_s)
    if not runnable:
        raise ValueError(f"no candidate runs on {hw.key}: " + "; ".join(p.note for p in priced[:3]))
    fitting = [p for p in runnable if p.memory.fits is not False]
    if not fitting:
        small = min(runnable, key=lambda p: p.memory.total_bytes)
        m, gb = small.memory, lambda b: f"{b / BYTES_PER_GB:.3g}"  # noqa: E731
        raise ValueError(f"nothing fits in {m.capacity_gb:.3g} GB ({m.capacity_source}): the smallest, {small.label}, "
                         f"needs {gb(m.total_bytes)} GB (weights {gb(m.total_weights_bytes)}, KV cache "
                         f"{gb(m.kv_cache_bytes)}, workspace {gb(m.workspace_bytes)}) for {cfg.name} {phase} at "
                         f"batch {batch}, context {context}")
    published = base_choice.experts if cfg.expert_format else None
    best = fitting[0].time_s
    # a mix of formats wins only by being more than tie_tolerance faster than every single format
    tied = [p for p in fitting if p.time_s <= best * (1 + tie_tolerance)]
    chosen = max(tied, key=lambda p: _rank(p, cfg, published, baseline))
    reason = _reason(cfg, hw, phase, batch, context, chosen, base, runnable, fitting, published, tie_tolerance,
                     baseline)
    method = chosen.choice.linear.method + ("" if _single(chosen.choice) else
                                            f"; experts: {chosen.choice.experts.method}")
    ranking = tuple(runnable) + tuple(p for p in priced if p.prediction is None)
    return ModelRecommendation(cfg.name, hw.key, phase, batch, context, chosen.label, method, reason,
                               tokens / chosen.time_s, base.time_s / chosen.time_s if base.time_s else None,
                               chosen, base, ranking)


def _reason(cfg, hw, phase, batch, context, chosen: Priced, base: Priced, runnable, fitting, published, tol,
            baseline="bf16") -> str:
    """What decided, in order: the roof the step faces, memory, the per-kind split, the baseline."""
    pred, parts = chosen.prediction, []
    shape = f"{phase} of {cfg.name} at batch {batch}, context {context}"
    if pred.bound == "memory":
        weights = sum(p.bytes * m for p, m in pred.flat() if p.op in ("gemm", "grouped_gemm")
                      and p.name != "router") / pred.bytes
        parts.append(f"{shape} is memory-bound on {hw.key} ({pred.bytes / BYTES_PER_GB:.3g} GB moved per step, "
                     f"{weights:.0%} of it weights): the fewest bytes that run win")
    else:
        d = pred.dominant
        parts.append(f"{shape} is compute-bound on {hw.key}: the highest-throughput path wins "
                     f"({d.compute_class} peak {d.peak_tflops:g} TFLOP/s)")
    if runnable[0] not in fitting:
        r = runnable[0]
        parts.append(f"memory decided: {r.label} would be {chosen.time_s / r.time_s - 1:.0%} faster but {r.note}")
    others = lambda keep: [p for p in fitting if keep(p.choice)]  # noqa: E731
    if published is not None and chosen.choice.experts == published:
        alt = others(lambda c: c.experts != published)
        parts.append(f"experts kept as published ({published.method})" + (
            f": the fastest choice that changes them ({alt[0].label}) gains only "
            f"{chosen.time_s / alt[0].time_s - 1:.1%}, within the {tol:.0%} tie tolerance"
            if alt and alt[0].time_s < chosen.time_s else ""))
    elif not _single(chosen.choice):
        single = others(_single)
        if single:
            parts.append(f"per layer kind pays: {single[0].time_s / chosen.time_s - 1:.0%} faster than the best "
                         f"single format ({single[0].label})")
    elif cfg.is_moe:
        mixed = others(lambda c: not _single(c))
        if mixed and mixed[0].time_s < chosen.time_s:
            parts.append(f"one format for the whole model: the best per-kind mix ({mixed[0].label}) gains only "
                         f"{chosen.time_s / mixed[0].time_s - 1:.1%}, within the {tol:.0%} tie tolerance")
    # the accuracy rule: the fastest tied option it beat among those the rules above rank level with the choice
    flags = lambda c: (published is not None and c.experts == published, _single(c))  # noqa: E731
    peers = [p for p in fitting if p is not chosen and p.time_s < chosen.time_s and flags(p.choice) == flags(
        chosen.choice) and p.time_s >= fitting[0].time_s and chosen.time_s <= fitting[0].time_s * (1 + tol)]
    if peers:
        peer = min(peers, key=lambda p: p.time_s)
        rule = tie_rule(accuracy(cfg, chosen.choice, baseline), accuracy(cfg, peer.choice, baseline))
        tokens = tokens_per_step(phase, batch, context)
        parts.append(f"ties with {peer.label} ({tokens / peer.time_s:.4g} vs {tokens / chosen.time_s:.4g} tokens/s, "
                     f"within the {tol:.0%} tie tolerance): the tie goes to the more accurate formats, by {rule}")
    if chosen is base:
        parts.append(f"no runnable quantization beats {base.label} by more than {tol:.0%}")
    return "; ".join(parts)
