"""recommend -> quantize -> measure -> compare, for the built-in decoder or a local Hugging Face model.

1. Recommend with ``roofline.recommend_quantization`` on the model's largest projection, on the
   hardware entry in use (calibrated roof where there is one); map it to a precision this device runs.
   With ``precision="auto"`` the recommender's top candidates are measured on the model itself and the
   fastest within the logit-error budget is applied (``roofline_quantize.autoquant``).
2. Quantize a copy with ``apply_quantization``; the unquantized copy stays as the baseline.
3. Measure decode (one token against a KV cache of ``prompt_len``) and prefill latency before and
   after with ``roofline_kernels.timer`` (hot: the weights exceed the last-level cache, so they stream from DRAM
   either way), tokens/s and "bandwidth achieved" = parameter bytes x tokens/s (gpt-fast's figure).
4. Predict both with ``roofline.model_step`` for the same dims and formats; report the measured next
   to the predicted speedup.
5. Accuracy beside speed: relative error of the logits against an FP32 copy and top-1 agreement on
   fixed tokens (plus perplexity on a built-in text for a real model), so fast-but-broken shows.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import asdict, dataclass, field

import torch

from roofline import model_step, predict, recommend_quantization
from roofline.predict import UnsupportedPathError

from . import autoquant
from .apply import QuantReport, apply_quantization, param_bytes
from .configs import FROM_RECOMMENDATION, QuantizationUnsupported, check_supported, get_precision
from .hf import load_local_model  # noqa: F401  (re-exported for the CLI)
from .model import TinyConfig, build_tiny

PERPLEXITY_TEXT = ("The roofline model bounds the speed of a kernel by the memory bandwidth and the peak compute "
                   "of the machine it runs on. A decode step of a language model reads every weight once, so "
                   "its speed is set by the bytes it moves, and quantization makes those bytes fewer.")


@dataclass
class PhaseTiming:
    decode_s: float
    prefill_s: float
    tokens_per_s: float
    bandwidth_achieved_gbs: float
    param_bytes: int
    device: str = "cpu"               # where the model ran and was timed (the device under test)
    telemetry: dict = field(default_factory=dict)  # the decode steps' region: clocks, throttling, energy
    mode: str = "hot"                 # a whole model step, its weights in whatever cache holds them (not cold)
    spread: dict = field(default_factory=dict)     # per phase: p20_s, p80_s, count (a median alone hid 1.1-1.9x)
    contention: list = field(default_factory=list)  # what the host showed just before timing (busy CPU, throttle)


@dataclass
class PipelineReport:
    model: str
    hardware: str
    device: str
    phase: str
    recommendation: dict
    precision: str
    quantization: dict
    before: PhaseTiming
    after: PhaseTiming
    predicted: dict
    measured_speedup: dict
    accuracy: dict
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _time(fn, rep_ms, device="cpu", region=None):
    from roofline_kernels.timer import bench
    return bench(fn, device=device, mode="hot", warmup_ms=20, rep_ms=rep_ms, min_reps=5, region=region)


def _spread(t) -> dict:
    return {"p20_s": t.p20_s, "p80_s": t.p80_s, "count": t.count, "converged": t.converged}


def model_device(model) -> str:
    """Where a model's weights are ("cpu", "cuda"): the pipeline times it there."""
    p = next(iter(model.parameters()), None)
    return "cpu" if p is None else p.device.type


def measure_model(model, tokens: torch.Tensor, rep_ms: float = 200.0, info=None) -> PhaseTiming:
    """Prefill and decode latency of ``model`` on the device its weights are on (tokens moved there), with the
    device's telemetry over the timed decode steps when ``info`` (the device under test) is given."""
    device = info.torch_device if info is not None else model_device(model)
    tokens = tokens.to(device)
    prompt_len = tokens.shape[1]
    contention = []
    if info is not None:  # as measure_kernel does: a number timed beside a busy neighbour says so
        from roofline_kernels import telemetry
        contention = list(telemetry.snapshot(info.kind, busy_interval_s=0.05, info=info).get("contention", []))
    pre = _time(lambda: model(tokens, 0), rep_ms, device)
    model(tokens, 0)  # a filled cache for the decode step
    nxt = tokens[:, -1:]
    region = None
    if info is not None:
        from roofline_kernels.region import RegionMonitor
        region = RegionMonitor(info)
    dec = _time(lambda: model(nxt, prompt_len), rep_ms, device, region)
    nbytes = param_bytes(model)
    tps = tokens.shape[0] / dec.median_s
    telem = region.result(dec.count) if region is not None else {}
    return PhaseTiming(dec.median_s, pre.median_s, tps, nbytes * tps / 1e9, nbytes, device, telem, "hot",
                       {"decode": _spread(dec), "prefill": _spread(pre)},
                       contention + list(telem.get("flags", [])))


def accuracy(model, reference, tokens) -> dict:
    out = model(tokens.to(model_device(model)), 0, last_only=False).cpu()
    ref = reference(tokens.to(model_device(reference)), 0, last_only=False).cpu()
    return {"logits_rel_error": float((out - ref).norm() / ref.norm()),
            "top1_agreement": float((out.argmax(-1) == ref.argmax(-1)).float().mean()),
            "reference": "fp32 copy of the same weights, same tokens"}


def predicted_times(cfg, hw, peaks, batch, prompt_len, weight, act) -> dict:
    """The theory's step time for the same dims; the residual stream stays bf16, as in the model."""
    out = {}
    for phase, seq in (("decode", prompt_len + 1), ("prefill", prompt_len)):
        try:
            step = model_step(cfg, phase, batch, seq, weight=weight, act=act, out="bf16")
            out[phase] = predict(step, hw, peaks).time_s
        except (UnsupportedPathError, ValueError) as e:  # no math path; or a context past the model's limit (a
            # --prompt-len at max_position_embeddings prices its decode at one more token), said, not a crash after
            # both measurements
            out[phase] = None
            out[f"{phase}_note"] = str(e)
    return out


def choose_precision(precision: str, hw, cfg, phase, batch, prompt_len, peaks, with_rec: bool = False):
    from roofline.efficiency import expected_time, model_of
    m = batch if phase == "decode" else batch * prompt_len
    # with this device's efficiency profile the candidates are ranked by expected time: a path the sweep measured
    # slow here (a software int8 weight-only GEMV on a CPU) is not recommended for its bytes
    model = model_of(hw.calibration) if peaks == "calibrated" else None
    rec = recommend_quantization(hw, m, cfg.intermediate, cfg.hidden, phase, baseline="bf16", peaks=peaks,
                                 expected=(lambda p: expected_time(p, hw, model)) if model is not None else None)
    rec_d = {"precision": rec.precision, "method": rec.method, "reason": rec.reason,
             "predicted_speedup": rec.predicted_speedup, "gemm": [m, cfg.intermediate, cfg.hidden],
             "decided_by": rec.decided_by, "ranked_by": rec.ranked_by}
    if precision != "auto":
        chosen = get_precision(precision).name
    else:
        chosen = FROM_RECOMMENDATION.get(rec.precision)
    return (chosen, rec_d, rec) if with_rec else (chosen, rec_d)


def run_pipeline(model=None, hardware=None, phase: str = "decode", precision: str = "auto", prompt_len: int = 64,
                 batch: int = 1, device_info=None, calibration=None, rep_ms: float = 200.0,
                 tiny_config: TinyConfig = TinyConfig(), max_logit_error: float = autoquant.DEFAULT_MAX_LOGIT_ERROR,
                 top_k: int = autoquant.DEFAULT_TOP_K, measure_candidates: bool = True) -> PipelineReport:
    """``precision="auto"``: the roofline ranks, the top ``top_k`` are measured on this model and the fastest within
    ``max_logit_error`` is applied (``measure_candidates=False``: the roofline's pick, unmeasured)."""
    from roofline_kernels.device import detect
    from roofline_kernels.measure import hardware_for
    info = device_info or detect(hardware)
    if calibration is None and hardware_for(info).bandwidth is None:  # a CPU: its roof is measured, not printed
        from roofline_kernels.calibrate import load_or_calibrate
        calibration = load_or_calibrate(info, quick=True)
    hw = hardware_for(info, calibration)
    peaks = "calibrated" if calibration is not None else "datasheet"
    device = info.torch_device  # model, inputs, timing and telemetry on the device under test, not the host's CPU
    if model is None:
        model, name = build_tiny(tiny_config), f"tiny ({tiny_config})"
    else:
        name = type(model).__name__
    model = model.to(device)
    model.setup_cache(batch, torch.bfloat16)  # the KV cache where the weights are
    reference = copy.deepcopy(model).float()
    reference.setup_cache(batch, torch.float32)
    cfg = model.config.to_roofline()
    tokens = torch.randint(0, cfg.vocab, (batch, prompt_len), generator=torch.Generator().manual_seed(1)).to(device)
    measure = functools.partial(measure_model, info=info)

    chosen, rec, rec_obj = choose_precision(precision, hw, cfg, phase, batch, prompt_len, peaks, with_rec=True)
    auto = None
    if precision == "auto" and measure_candidates:
        before = measure(model, tokens, rep_ms)
        auto, trials = autoquant.run(model, reference, tokens, rec_obj, info, phase, before, measure, accuracy,
                                     rep_ms / 2, max_logit_error, top_k,
                                     setup_cache=lambda q: q.setup_cache(batch, torch.bfloat16))
        rec["autoquant"] = auto.to_dict()
        if auto.measured_pick is None:
            raise QuantizationUnsupported("auto", info.hardware_key, auto.why, "pass --precision to force one")
        chosen = auto.measured_pick
        quantized, _, qrep = trials[chosen]
        after = measure(quantized, tokens, rep_ms)  # the same budget as the baseline
    else:
        if chosen is None:
            raise QuantizationUnsupported(rec["precision"], info.hardware_key, "the roofline recommends no "
                                          f"quantization for this shape ({rec['reason']})", "pass --precision to force one")
        check_supported(get_precision(chosen), info)  # before spending time measuring the baseline
        before = measure(model, tokens, rep_ms)
        quantized = copy.deepcopy(model)
        qrep: QuantReport = apply_quantization(quantized, chosen, info)
        quantized.setup_cache(batch, torch.bfloat16)
        after = measure(quantized, tokens, rep_ms)

    prec = get_precision(chosen)
    pred_before = predicted_times(cfg, hw, peaks, batch, prompt_len, "bf16", "bf16")
    pred_after = predicted_times(cfg, hw, peaks, batch, prompt_len, prec.weight_format, prec.act_format)
    predicted = {"peaks": peaks, "before": pred_before, "after": pred_after, "speedup": {
        ph: (pred_before[ph] / pred_after[ph] if pred_before.get(ph) and pred_after.get(ph) else None)
        for ph in ("decode", "prefill")}}
    measured = {"decode": before.decode_s / after.decode_s, "prefill": before.prefill_s / after.prefill_s}
    notes = [f"autoquant: {auto.why}"] if auto is not None and auto.measured_pick != auto.roofline_pick else []
    for ph in ("decode", "prefill"):
        p = predicted["speedup"][ph]
        if p and measured[ph] < 0.5 * p:
            notes.append(f"{ph}: measured speedup {measured[ph]:.2f}x is under half the predicted {p:.2f}x: the path "
                         f"applied ({qrep.config.split('(')[0]}) does not reach the roof on {info.hardware_key}; "
                         f"`pytest -m {hw.family}` shows how close the raw kernels get")
    acc = accuracy(quantized, reference, tokens)
    if hasattr(quantized, "perplexity"):  # a real model: perplexity on a built-in text, before and after
        acc["perplexity_before"] = model.perplexity(PERPLEXITY_TEXT)
        acc["perplexity"] = quantized.perplexity(PERPLEXITY_TEXT)
    if acc["logits_rel_error"] > 0.2:
        notes.append(f"accuracy: logits move {acc['logits_rel_error']:.0%} from FP32 (random weights amplify "
                     "quantization noise; judge a real model by perplexity)")
    return PipelineReport(model=name, hardware=hw.key, device=info.name, phase=phase, recommendation=rec,
                          precision=chosen, quantization=qrep.to_dict(), before=before, after=after,
                          predicted=predicted, measured_speedup=measured, accuracy=acc, notes=notes)
