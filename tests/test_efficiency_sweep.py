"""The efficiency sweep's planning, the first calibration that fits it, and the model growing with use.

Timings here are synthetic (a made-up device's efficiency surface) wherever the behaviour under test is the
planning or the bookkeeping; the one real measurement (``measure`` on this host) checks the CLI's words."""
import io
import json
import math
from types import SimpleNamespace

import pytest

import roofline_kernels.efficiency as keff
from roofline import Calibration, load_calibration
from roofline.efficiency import EfficiencyModel, m_residuals, model_key, model_of
from roofline.models import MODEL_CONFIGS


def surface(m, n, k):
    """A made-up device: GEMVs stream at ~75%, efficiency dips at the ridge (M ~ 16) and recovers to 60%."""
    return 0.75 - 0.45 * math.exp(-((math.log2(m) - 4) ** 2) / 4) - 0.15 * (m > 64) + 0.02 * math.log2(n * k / 2**20)


# a full path's share on the fake clock (200 ms a measurement): its seeds, twins, GEMV seeds and M line fit in it, and
# it lies past ``LINE_MIN_S``, as a full calibration's share does on every device
FULL_S = 11.0
assert FULL_S >= keff.LINE_MIN_S


def fake_measure(calls):
    def measure(label, kwargs, shape, info, hw, est=None, **_):
        calls.append(shape)
        m, n, k = shape
        kernel = SimpleNamespace(op="gemv" if m == 1 else "gemm", precision=label,
                                 cost=SimpleNamespace(shape={"m": m, "n": n, "k": k}))
        timing = SimpleNamespace(median_s=1e-6 * m * n * k / 2**20, rel_iqr=0.01)
        return kernel, SimpleNamespace(efficiency=surface(m, n, k), memory_roof_only=False, timing=timing,
                                       predicted_time_s=timing.median_s * surface(m, n, k))
    return measure


def cost_of(shape):
    if len(shape) == 6:  # attention: batch x heads x seq_q x seq_kv x head_dim multiply-adds
        b, h, _, sq, skv, d = shape
        return 1e-9 * b * h * sq * skv * d / 4
    m, n, k = shape
    return 1e-9 * m * n * k + 1e-5 * n * k / 2**20


def test_seeds_first_cheapest_first_then_where_the_model_is_least_sure():
    model = EfficiencyModel()
    measured = set()
    seeds = []
    affordable = [s for s in keff.seed_shapes() if cost_of(s) <= keff.MAX_CALL_S]
    assert 2 < len(affordable) < len(keff.seed_shapes())  # the made-up costs leave some seeds too dear
    for _ in affordable:
        s = keff.plan_next(model, "fp32", "fp32", keff.grid_shapes(), cost_of, 1e9, measured)
        seeds.append(s)
        measured.add(s)
        model.add("gemm", "fp32", dict(zip("mnk", s)), surface(*s))
    assert sorted(seeds) == sorted(affordable) and seeds == sorted(seeds, key=cost_of)
    nxt = keff.plan_next(model, "fp32", "fp32", keff.grid_shapes(), cost_of, 1e9, measured)
    u = model.uncertainties("gemm", "fp32", [dict(zip("mnk", c)) for c in keff.grid_shapes() if c not in measured])
    assert nxt not in measured and model.uncertainty_of("gemm", "fp32", dict(zip("mnk", nxt))) > sorted(u)[len(u) // 2]


def test_an_attention_paths_prefill_seeds_come_before_its_decodes_each_cheapest_first():
    """The prefills are an attention path's dear seeds: measured while its share is fresh, not after the cheap
    decodes spent it (a quick sweep then often no longer afforded the prefill the suite's own case lies near)."""
    kw = {"op": "attention", "precision": "fp32"}
    cost = lambda s: cost_of(s) / 10  # noqa: E731  (every seed within MAX_CALL_S)
    assert all(cost(s) <= keff.MAX_CALL_S for s in keff.ATTN_SEED)
    model, measured, order = EfficiencyModel(), set(), []
    while len(order) < len(keff.ATTN_SEED):
        s = keff.plan_next(model, "attention fp32", "fp32", keff.grid_shapes(kw), cost, 1e9, measured, kw)
        order.append(s)
        measured.add(s)
        model.add("attention", "fp32", keff.shape_dict(kw, s), 0.5)
    prefill = sorted((s for s in keff.ATTN_SEED if s[3] > 1), key=cost)
    decode = sorted((s for s in keff.ATTN_SEED if s[3] == 1), key=cost)
    assert prefill and decode and order == prefill + decode, order
    assert cost(decode[0]) < cost(prefill[0])  # cost alone would have put a decode first


def test_a_shape_too_dear_for_a_sweep_or_for_what_is_left_is_not_planned():
    dear = lambda s: keff.MAX_CALL_S * 2 if s[0] >= 256 else 1e-4  # noqa: E731
    model, measured = EfficiencyModel(), set()
    while (s := keff.plan_next(model, "fp32", "fp32", keff.grid_shapes()[:200], dear, 1e9, measured)) is not None:
        measured.add(s)
        model.add("gemm", "fp32", dict(zip("mnk", s)), surface(*s))
        assert s[0] < 256
    assert keff.plan_next(EfficiencyModel(), "fp32", "fp32", keff.grid_shapes(), lambda s: 1.0, 4.0, set()) is None


def test_the_sweep_spends_its_budget_across_precisions_and_covers_decode_to_prefill(monkeypatch):
    calls = []
    monkeypatch.setattr(keff, "_measure", fake_measure(calls))
    monkeypatch.setattr(keff, "make_gemm", lambda *a, **k: SimpleNamespace(precision=k["precision"]))
    monkeypatch.setattr(keff, "_Costs", _FakeCosts)
    info = SimpleNamespace(kind="cpu", torch_device="cpu", simulated=None)
    monkeypatch.setattr(keff.telemetry, "snapshot", lambda *a, **k: {"contention": []})
    model, rows = keff.run_sweep(info, None, precisions=[("fp32", {"precision": "fp32"}), ("int8", {"precision": "int8"})],
                                 budget_s=1.0)
    assert model.meta["seconds"] < 2.0
    order = [r["precision"] for r in rows]
    # interleaved: a slow minute of the host falls on some shapes of each path, not on all of one
    assert {"fp32", "int8"} <= set(order[:6]) and {"fp32", "int8"} <= set(order[-len(order) // 3:]), order
    for prec in ("fp32", "int8"):
        ms = {r["shape"][0] for r in rows if r["precision"] == prec}
        assert {1, 16, 256, 2048} <= ms and len(ms) > 4, (prec, ms)  # the seed and more, found by the plan
    # on the made-up surface, a model fitted from the plan's shapes predicts shapes it never saw
    for shape in ((3, 1744, 2944), (24, 2608, 2560), (700, 2096, 2176)):
        got = model.expected("gemm", "fp32", dict(zip("mnk", shape)))
        assert got.efficiency is None or abs(math.log(got.efficiency / surface(*shape))) < 0.25, (shape, got)


def test_held_out_shapes_run_in_passes_over_all_of_them(monkeypatch):
    """Each held-out shape is measured once a pass, every shape before any repeats (runs of one shape apart in
    time), and comes back with its runs for the score's median and noise floor."""
    calls = []
    monkeypatch.setattr(keff, "_measure", fake_measure(calls))
    monkeypatch.setattr(keff, "_Costs", _FakeCosts)
    shapes = keff.HELD_OUT[:4]
    rows = keff.measure_held_out(None, None, None, [("fp32", {"precision": "fp32"})], shapes=shapes, passes=3)
    order = sorted(shapes, key=lambda s: s[0] * s[1] * s[2])
    assert calls == order * 3
    assert [len(r[4]) for r in rows] == [3] * 4 and all(r[1] == "fp32" for r in rows)
    with pytest.raises(ValueError, match="passes=0"):
        keff.measure_held_out(None, None, None, [("fp32", {})], shapes=shapes, passes=0)


def test_a_held_out_shape_whose_runs_lie_apart_runs_in_more_passes_and_a_spell_is_outvoted(monkeypatch):
    """A 2-thread kernel on a 2-core VM ran at half speed for a whole pass, and where two of three passes fell in such
    spells the score held the model against a spell's run. A shape whose runs lie over ``SCORE_SETTLE_LOG`` apart
    runs in ``SCORE_EXTRA_PASSES`` more passes (still a pass over every such shape apart), and the median of
    its five runs is the device's own; a quiet shape keeps its three."""
    calls, passes_seen = [], {}
    clean = fake_measure([])
    spelled = keff.HELD_OUT[3]

    def measure(label, kwargs, shape, *a, **k):
        calls.append(shape)
        n = passes_seen[shape] = passes_seen.get(shape, 0) + 1
        kernel, m = clean(label, kwargs, shape, *a, **k)
        if shape == spelled and n <= 2:  # its first two passes fall in a spell: twice as slow
            m.timing = SimpleNamespace(median_s=2 * m.timing.median_s, rel_iqr=0.01)
        return kernel, m
    monkeypatch.setattr(keff, "_measure", measure)
    monkeypatch.setattr(keff, "_Costs", _FakeCosts)
    shapes, lines = keff.HELD_OUT[:4], []
    rows = keff.measure_held_out(None, None, None, [("fp32", {"precision": "fp32"})], shapes=shapes, passes=3,
                                 progress=lines.append)
    runs = {tuple(r[2][a] for a in "mnk"): r[4] for r in rows}
    clean_s = 1e-6 * spelled[0] * spelled[1] * spelled[2] / 2**20
    assert len(runs[spelled]) == 3 + keff.SCORE_EXTRA_PASSES and min(runs[spelled]) == pytest.approx(clean_s)
    import statistics
    assert statistics.median(runs[spelled]) == pytest.approx(clean_s)  # three passes alone: a spell's run
    assert all(len(v) == 3 for s, v in runs.items() if s != spelled)
    order = sorted(shapes, key=lambda s: s[0] * s[1] * s[2])
    assert calls == order * 3 + [spelled] * keff.SCORE_EXTRA_PASSES
    assert any("run once more" in line for line in lines) and "1 run more where their runs lay apart" in lines[-1], lines


def test_a_paths_held_out_passes_lie_a_pass_over_every_path_apart(monkeypatch):
    """Pass 2 of any path starts after pass 1 of every path: a slow spell of the host falls on one pass of several
    paths, not on all of one path's (each path once ran its three passes back to back, and a spell covered two)."""
    calls, labels = [], []
    measure = fake_measure(calls)

    def labelled(label, *a, **k):
        labels.append(label)
        return measure(label, *a, **k)
    monkeypatch.setattr(keff, "_measure", labelled)
    monkeypatch.setattr(keff, "_Costs", _FakeCosts)
    shapes = keff.HELD_OUT[:2]
    rows = keff.measure_held_out(None, None, None, [("fp32", {"precision": "fp32"}), ("bf16", {"precision": "bf16"})],
                                 shapes=shapes, passes=3)
    order = sorted(shapes, key=lambda s: s[0] * s[1] * s[2])
    assert calls == order * 6 and labels == ["fp32", "fp32", "bf16", "bf16"] * 3  # fp32's pass, bf16's, fp32's...
    assert [(r[1], len(r[4])) for r in rows] == [("fp32", 3)] * 2 + [("bf16", 3)] * 2


@pytest.mark.parametrize("error", [keff.BudgetExceeded("5 samples of 2.4 s cannot fit 2 s"),
                                   RuntimeError("CUDA error: an illegal memory access was encountered")])
def test_a_held_out_shape_whose_timing_is_refused_is_named_not_dropped(monkeypatch, error):
    """A shape the timer refuses (its samples cannot fit the per-shape budget) or a device error (a CUDA error, torch's
    OutOfMemoryError: RuntimeErrors, which the sweep takes as refusals too) leaves the score, and the progress line
    names it and why, while every other shape is scored: three int8 held-out shapes once vanished from a score
    without a word."""
    calls, lines = [], []
    measure = fake_measure(calls)

    def refusing(label, kwargs, shape, *a, **k):
        if shape == keff.HELD_OUT[1]:
            raise error
        return measure(label, kwargs, shape, *a, **k)
    monkeypatch.setattr(keff, "_measure", refusing)
    monkeypatch.setattr(keff, "_Costs", _FakeCosts)
    rows = keff.measure_held_out(None, None, None, [("int8", {"precision": "int8"})], shapes=keff.HELD_OUT[:3],
                                 passes=2, progress=lines.append)
    assert len(rows) == 2
    shape = "x".join(map(str, keff.HELD_OUT[1]))
    assert f"1 not measured: {shape} {type(error).__name__}: {error}" in lines[-1], lines


def test_a_held_out_shape_up_to_max_call_s_a_call_gets_the_wall_time_its_samples_need(monkeypatch):
    """The score leaves out shapes over ``max_call_s`` (2 s) a call and measures the rest: a software bf16
    2000x2512x1152 GEMM at 1.1 s a call was refused by the sweep's 2 s per-shape budget instead, so the score's
    M = 2000 went unmeasured. The sweep's budget still refuses it (its shapes stay cheap)."""
    from roofline_kernels.timer import _refuse_if_over_budget
    budgets = []

    def kernel_measure(kernel, info, hw, mode, roof, *, max_wall_s, min_reps, **_):
        _refuse_if_over_budget(1.1, min_reps, max_wall_s)  # the timer's own refusal, one call taking 1.1 s
        budgets.append(max_wall_s)
        return SimpleNamespace(timing=SimpleNamespace(median_s=1.1), predicted_time_s=0.5)
    monkeypatch.setattr(keff, "measure_kernel", kernel_measure)
    monkeypatch.setattr(keff, "_build", lambda kwargs, shape, info: SimpleNamespace(
        op="gemm", precision="bf16", cost=SimpleNamespace(shape=dict(zip("mnk", shape)))))
    shape = (2000, 2512, 1152)
    rows = keff.measure_held_out(None, None, None, [("bf16", {"precision": "bf16"})], shapes=[shape], passes=2)
    assert len(rows) == 1 and rows[0][4] == [1.1, 1.1] and budgets == [6.0, 6.0]
    with pytest.raises(keff.BudgetExceeded, match="over the per-case budget of 2 s"):
        keff._measure("bf16", {"precision": "bf16"}, shape, None, None, 1.1)


class _FakeCosts:
    def __init__(self, kwargs, hw):
        self.seen = []

    def add(self, shape, seconds):
        self.seen.append(shape)

    def add_wall(self, shape, seconds):
        pass

    def wall(self, shape):
        return 0.0

    def __call__(self, shape):
        return cost_of(shape) / 1000  # a fast device: every seed is affordable


def _store_profile(tmp_path, model=None):
    cal = Calibration("cpu", {"fp32": 0.2}, 20.0, timestamp="t0", details={"quick": True})
    if model is not None:
        keff.attach(cal, model)
    path = tmp_path / "calibration-cpu-abc.json"
    path.write_text(json.dumps(cal.to_dict()))
    return load_calibration(path)


def _measured(mode="cold", emulated=False, contention=(), op="gemv", shape=None, eff=0.6, peaks="calibrated",
              cold_note="cold by rotation: 4 copies spanning 66 MiB (target 66 MiB = 2x caches)", beats_ceiling=False):
    kernel = SimpleNamespace(op=op, precision="fp32", emulated=emulated,
                             cost=SimpleNamespace(shape=shape or {"m": 1, "n": 2048, "k": 2048}))
    m = SimpleNamespace(timing=SimpleNamespace(mode=mode), peaks=peaks, contention=list(contention),
                        efficiency=eff, memory_roof_only=False, cold_note=cold_note, beats_ceiling=beats_ceiling)
    return kernel, m


def test_every_cold_measurement_joins_the_model_saved_in_its_profile(tmp_path):
    cal = _store_profile(tmp_path)
    info = SimpleNamespace(simulated=None)
    assert keff.learn(cal, *_measured(), info) is None
    assert keff.learn(cal, *_measured(eff=0.7), info) is None  # a second run of the same shape: its noise is kept
    again = model_of(load_calibration(cal.path))
    assert [p.efficiencies for p in again.points("gemv", "fp32")] == [(0.6, 0.7)]
    assert model_of(cal).points("gemv", "fp32") == again.points("gemv", "fp32")  # the caller's profile too


def test_an_attention_measurement_joins_its_own_class(tmp_path):
    cal = _store_profile(tmp_path)
    decode = {"batch": 1, "heads": 32, "kv_heads": 8, "seq_q": 1, "seq_kv": 4096, "head_dim": 128, "causal": True}
    assert keff.learn(cal, *_measured(op="attention", shape=decode, eff=0.4), SimpleNamespace(simulated=None)) is None
    model = model_of(load_calibration(cal.path))
    assert set(model.samples) == {"attention:fp32"}
    assert [p.shape for p in model.points("attention", "fp32")] == [
        {"seq_q": 1, "seq_kv": 4096, "batch_heads": 32, "group": 4, "head_dim": 128}]
    assert not model.covers("gemv", "fp32")  # an attention sample says nothing about a GEMV


@pytest.mark.parametrize("kw, why", [
    (dict(mode="hot"), "hot timing"), (dict(emulated=True), "emulated"), (dict(contention=["busy CPU: 80%"]),
                                                                         "under contention"),
    (dict(op="elementwise"), "covers GEMV, GEMM and attention"), (dict(peaks="datasheet"), "datasheet roof"),
    (dict(eff=float("nan")), "efficiency nan"), (dict(beats_ceiling=True), "beats its ceiling"),
    # a rotation memory kept short is partly cached: its run says nothing of a cold one
    (dict(cold_note="cold by rotation: 2 copies spanning 512 MiB (target 962 MiB = 2x caches); SHORT of target "
                    "(memory budget 512 MiB): samples may be partly cached"), "SHORT of its target")])
def test_what_does_not_join_the_model_says_why(tmp_path, kw, why):
    cal = _store_profile(tmp_path)
    got = keff.learn(cal, *_measured(**kw), SimpleNamespace(simulated=None))
    assert got and why in got, got
    assert model_of(load_calibration(cal.path)) is None


def test_a_profile_given_by_path_or_recalibrated_since_is_not_written(tmp_path):
    info = SimpleNamespace(simulated=None)
    cal = _store_profile(tmp_path)
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps(cal.to_dict()))
    assert "given by path" in keff.learn(load_calibration(mine), *_measured(), info)
    assert "simulated" in keff.learn(cal, *_measured(), SimpleNamespace(simulated="h100_sxm"))
    newer = Calibration("cpu", {"fp32": 0.2}, 20.0, timestamp="t1", details={})
    (tmp_path / "calibration-cpu-abc.json").write_text(json.dumps(newer.to_dict()))
    assert "recalibrated" in keff.learn(cal, *_measured(), info)
    # the same calibration, its roofs raised by a sweep since this process loaded it: a sample held to the old roofs
    # would join a model held to the new (``raise_roofs``)
    raised = Calibration("cpu", {"fp32": 0.25}, 20.0, timestamp="t0", details={})
    (tmp_path / "calibration-cpu-abc.json").write_text(json.dumps(raised.to_dict()))
    assert "roofs were raised" in keff.learn(cal, *_measured(), info)
    assert keff.learn(load_calibration(cal.path), *_measured(), info) is None  # one loaded since learns


def test_a_profile_without_a_model_gets_one_on_load_and_budget_zero_means_none(tmp_path, monkeypatch, device_info,
                                                                                 calibration):
    import roofline_kernels.calibrate as cal_mod
    from tests.test_calibrate import quiet
    d = quiet(calibration)
    d["details"].pop("efficiency", None)
    path = cal_mod.profile_path(device_info, tmp_path)
    path.write_text(json.dumps(d))
    swept = []

    def sweep(info, hw, precisions=None, budget_s=0, progress=None, **k):
        swept.append(budget_s)
        model = EfficiencyModel()
        model.add("gemv", "fp32", {"n": 4096, "k": 4096}, 0.7)
        return model, []
    monkeypatch.setattr(keff, "run_sweep", sweep)
    monkeypatch.setattr(keff, "sweep_precisions", lambda info, hw: [("fp32", {"precision": "fp32"})])
    assert model_of(cal_mod.load_or_calibrate(device_info, tmp_path, quick=True, efficiency_budget_s=0)) is None
    assert swept == []
    got = cal_mod.load_or_calibrate(device_info, tmp_path, quick=True)
    assert swept == [keff.QUICK_BUDGET_S] and model_of(got).covers("gemv", "fp32")
    assert model_of(load_calibration(path)).covers("gemv", "fp32")  # saved: the next load does not sweep
    cal_mod.load_or_calibrate(device_info, tmp_path, quick=True)
    assert swept == [keff.QUICK_BUDGET_S]


@pytest.mark.cpu
def test_measure_says_not_measured_near_and_the_nearest_shape(tmp_path, device_info, calibration):
    from roofline.__main__ import main
    from roofline_kernels.calibrate import profile_path
    from tests.test_calibrate import quiet
    d = quiet(calibration)
    model = EfficiencyModel()
    model.add("gemv", "fp32", {"n": 1024, "k": 1024}, 0.5, "full")
    d["details"]["efficiency"] = dict(model.to_dict(), meta={"calibration": calibration.timestamp})
    profile_path(device_info, tmp_path).write_text(json.dumps(d))
    out = io.StringIO()
    assert main(["measure", "gemm", "--m", "64", "--n", "1024", "--k", "1024", "--precision", "fp32", "--rep-ms",
                 "10", "--cache-dir", str(tmp_path)], out=out) == 0
    line = next(x for x in out.getvalue().splitlines() if x.strip().startswith("expected"))
    assert "- (not measured near this shape (nearest: 1x1024x1024" in line, line


def attention_surface(b, h, kvh, sq, skv, d):
    """A made-up device's SDPA: decode streams the KV cache better the longer it is and the less it is shared;
    causal prefill sits lower and rises with length."""
    if sq == 1:
        return 0.35 + 0.04 * math.log2(skv / 256) - 0.05 * math.log2(h // kvh) + 0.02 * math.log2(b)
    return 0.15 + 0.03 * math.log2(sq / 128) + 0.02 * math.log2(d / 64)


def fake_attention_measure(calls):
    gemm = fake_measure(calls)

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        if len(shape) == 3:
            return gemm(label, kwargs, shape, info, hw, est)
        calls.append(shape)
        b, h, kvh, sq, skv, d = shape
        kernel = SimpleNamespace(op="attention", precision=kwargs["precision"], cost=SimpleNamespace(shape={
            "batch": b, "heads": h, "kv_heads": kvh, "seq_q": sq, "seq_kv": skv, "head_dim": d, "causal": sq > 1}))
        timing = SimpleNamespace(median_s=1e-9 * b * h * sq * skv * d, rel_iqr=0.01)
        eff = attention_surface(*shape)
        return kernel, SimpleNamespace(efficiency=eff, memory_roof_only=False, timing=timing,
                                       predicted_time_s=timing.median_s * eff)
    return measure


def test_attention_is_swept_decode_and_prefill_at_half_a_gemm_paths_share(monkeypatch):
    calls = []
    monkeypatch.setattr(keff, "_measure", fake_attention_measure(calls))
    monkeypatch.setattr(keff, "make_gemm", lambda *a, **k: SimpleNamespace(precision=k["precision"]))
    monkeypatch.setattr(keff, "make_attention", lambda *a, **k: SimpleNamespace(precision=k["precision"]))
    monkeypatch.setattr(keff, "_Costs", _FakeCosts)
    ticks = iter(range(10**6))
    monkeypatch.setattr(keff.time, "perf_counter", lambda: next(ticks) * 1e-3)  # every call: 1 ms of a fake clock
    monkeypatch.setattr(keff.telemetry, "snapshot", lambda *a, **k: {"contention": []})
    info = SimpleNamespace(kind="cpu", torch_device="cpu", simulated=None)
    model, rows = keff.run_sweep(info, None, precisions=[("fp32", {"precision": "fp32"}),
                                                         ("attention fp32", {"op": "attention", "precision": "fp32"})],
                                 budget_s=0.15)
    gemm = [r for r in rows if r["op"] == "gemm"]
    attn = [r for r in rows if r["op"] == "attention"]
    assert gemm and attn and set(model.samples) == {"gemm:fp32", "attention:fp32"}
    assert len(attn) < len(keff.grid_shapes({"op": "attention"}))  # the share ended it, not the grid
    assert 0.3 < len(attn) / len(gemm) < 0.8, (len(gemm), len(attn))  # ATTENTION_SHARE of the GEMM path's time
    assert {tuple(r["shape"]) for r in attn} >= set(keff.ATTN_SEED)  # decode and prefill seeds first
    assert {r["shape"][3] == 1 for r in attn} == {True, False}
    predicted = 0
    for shape in keff.ATTN_HELD_OUT:
        b, h, kvh, sq, skv, d = shape
        got = model.expected("attention", "fp32", dict(batch=b, heads=h, kv_heads=kvh, seq_q=sq, seq_kv=skv,
                                                       head_dim=d))
        assert got.efficiency is None or abs(math.log(got.efficiency / attention_surface(*shape))) < 0.3, (shape, got)
        predicted += got.efficiency is not None
    assert predicted >= len(keff.ATTN_HELD_OUT) // 2, predicted


def test_the_attention_grid_spans_every_registry_models_heads_per_kv_head_and_head_size():
    """The model holds the edge of what was measured beyond it (no extrapolation): a registry model whose group
    lies past the grid's gets the efficiency of a group that reuses each KV byte less often than its own (seen: a
    group 7 decode 15-41% slower than expected, when the grid had groups 1 and 4)."""
    grid = keff.grid_shapes({"op": "attention", "precision": "fp32"})
    groups, dims = {h // kvh for _, h, kvh, *_ in grid}, {d for *_, d in grid}
    for name, cfg in MODEL_CONFIGS.items():
        group = cfg.heads // cfg.kv_heads
        assert min(groups) <= group <= max(groups), f"{name}: {group} heads per KV head, the grid's {sorted(groups)}"
        assert min(dims) <= cfg.dim_per_head <= max(dims), f"{name}: head_dim {cfg.dim_per_head}, grid's {sorted(dims)}"


def test_attention_candidates_are_valid_kernels_and_held_out_lies_off_the_grid():
    kw = {"op": "attention", "precision": "bf16"}
    grid = keff.grid_shapes(kw)
    assert set(keff.ATTN_SEED) <= set(grid)
    for b, h, kvh, sq, skv, d in grid:
        assert h % kvh == 0 and (sq == 1 or sq == skv)  # decode, or a causal prefill SDPA's is_causal can run
    assert not set(keff.ATTN_HELD_OUT) & set(grid)
    assert keff.held_out_shapes(kw) == keff.ATTN_HELD_OUT and keff.held_out_shapes({}) == keff.HELD_OUT + keff.GROUPED_HELD_OUT


def test_a_run_a_busy_moment_slowed_is_measured_again_and_outvoted(monkeypatch):
    """One seed's first run comes out at half its speed (a neighbour took the core): it disagrees with its
    neighbours, so the plan runs it again, and the median of its runs, not the slow one, is what the model keeps."""
    slow_once, seen = (16, 4096, 4096), []
    clean = fake_measure([])

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        seen.append(shape)
        kernel, m = clean(label, kwargs, shape, info, hw, est)
        if shape == slow_once and seen.count(shape) == 1:
            m.efficiency /= 2
        return kernel, m

    monkeypatch.setattr(keff, "_measure", measure)
    monkeypatch.setattr(keff, "make_gemm", lambda *a, **k: SimpleNamespace(precision=k["precision"]))
    monkeypatch.setattr(keff, "_Costs", _FakeCosts)
    ticks = iter(range(10**6))
    monkeypatch.setattr(keff.time, "perf_counter", lambda: next(ticks) * 1e-3)
    monkeypatch.setattr(keff.telemetry, "snapshot", lambda *a, **k: {"contention": []})
    info = SimpleNamespace(kind="cpu", torch_device="cpu", simulated=None)
    model, rows = keff.run_sweep(info, None, precisions=[("fp32", {"precision": "fp32"})], budget_s=0.3)
    assert seen.count(slow_once) == keff.REPEAT_RUNS, seen.count(slow_once)
    at = [i for i, s in enumerate(seen) if s == slow_once]
    assert min(b - a for a, b in zip(at, at[1:])) > 2, f"not back to back, in the same busy moment: {at}"
    point = next(p for p in model.points("gemm", "fp32") if p.shape == dict(zip("mnk", slow_once)))
    assert abs(point.log_eff - math.log(surface(*slow_once))) < 1e-9  # the median of three runs: the two clean ones
    assert model.meta["repeated"] < len(rows) / 4, "runs again only where a shape disagrees, not everywhere"


def test_two_runs_that_disagree_get_their_third_even_where_the_budget_ends_between(monkeypatch):
    """A seed's first run is slowed (a busy moment), its second is not, and the budget runs out right after the second:
    the model would hold their mean, 29% off either run, for good. The third run the pair is owed runs anyway, and
    the median of the three, the clean value, is what the model keeps."""
    slow_once, seen, clock, clean = (16, 4096, 4096), [], [0.0], fake_measure([])

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        seen.append(shape)
        clock[0] += 0.002
        kernel, m = clean(label, kwargs, shape, info, hw, est)
        if shape == slow_once and seen.count(shape) == 1:
            m.efficiency /= 2
        if shape == slow_once and seen.count(shape) == 2:
            clock[0] = 1.0  # the budget's end
        return kernel, m

    model, rows = _fp32_sweep_on_a_fake_clock(monkeypatch, measure, clock, budget_s=1.0)
    assert seen.count(slow_once) == keff.REPEAT_RUNS, seen
    assert [r["run"] for r in rows if tuple(r["shape"]) == slow_once] == [1, 2, 3]
    point = next(p for p in model.points("gemm", "fp32") if p.shape == dict(zip("mnk", slow_once)))
    assert abs(point.log_eff - math.log(surface(*slow_once))) < 1e-9


def _full_sweep_with_first_runs_slowed(monkeypatch, slowed: dict, refused=(), budget=1.25):
    """A fake-clock full fp32 sweep (200 ms a measurement; ``budget`` x ``FULL_S``) where each ``slowed`` shape's
    run number k (1-based, its key) is divided by the value; ``refused`` shapes are too dear to time: (model, rows,
    shapes in measuring order)."""
    clean, clock, seen = fake_measure([]), [0.0], []

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        clock[0] += 0.2
        seen.append(tuple(shape))
        if tuple(shape) in refused:
            raise keff.BudgetExceeded("one call takes ~3 s: over the per-case budget")
        kernel, m = clean(label, kwargs, shape, info, hw, est)
        m.efficiency /= slowed.get((tuple(shape), seen.count(tuple(shape))), 1.0)
        return kernel, m

    model, rows = _fp32_sweep_on_a_fake_clock(monkeypatch, measure, clock, budget_s=budget * FULL_S)
    return model, rows, seen


def _log_error(model, shape):
    point = next(p for p in model.points("gemm", "fp32") if p.shape == dict(zip("mnk", shape)))
    return point.log_eff - math.log(surface(*shape))


def test_a_shape_a_full_sweep_ran_once_with_no_neighbour_runs_again_at_its_end(monkeypatch):
    """The model leans on a shape alone over its region when nothing else was measured near it, and no neighbour can
    show that its one run was slowed (here: the M = 64 seed at 1024 x 1024, 1.6x slow, its 4096 x 4096 twin too dear
    to time). A full sweep runs it again at its end; the two runs disagree, a third decides, and
    the model keeps the clean value. A shape with neighbours and the quick sweep's shapes are not run again so."""
    lone = (64, 1024, 1024)
    # its twin at K + 128 (``wants_twin``) runs seconds after it, in the same slow spell: no neighbour that can show it
    twin = (64, 1024, 1024 + 128)
    # a full sweep's least budget: with more, the planner reaches shapes near it on this made-up device (whose
    # efficiency drops 0.15 past M = 64, so a fit across that cannot show a 1.6x slow run), and it is alone no more;
    # what is tested is the rule for a shape that is
    model, rows, seen = _full_sweep_with_first_runs_slowed(monkeypatch, {(lone, 1): 1.6, (twin, 1): 1.6},
                                                           refused={(64, 4096, 4096)}, budget=1.0)
    assert seen.index(twin) == seen.index(lone) + 1
    runs = [(r["run"], bool(r.get("drift"))) for r in rows if tuple(r["shape"]) == lone]
    assert runs == [(1, False), (2, True), (3, False)], runs
    assert abs(_log_error(model, lone)) < 1e-9
    first = [tuple(r["shape"]) for r in rows if r["run"] == 1][:keff.DRIFT_SHAPES]
    again_at_end = [tuple(r["shape"]) for r in rows if r.get("drift") and tuple(r["shape"]) not in first]
    assert lone in again_at_end and len(again_at_end) < len({tuple(r["shape"]) for r in rows}) / 4, again_at_end
    # the host's move since the sweep began is read off its first shapes alone (a lone shape ran mid-sweep)
    assert model.meta["drift"]["n"] == keff.DRIFT_SHAPES
    # the end's re-runs were kept room for: past the budget only the thirds they owed (the shape's and its twin's, both
    # slowed), and the loop's last shape with its own re-run at the end, where it has no neighbour (the fake costs, a
    # thousandth of what the fake clock charges, do not warn the planner)
    assert model.meta["seconds"] <= FULL_S + 4 * 0.2 + 0.01, model.meta["seconds"]


def test_a_full_sweep_is_full_for_its_attention_paths_too():
    """An attention path's share is ATTENTION_SHARE of a GEMM path's: in a sweep whose GEMM paths are full, so is
    it (its prefill seeds lie 2 units apart, each alone until the planner reaches between them)."""
    attention, gemm = {"op": "attention", "precision": "fp32"}, {"precision": "fp32"}
    assert keff._Path("a", attention, None, None, keff.ATTENTION_SHARE * keff.LINE_MIN_S).full
    assert keff._Path("g", gemm, None, None, keff.LINE_MIN_S).full
    assert not keff._Path("a", attention, None, None, keff.ATTENTION_SHARE * keff.QUICK_BUDGET_S / 5).full
    assert not keff._Path("g", gemm, None, [(1, 1024, 1024)], keff.LINE_MIN_S).full  # given shapes: no planning


def test_a_shape_first_measured_with_no_neighbour_is_judged_when_its_first_neighbour_comes(monkeypatch):
    """``recheck`` judges a first run against its neighbours, and a shape measured before any (the M = 2048 seed at
    1024 x 1024, 1.6x slow) had none then: when its first neighbour is measured it is judged as it would have been,
    runs again a few shapes later, within the sweep, and a third run decides."""
    slow = (2048, 1024, 1024)
    model, rows, seen = _full_sweep_with_first_runs_slowed(monkeypatch, {(slow, 1): 1.6})
    runs = [(r["run"], bool(r.get("drift"))) for r in rows if tuple(r["shape"]) == slow]
    assert runs == [(1, False), (2, False), (3, False)], runs
    assert abs(_log_error(model, slow)) < 1e-9


def test_a_drift_re_run_that_disagrees_with_its_first_run_gets_a_third_after_every_paths_re_runs(monkeypatch):
    """The host slows while the sweep's first shape runs again at its end (1.6x): the two runs disagree, and the model
    would keep their mean; a third run, after the other re-runs, decides."""
    clean, clock, calls = fake_measure([]), [0.0], []

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        calls.append(tuple(shape))
        clock[0] += 0.02
        kernel, m = clean(label, kwargs, shape, info, hw, est)
        if len(calls) > 1 and tuple(shape) == calls[0] and calls.count(calls[0]) == 2:
            m.efficiency /= 1.6
        return kernel, m

    model, rows = _fp32_sweep_on_a_fake_clock(monkeypatch, measure, clock, budget_s=1.0)
    first = calls[0]
    runs = [(r["run"], bool(r.get("drift"))) for r in rows if tuple(r["shape"]) == first]
    assert runs == [(1, False), (2, True), (3, False)], runs
    assert [tuple(r["shape"]) for r in rows][-1] == first  # after the other shapes' re-runs
    assert model.meta["drift"]["n"] == keff.DRIFT_SHAPES  # the third is a run of the shape, not a move of the host
    assert abs(_log_error(model, first)) < 1e-9


def _fp32_sweep_on_a_fake_clock(monkeypatch, measure, clock, budget_s):
    """``run_sweep`` of one fp32 path through ``measure`` (which advances ``clock[0]`` by what a measurement takes),
    every other read of the clock 1 ms on."""
    def tick():
        clock[0] += 1e-3
        return clock[0]

    monkeypatch.setattr(keff, "_measure", measure)
    monkeypatch.setattr(keff, "make_gemm", lambda *a, **k: SimpleNamespace(precision=k["precision"]))
    monkeypatch.setattr(keff, "_Costs", _FakeCosts)
    monkeypatch.setattr(keff.time, "perf_counter", tick)
    monkeypatch.setattr(keff.telemetry, "snapshot", lambda *a, **k: {"contention": []})
    info = SimpleNamespace(kind="cpu", torch_device="cpu", simulated=None)
    return keff.run_sweep(info, None, precisions=[("fp32", {"precision": "fp32"})], budget_s=budget_s)

@pytest.mark.parametrize("slower", [1.0, 1.25])
def test_the_sweep_measures_its_first_shapes_again_and_the_plus_minus_carries_how_far_the_host_moved(monkeypatch,
                                                                                                    slower):
    """Half-way through the sweep the made-up host turns 25% slower: the path's first shapes, measured again at the
    end, say so (the drift), and every expected time's +- then carries it. A host that holds still leaves the +- as
    the model's error and noise alone; the re-runs fit inside the budget either way."""
    calls, clean, clock = [], fake_measure([]), [0.0]

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        calls.append(shape)
        clock[0] += 0.02  # a measurement takes 20 ms of the fake clock
        kernel, m = clean(label, kwargs, shape, info, hw, est)
        if len(calls) > 20:
            m.efficiency /= slower
        return kernel, m

    model, rows = _fp32_sweep_on_a_fake_clock(monkeypatch, measure, clock, budget_s=1.0)
    assert model.meta["seconds"] <= 1.0 and len(calls) > 30, (model.meta["seconds"], len(calls))
    first = [tuple(r["shape"]) for r in rows if r["run"] == 1][:keff.DRIFT_SHAPES]
    again = [tuple(r["shape"]) for r in rows if r.get("drift")]
    assert again == first and len(first) == keff.DRIFT_SHAPES and rows[-len(again):] == [r for r in rows if r.get("drift")]
    drift = model.meta["drift"]
    assert drift["paths"]["gemm:fp32"] == {"n": keff.DRIFT_SHAPES, "mean": pytest.approx(math.log(slower))}
    # the spread of log(now / then): 1.4826 x their median |log|, here all log(1.25)
    assert drift["n"] == keff.DRIFT_SHAPES and drift["sigma"] == pytest.approx(1.4826 * math.log(slower))
    assert model.drift("gemm", "fp32") == pytest.approx(1.4826 * math.log(slower))
    got = model.expected("gemm", "fp32", {"m": 24, "n": 2608, "k": 2560})
    assert got.uncertainty is not None
    if slower > 1:
        assert got.uncertainty >= slower ** 1.4826 - 1 - 1e-9
        assert f"the host's speed moved +-{slower ** 1.4826 - 1:.0%} while the sweep ran" in got.note, got.note
    else:
        assert "moved" not in got.note


def test_scoring_measures_swept_shapes_again_beside_the_held_out_ones(monkeypatch):
    calls = []
    monkeypatch.setattr(keff, "_measure", fake_measure(calls))
    monkeypatch.setattr(keff, "_Costs", _FakeCosts)
    monkeypatch.setattr(keff, "make_gemm", lambda *a, **k: SimpleNamespace(precision=k["precision"]))
    model = EfficiencyModel()
    swept = [(1, 1024, 1024), (16, 2048, 2048), (256, 4096, 4096), (2048, 4096, 4096), (64, 1024, 8192)]
    for s in swept:
        model.add("gemm", "fp32", dict(zip("mnk", s)), surface(*s))
    anchors = []
    info = SimpleNamespace(kind="cpu", torch_device="cpu")
    held = keff.measure_held_out(model, info, None, [("fp32", {"precision": "fp32"})], shapes=keff.HELD_OUT[:2],
                                 passes=2, anchors=anchors)
    assert [r[2] for r in held] == [{"m": s[0], "n": s[1], "k": s[2]} for s in
                                    sorted(keff.HELD_OUT[:2], key=lambda s: s[0] * s[1] * s[2])]
    got = sorted(tuple(r[2][k] for k in "mnk") for r in anchors)
    assert got == [(1, 1024, 1024), (64, 1024, 8192), (2048, 4096, 4096)]  # smallest, middle, largest work
    assert all(len(r[4]) == 2 for r in anchors + held)  # in every pass
    assert not set(got) & set(keff.HELD_OUT)


def test_a_path_whose_seeds_are_refused_still_sweeps_what_builds(monkeypatch):
    """fp32 SDPA with grouped KV heads has no fused CUDA kernel and ``make_attention`` refuses it there
    (``ops.attention_refusal``): the sweep plans none of the path's GQA seeds or grid shapes (the fake builder would
    refuse each, and the profile's "skipped" would list it) and sweeps the shapes that build, its label taken from
    no refused seed."""
    calls = []
    fake = fake_attention_measure(calls)

    def refusing(*shape, precision, device, target):
        if shape[1] != shape[2]:
            raise keff.UnsupportedKernel(precision, target, "fp32 SDPA with grouped KV heads has no fused CUDA kernel")
        return SimpleNamespace(precision=precision)

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        keff._build(kwargs, shape, info)  # refused as the real kernel would be
        return fake(label, kwargs, shape, info, hw, est)

    monkeypatch.setattr(keff, "make_attention", refusing)
    monkeypatch.setattr(keff, "_measure", measure)
    monkeypatch.setattr(keff, "_Costs", _FakeCosts)
    ticks = iter(range(10**6))
    monkeypatch.setattr(keff.time, "perf_counter", lambda: next(ticks) * 1e-3)
    monkeypatch.setattr(keff.telemetry, "snapshot", lambda *a, **k: {"contention": []})
    info = SimpleNamespace(kind="cuda", torch_device="cuda", simulated=None)
    model, rows = keff.run_sweep(info, None, precisions=[("attention fp32", {"op": "attention", "precision": "fp32"})],
                                 budget_s=0.2)
    assert rows and all(r["shape"][1] == r["shape"][2] for r in rows)
    assert not model.meta["skipped"] and all(s[1] == s[2] for s in calls), model.meta["skipped"]
    assert (1, 32, 32, 1, 2048, 128) in calls  # the seed without GQA


def test_learned_attention_shapes_map_back_to_a_kernel_of_the_same_shape():
    kw = {"op": "attention", "precision": "bf16"}
    from roofline.efficiency import model_shape
    for b, h, kvh, sq, skv, d in [(4, 24, 8, 1, 1024, 128), (8, 28, 4, 1, 512, 128), (1, 28, 4, 300, 300, 128),
                                  *keff.grid_shapes(kw)[:40]]:
        shape = dict(batch=b, heads=h, kv_heads=kvh, seq_q=sq, seq_kv=skv, head_dim=d)
        back = keff._builder_shape(kw, model_shape("attention", shape))
        assert model_shape("attention", keff.shape_dict(kw, back)) == model_shape("attention", shape), (shape, back)
        keff._cost(kw, back)  # a shape the cost model (and so the kernel) accepts


@pytest.mark.parametrize("budget_s", [FULL_S, keff.LINE_MIN_S * 0.9])
def test_a_full_sweep_measures_an_m_line_after_its_seeds_and_a_short_one_does_not(monkeypatch, budget_s):
    """Where a GEMM path's share of the budget reaches ``LINE_MIN_S`` (a full calibration: 8.6-15 s a GEMM path), every M
    of 2..16 at ``LINE_NK`` is measured in a row once the path has spent ``LINE_AFTER`` of its share (after the seed
    and the planner's first picks), and a made-up device's slow left-over rows (M = 3, 5, 7: 15-40% slower than
    the line through their powers of two) are then expected at other N x K; under it (the quick calibration's 3 s)
    the budget goes to the grid alone."""
    slow = {3: 1.3, 5: 1.4, 7: 1.15}
    clean, clock = fake_measure([]), [0.0]

    def blocked(m, n, k):
        return surface(m, n, k) / slow.get(m, 1.0)

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        clock[0] += 0.2  # a measurement takes 200 ms of the fake clock
        kernel, m = clean(label, kwargs, shape, info, hw, est)
        m.efficiency = blocked(*shape)
        return kernel, m

    model, rows = _fp32_sweep_on_a_fake_clock(monkeypatch, measure, clock, budget_s=budget_s)
    line = keff.line_shapes()
    got = [tuple(r["shape"]) for r in rows if r["run"] == 1]
    off_grid = [s for s in got if s[0] not in keff.GRID_M]
    shape = {"m": 5, "n": 2224, "k": 3712}
    e = model.expected("gemm", "fp32", shape).efficiency
    if budget_s >= keff.LINE_MIN_S:
        seeds = len(keff.seed_shapes(full=True))
        # (a seed whose K is aligned is followed by its twin, ``wants_twin``)
        no_twins = [s for s in got if not _is_twin(s)]
        assert no_twins[:seeds] == sorted(keff.seed_shapes(full=True), key=lambda s: cost_of(s) / 1000)
        # the registry's seeds (``cover_registry``) come after the line: taken first, they left two paths of a 2-core
        # host no share for it
        registry, _ = keff.cover_registry(keff.seed_shapes(full=True) + line, keff.grid_shapes(),
                                          lambda s: cost_of(s) / 1000)
        assert registry and all(got.index(r) > max(got.index(c) for c in line) for r in registry if r in got), got
        todo = [s for s in line if s not in got[:got.index(off_grid[0])]]  # the line's powers of two may come first
        start = got.index(todo[0])
        assert got[start:start + len(todo)] == todo, got
        # the line's re-runs take no more than LINE_RERUN_SHARE of what was left of the share when it ended
        every = [tuple(r["shape"]) for r in rows if not r.get("drift")]
        end = next(i for i, s in enumerate(every) if s == got[start + len(todo) - 1])  # the line's last first run
        again = [s for s in every[end + 1:] if s in line]
        assert again and 0.2 * len(again) <= keff.LINE_RERUN_SHARE * (budget_s - 0.2 * (end + 1)) + 0.2, (again, end)
        # not before the path spent LINE_AFTER of its share: 200 ms a shape of the fake clock
        assert 0.2 * start >= keff.LINE_AFTER * budget_s - 0.2, start
        assert e == pytest.approx(blocked(5, 2224, 3712), rel=0.1), e
    else:
        assert not off_grid, off_grid
        assert e is None or e / blocked(5, 2224, 3712) > 1.2, e


SLOW_ROWS = {3: 1.3, 5: 1.4, 7: 1.15}  # a made-up device's left-over-rows Ms: this much slower than their line


def line_residual(m):
    """The made-up device's own residual at M on the line (``m_residuals``'s reading of clean runs)."""
    lo = 1 << (m.bit_length() - 1)
    f = math.log2(m / lo)
    ends = (1 - f) * math.log(surface(lo, *keff.LINE_NK)) + f * math.log(surface(2 * lo, *keff.LINE_NK))
    return math.log(surface(m, *keff.LINE_NK) / SLOW_ROWS.get(m, 1.0)) - ends


def _line_sweep_with_one_run_off(monkeypatch, m_off, factor, budget_s):
    """A fake-clock fp32 sweep of a device whose Ms of ``SLOW_ROWS`` run slow, where a made-up busy moment scales the
    line's first run at M = ``m_off`` by ``factor`` (its later runs are clean): (model, rows)."""
    clean, clock, seen = fake_measure([]), [0.0], set()

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        clock[0] += 0.2
        kernel, m = clean(label, kwargs, shape, info, hw, est)
        m.efficiency = surface(*shape) / SLOW_ROWS.get(shape[0], 1.0)
        if tuple(shape) == (m_off,) + keff.LINE_NK and tuple(shape) not in seen:
            m.efficiency *= factor
        seen.add(tuple(shape))
        return kernel, m

    return _fp32_sweep_on_a_fake_clock(monkeypatch, measure, clock, budget_s=budget_s)


def test_the_m_lines_powers_of_two_run_again_when_it_ends_so_one_run_read_high_is_outvoted(monkeypatch):
    """Every residual of an octave is read against its two ends (``m_residuals``): a made-up busy moment that makes
    the line's first M = 2 run read 30% fast would move M = 3's residual by 0.415 x log(1.3). The line's powers of two
    run once more as soon as its last M is measured; M = 2's two runs lie over ``LINE_CONFIRM_LOG`` apart, so it
    runs a third time, and the median of its runs, a clean one, stands: M = 3's residual comes out as the device's."""
    model, rows = _line_sweep_with_one_run_off(monkeypatch, 2, 1.3, 1.25 * FULL_S)
    line, anchors = keff.line_shapes(), keff.line_anchors(keff.line_shapes())
    assert [s[0] for s in anchors] == [2, 4, 8, 16]
    shapes = [tuple(r["shape"]) for r in rows]
    last = max(shapes.index(s) for s in line)
    assert shapes[last + 1:last + 1 + len(anchors)] == anchors, shapes  # right after the line, before anything new
    assert [sum(s == a for s in shapes) for a in anchors] == [keff.REPEAT_RUNS] + [keff.LINE_ANCHOR_RUNS] * 3
    got = m_residuals(model.points("gemm", "fp32"))[3]
    assert got == pytest.approx(line_residual(3), rel=1e-6), (got, line_residual(3))


def test_an_m_whose_first_run_lies_off_the_line_runs_again_so_a_busy_moment_is_not_taken_for_a_residual(monkeypatch):
    """A made-up busy moment makes the line's M = 11 run read 30% slow, where the device has no residual there: once
    the line ends, every M whose first run lies over ``LINE_CONFIRM_LOG`` off the line through its powers of two
    runs again (the device's real left-over-rows Ms 3, 5, 7 among them, the flat ones not); M = 11's two runs lie
    30% apart, so a third decides, and every residual comes out as the device's."""
    model, rows = _line_sweep_with_one_run_off(monkeypatch, 11, 1 / 1.3, 2.5 * FULL_S)
    line, anchors = keff.line_shapes(), keff.line_anchors(keff.line_shapes())
    first = {m: line_residual(m) - (math.log(1.3) if m == 11 else 0.0) for m in range(2, 17) if m & (m - 1)}
    shapes = [tuple(r["shape"]) for r in rows]
    last = max(shapes.index(s) for s in line)
    confirm = [s for s in line if s not in anchors and abs(first[s[0]]) > keff.LINE_CONFIRM_LOG]
    assert {3, 5, 7, 11} <= {s[0] for s in confirm} and len(confirm) < len(line) - len(anchors)
    assert shapes[last + 1:last + 1 + len(anchors) + len(confirm)] == anchors + confirm, shapes[last + 1:]
    got = m_residuals(model.points("gemm", "fp32"))
    assert sum(s == (11,) + keff.LINE_NK for s in shapes) == keff.REPEAT_RUNS
    assert all(sum(s == c for s in shapes) == 2 for c in confirm if c[0] != 11)  # the real ones agreed: no third
    for m in (3, 5, 7, 11):
        assert got[m] == pytest.approx(line_residual(m), rel=1e-6)


def _is_twin(shape):
    """A GEMM shape that is the twin (``roofline.efficiency.twin_k``) of the shape at K - TWIN_STEP."""
    from roofline.efficiency import TWIN_STEP, twins
    return twins(shape, (shape[0], shape[1], shape[2] - TWIN_STEP))


def _aliased_measure(penalty):
    """``fake_measure``'s device, where a K that is a multiple of 2048 runs ``penalty`` x slower for 2 <= M <= 64 (as
    int8 did on a Zen 4 host), 200 ms of the fake clock a measurement: (measure, clock)."""
    clean, clock = fake_measure([]), [0.0]

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        clock[0] += 0.2
        kernel, m = clean(label, kwargs, shape, info, hw, est)
        if shape[2] % 2048 == 0 and 2 <= shape[0] <= 64:
            m.efficiency /= penalty
        return kernel, m
    return measure, clock


@pytest.mark.parametrize("penalty", [1.0, 2.5])
def test_a_full_sweep_measures_an_aligned_ks_twin_right_after_it_while_alignment_matters(monkeypatch, penalty):
    """Each twin (K + 128) runs right after its aligned shape's first run, so the pair is read from one moment of the
    host. On a device where alignment costs nothing, a GEMM's twins stop once ``ALIGN_PROBE_PAIRS`` pairs at K's top
    level said so; where it costs 2.5x, twins keep coming where no pair is near, and the held-out GEMMs (K not powers
    of two) are then expected as the device runs them, where a sweep without twins expects them up to 2x slow."""
    from roofline.efficiency import ALIGN_CAP, k_level
    measure, clock = _aliased_measure(penalty)
    model, rows = _fp32_sweep_on_a_fake_clock(monkeypatch, measure, clock, budget_s=2 * FULL_S)
    shapes = [tuple(r["shape"]) for r in rows]
    twins = [s for s in dict.fromkeys(shapes) if _is_twin(s) and s not in keff.line_shapes()]  # (the M line's K is a
    # twin's too)
    assert twins
    for t in twins:
        assert shapes[shapes.index(t) - 1] == (t[0], t[1], t[2] - 128), (t, shapes)
    gemm = [t for t in twins if t[0] > 1]
    top = [t for t in gemm if k_level(t[2] - 128) == ALIGN_CAP]
    held = [dict(m=m, n=n, k=k) for m, n, k in keff.HELD_OUT if 2 <= m <= 64]
    errors = [model.expected("gemm", "fp32", s).efficiency for s in held]
    errors = [abs(math.log(e / surface(**s))) for e, s in zip(errors, held) if e]
    if penalty == 1.0:
        assert len(top) == keff.ALIGN_PROBE_PAIRS and gemm[-1] == top[-1], gemm
    else:
        assert len(gemm) > len(top) > keff.ALIGN_PROBE_PAIRS, gemm
        assert len(errors) >= len(held) - 1 and max(errors) < math.log(1.1), errors


def test_a_shape_flagged_but_never_run_again_runs_at_a_full_sweeps_end(monkeypatch):
    """A shape ``recheck`` queued (its first run off its neighbours, or judged so when its first neighbour came late)
    whose turn never came before the loop's budget ended runs again at a full sweep's end: the model would otherwise
    keep a run it had itself flagged. An M line's queued re-run does not (they stay within ``LINE_RERUN_SHARE``); a
    queued shape already run twice gets the third it is owed (``_Path.owed``), after the re-runs."""
    calls, clean = [], fake_measure([])

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        calls.append(tuple(shape))
        return clean(label, kwargs, shape, info, hw, est)

    monkeypatch.setattr(keff, "_measure", measure)
    monkeypatch.setattr(keff, "_Costs", _FakeCosts)
    p = keff._Path("fp32", {"precision": "fp32"}, None, None, allowance_s=2 * FULL_S)
    first, flagged, again, line = (1, 1024, 1024), (64, 2048, 4096), (8, 8192, 1024), keff.line_shapes()[3]
    model = EfficiencyModel()
    for shape, runs in ((first, 1), (flagged, 1), (again, 2), (line, 1)):
        p.runs[shape], p.wall[shape], p.near[shape] = runs, 0.1, 1
        p.measured.add(shape)
        for _ in range(runs):
            model.add("gemm", "fp32", dict(zip("mnk", shape)), surface(*shape))
    p.first = [(first, surface(*first), 0.1)]
    p.queue = [(5, flagged), (6, line), (7, again)]
    assert p.full and p.flagged() == [flagged]
    keff._measure_drift([p], model, [], SimpleNamespace(kind="cpu"), None, {})
    assert calls == [first, flagged, again], calls


def test_a_twin_is_never_refused_on_cuda_where_its_aligned_shape_is_not():
    """A twin (K + 128) and the M line (K = 2176) must build wherever the aligned shape builds, on every simulated GPU
    and every GEMM path: CUDA's shape rules (``roofline_kernels.kernel.GEMM_RULES``, each citing the upstream check:
    K % 16 and % 32 for the scaled GEMMs, int4's groups of 128) accept a K that is a multiple of 128 as they accept
    one of 512. A twin the board refused would leave its pair unread and its aligned shape's region unjudged."""
    from roofline.efficiency import twin_k
    from roofline_kernels.kernel import gemm_refusal
    from roofline_kernels.ops import gemm_formats
    from tests.fakes.devices import SIMULATED
    checked = 0
    for dev in SIMULATED.values():
        for _, kwargs in keff.GEMM_KERNELS:
            w, a, _ = gemm_formats(**kwargs)
            for m in keff.GRID_M + keff.LINE_M:
                for n in keff.GRID_NK:
                    for k in keff.GRID_NK + keff.LINE_NK[:1]:
                        if gemm_refusal(w, a, m, n, k, dev.capability) is None:
                            checked += 1
                            assert gemm_refusal(w, a, m, n, twin_k(k), dev.capability) is None, (dev, kwargs, m, n, k)
    assert checked > 1000
    assert keff.LINE_NK[1] == twin_k(keff.LINE_NK[0])


def test_a_full_sweeps_seeds_leave_no_m_of_the_grid_far_from_a_measured_one():
    """The planner picks by uncertainty per cost, and a flat compute-bound region looks sure to it, so a full sweep
    on a Zen 4 host left M 512-1024 unmeasured and every GEMM path answered "not measured near" for held-out
    700x2096x2176 (int4 weight-only also for M = 48 and 96). The full sweep's seeds with its M line cover the grid's
    range of M; the quick sweep keeps its four seed Ms."""
    full = {s[0] for s in keff.seed_shapes(full=True)} | set(keff.LINE_M)
    reach = keff.NEAR_OCTAVES / keff.AXES["gemm"]["m"]
    for i in range(8 * 13 + 1):
        x = i / 8
        assert min(abs(x - math.log2(m)) for m in full) <= reach + 1e-9, (2 ** x, sorted(full))
    assert {s[0] for s in keff.seed_shapes()} == set(keff.SEED_M)
    # a path that builds no M <= 16 (torch._int_mm on CUDA) seeds the next grid M up in their place
    refused = set(range(1, 17))
    live = {s[0] for s in keff.seed_shapes(full=True, refused_m=refused)} - refused
    assert 32 in live
    for i in range(4 * 8 + 1, 8 * 13 + 1):  # every M past 16 (held-out M = 24 among them)
        assert min(abs(i / 8 - math.log2(m)) for m in live) <= reach + 1e-9, (2 ** (i / 8), sorted(live))
    # no more seeds than it takes: each added M covers what no other seed does
    added = keff.cover_m(keff.SEED_M + keff.LINE_M)
    for m in added:
        rest = full - {m}
        assert any(min(abs(i / 8 - math.log2(r)) for r in rest) > reach + 1e-9 for i in range(8 * 13 + 1)), m


def test_a_full_sweep_has_a_number_for_every_held_out_gemm(monkeypatch):
    """On the made-up device, a full sweep's model gives every held-out GEMM shape (M 1-2000) an expected time
    within 10% of the device's own."""
    clean, clock = fake_measure([]), [0.0]

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        clock[0] += 0.2
        return clean(label, kwargs, shape, info, hw, est)

    model, _ = _fp32_sweep_on_a_fake_clock(monkeypatch, measure, clock, budget_s=1.25 * FULL_S)
    for shape in keff.HELD_OUT:
        got = model.expected("gemm", "fp32", dict(zip("mnk", shape)))
        assert got.efficiency is not None, (shape, got.note)
        assert abs(math.log(got.efficiency / surface(*shape))) < math.log(1.1), (shape, got.efficiency, surface(*shape))


def test_a_full_sweep_on_a_simulated_h100_builds_its_twins_under_cudas_rules_and_reads_ks_alignment(monkeypatch):
    """The sweep end to end on a simulated GPU (tests/simulation.py: fake CUDA and NVML; every kernel built by the
    real builders, CUDA's shape rules judged at the full shape, timed by the simulated device), where ``ensure_model``
    never sweeps one: a made-up H100 whose int8 GEMMs at M 2-64 run a K that is a multiple of 4096 2.5x slower. Every
    GEMM path builds and times its seeds, M line and twins there (a twin is K + 128, which CUDA's rules accept
    wherever they accept K; int8's M <= 16, which torch._int_mm refuses, are never planned), and the model
    then expects int8 at K = 4096 2.5x slower than at K = 4224 near its pairs, and the two alike at M = 256 and for
    bf16. The score's held-out passes then run there too."""
    import dataclasses
    from roofline import get_hardware
    from roofline_kernels.measure import hardware_for, measure_kernel
    from roofline_kernels.spot import build
    from tests.simulation import Simulation, probe_kernel
    from tests.validation.cases import Case
    sim = Simulation("h100_sxm").install()
    clock = [0.0]

    def tick():
        clock[0] += 1e-3
        return clock[0]

    try:
        info = sim.detect()
        hw = hardware_for(info, sim.calibration(info, get_hardware(sim.key)))

        def sim_build(kwargs, shape, info_):  # keff._build, as the simulated suite builds a kernel
            if keff._is_attention(kwargs):
                b, h, kvh, sq, skv, d = shape
                case = Case("attention", "sweep", dict(batch=b, heads=h, kv_heads=kvh, seq_q=sq, seq_kv=skv,
                                                       head_dim=d), kwargs["precision"], dict(kwargs), None)
            elif len(shape) == 4:  # a grouped held-out shape (``GROUPED_HELD_OUT``)
                g, m, n, k = shape
                case = Case("grouped_gemm", "sweep", dict(groups=g, m=m, n=n, k=k), "sweep", dict(kwargs), None)
            else:
                m, n, k = shape
                case = Case("gemv" if m == 1 else "gemm", "sweep", dict(m=m, n=n, k=k), "sweep", dict(kwargs), None)
            return probe_kernel(lambda c, i: build(c.op, c.shape, c.kwargs, info_.torch_device, "cuda"), case, info_)

        def timer(kernel, hw_, peaks, mode):
            clock[0] += 0.2  # a measurement takes 200 ms of the fake clock
            t = sim.timer(kernel, hw_, peaks, mode)
            s = kernel.cost.shape
            if kernel.precision == "int8" and 2 <= s.get("m", 1) <= 64 and s["k"] % 4096 == 0:
                t = dataclasses.replace(t, median_s=t.median_s * 2.5)
            return t

        monkeypatch.setattr(keff, "_build", sim_build)
        monkeypatch.setattr(keff, "measure_kernel", lambda *a, **k: measure_kernel(*a, **{**k, "timer": timer}))
        monkeypatch.setattr(keff.telemetry, "snapshot", lambda *a, **k: {"contention": []})
        monkeypatch.setattr(keff.time, "perf_counter", tick)
        precisions = keff.sweep_precisions(info, hw)
        gemm = [kw for _, kw in precisions if not keff._is_attention(kw)]
        shares = sum(keff._share(kw) for _, kw in precisions)
        model, rows = keff.run_sweep(info, hw, precisions=precisions, budget_s=1.2 * FULL_S * shares)
        # and the score (``calibrate --score``) on the same device: held-out shapes and anchors, two passes
        said, anchors = [], []
        held = keff.measure_held_out(model, info, hw, [p for p in precisions if p[0] in ("int8", "bf16")],
                                     progress=said.append, passes=2, anchors=anchors)
    finally:
        sim.uninstall()
    from roofline.efficiency import score
    scored = score(model, held, anchors)
    # every bf16 held-out shape has a number, within 10% of the device's own (an exact made-up device: interpolation
    # alone errs); int8's M <= 16 are refused and named, its others scored
    assert scored["gemm:bf16"]["held_out"]["not_near"] == 0 and scored["gemm:bf16"]["held_out"]["meets_target"]
    assert scored["gemm:bf16"]["held_out"]["expected"]["worst"] < 0.1, scored["gemm:bf16"]["held_out"]
    int8_said = next(line for line in said if line.startswith("held-out int8:"))
    small = [s for s in keff.HELD_OUT if s[0] <= 16]
    small_grouped = [s for s in keff.GROUPED_HELD_OUT if s[1] <= 16]  # (groups, M, N, K): each expert's M rows
    assert f"{len(small) + len(small_grouped)} not measured" in int8_said and "M > 16" in int8_said, int8_said
    assert scored["gemm:int8"]["held_out"]["expected"]["n"] == len(keff.HELD_OUT) - len(small)
    assert scored["gemm:int8"]["held_out"]["meets_target"], scored["gemm:int8"]["held_out"]
    # the grouped shapes, scored apart: on this exact made-up device (a loop of experts takes its experts' GEMMs'
    # times) the reading at one expert's shape errs only by interpolation
    for key, n in (("grouped_gemm:bf16", len(keff.GROUPED_HELD_OUT)),
                   ("grouped_gemm:int8", len(keff.GROUPED_HELD_OUT) - len(small_grouped))):
        got = scored[key]["held_out"]
        assert got["expected"]["n"] == n and got["not_near"] == 0 and got["expected"]["worst"] < 0.1, (key, got)
    assert scored["gemm:int8"]["drift"]["n"] == keff.ANCHORS and abs(scored["gemm:int8"]["drift"]["mean"]) < 1e-6
    # nothing refused: the sweep plans no shape the kernels' own rules refuse (int8's M <= 16, torch._int_mm's M > 16;
    # fp32 SDPA with grouped KV heads), and its seeds, M line and twins all build
    assert not model.meta["skipped"], model.meta["skipped"]
    assert not any(r["precision"] == "int8" and r["shape"][0] <= 16 for r in rows)
    labels = {r["precision"] for r in rows if r["op"] == "gemm"}
    assert {"int8", "bf16"} <= labels and len(labels) == len(gemm) >= 4, labels
    for prec in labels:
        got = {tuple(r["shape"]) for r in rows if r["op"] == "gemm" and r["precision"] == prec}
        if prec != "int8":
            assert {(m,) + keff.LINE_NK for m in keff.LINE_M} <= got, prec  # its M line
        assert any(keff.twins(a, b) for a in got for b in got), prec   # and a pair at least
    int8_pairs = [(p.shape, r) for _, p, r in keff.align_pairs(model.points("gemm", "int8"))]
    assert any(abs(r + math.log(2.5)) < 0.05 for _, r in int8_pairs), int8_pairs

    def ratio(prec, m, n):
        a, b = (model.expected("gemm", prec, dict(m=m, n=n, k=k)).efficiency for k in (4096, 4224))
        return b / a if a and b else None
    # at shapes no pair measured (M = 48, N = 3584: within an octave of the pairs' M = 32 or 64, between their N),
    # where the made-up device runs K = 4096 2.5x slower than 4224 too; at M = 256 it does not, nor on bf16
    assert any(s["m"] in (32, 64) and abs(r + math.log(2.5)) < 0.05 for s, r in int8_pairs), int8_pairs
    assert ratio("int8", 48, 3584) == pytest.approx(2.5, rel=0.1)
    assert ratio("bf16", 48, 3584) == pytest.approx(1.0, abs=0.1)
    assert ratio("int8", 256, 3584) == pytest.approx(1.0, abs=0.1)


def test_a_full_sweep_tells_a_gemvs_k_from_its_n(monkeypatch):
    """A made-up device whose GEMVs stream better the longer K (each output row's dot product), whatever N (a Zen 4
    host: fp32 GEMVs at 0.44-0.49 of their roof at K = 1024, 0.64-0.65 at 1024x8192). GEMVs at N = K alone cannot
    tell K's effect from N's; a full sweep's seeds off that diagonal (``GEMV_SEED_NK``) let the model expect every
    held-out GEMV (K 2176-6912) within 5% of the device's own (without them: 2800x6912 9% slow, past the grid's K = 8192
    20%)."""
    clean, clock = fake_measure([]), [0.0]

    def by_k(m, n, k):
        return 0.4 + 0.08 * math.log2(k / 1024) if m == 1 else surface(m, n, k)

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        clock[0] += 0.2
        kernel, m = clean(label, kwargs, shape, info, hw, est)
        m.efficiency = by_k(*shape)
        return kernel, m

    model, rows = _fp32_sweep_on_a_fake_clock(monkeypatch, measure, clock, budget_s=1.25 * FULL_S)
    gemvs = [s for s in keff.HELD_OUT if s[0] == 1]
    assert {s[2] for s in gemvs} - {s[1] for s in gemvs}, "the held-out GEMVs' K and N should differ"
    for shape in gemvs:
        got = model.expected("gemv", "fp32", dict(zip("mnk", shape)))
        assert got.efficiency is not None, (shape, got.note)
        assert abs(math.log(got.efficiency / by_k(*shape))) < math.log(1.05), (shape, got.efficiency, by_k(*shape))


def test_a_full_sweeps_registry_seeds_cover_the_gemms_the_registrys_models_run():
    """Issue 21: cover GEMMs from decode through prefill at the shapes of the registry's models. The grid's N and K stop
    at 1024-8192, and with its seeds alone 24 of the registry's GEMMs (decode at batch 1, prefill of 1024 tokens) lay
    past every measured shape on a Zen 4 host: Qwen2.5's and the 70B models' MLPs, the LM heads (N 128k-201k) and the
    MoE routers (N 8-128). ``cover_registry`` adds the fewest cheap shapes that reach them, its ``bridges`` among them
    (a 65536-wide GEMV for every LM head, an N = 32 one for every router): every target it does not leave lies near a
    seed, no seed costs more than a sweep may spend on one call, and it leaves only what no such shape reaches (on a
    slow device the dearest covers)."""
    have = keff.seed_shapes(full=True) + keff.line_shapes()
    near = lambda a, b: keff.octaves_apart(dict(zip("mnk", a)), dict(zip("mnk", b))) <= keff.NEAR_OCTAVES + 1e-9  # noqa: E731
    targets = keff.registry_gemms()
    assert (1, 18944, 3584) in targets and (1024, 8192, 28672) in targets and (1, 128256, 4096) in targets
    assert (1, 8, 4096) in targets and (1, 201088, 2880) in targets  # a router and the widest LM head
    before = [t for t in targets if not any(near(t, h) for h in have)]
    assert len(before) >= 20, before
    for cost, dear in ((lambda c: cost_of(c) / 1000, set()), (lambda c: cost_of(c) / 10, {"prefill"})):
        seeds, left = keff.cover_registry(have, keff.grid_shapes(), cost)
        assert seeds and all(cost(s) <= keff.MAX_CALL_S for s in seeds), seeds
        assert all(s[1] * s[2] <= keff.REGISTRY_MAX_NK for s in seeds), seeds
        assert all(any(near(t, s) for s in seeds + have) for t in targets if t not in left)
        assert not {t for t in left if t[0] == 1}, left  # every GEMV reached: LM heads and routers too
        assert (1, 65536, 2048) in seeds and sum(s[0] == 1 and s[1] < 1024 for s in seeds) == 1, seeds  # one GEMV
        # reaches every LM head (a bridge), one every router
        mlps = [t for t in targets if t[0] == 1 and t[1] in (18944, 28672)]
        assert mlps and all(any(near(t, c) for c in seeds + have if c != (1, 65536, 2048)) for t in mlps)  # and the
        # MLP GEMVs without it: a bridge covers what the grid's shapes leave, never in their place (its build may not
        # fit a CPU path's share, and then both went uncovered)
        assert bool({t for t in left if t[0] > 1}) == ("prefill" in dear), left  # dear prefills only on a slow device
        assert len(seeds) <= 7, seeds
    without = keff.cover_registry(have, keff.grid_shapes(), lambda c: cost_of(c) / 1000,
                                  [t for t in targets if 8192 * 4 < t[1] or t[1] < 1024 / 4])
    assert without[0] and not without[1]  # the heads and routers alone: reached by bridges and the routers' own
    assert not set(without[0]) & set(keff.grid_shapes())  # shapes, none of the grid's


def test_a_full_sweep_has_a_number_for_the_registrys_mlps(monkeypatch):
    """End to end on the made-up device: after a full sweep, Qwen2.5-7B's and a 70B model's MLP GEMMs (decode and a
    1024-token prefill), LM heads of 128k-201k vocabularies and MoE routers get an expected time near the device's own;
    without the registry seeds they are "not measured near"."""
    clean, clock = fake_measure([]), [0.0]

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        clock[0] += 0.2
        return clean(label, kwargs, shape, info, hw, est)

    model, _ = _fp32_sweep_on_a_fake_clock(monkeypatch, measure, clock, budget_s=1.25 * FULL_S)
    for shape in ((1, 18944, 3584), (1, 28672, 8192), (1024, 18944, 3584), (1024, 8192, 28672),
                  (1, 128256, 2048), (1, 201088, 2880), (1, 8, 4096), (1024, 128, 2048)):  # LM heads and routers
        got = model.expected("gemm", "fp32", dict(zip("mnk", shape)))
        assert got.efficiency is not None, (shape, got.note)
        assert abs(math.log(got.efficiency / surface(*shape))) < math.log(1.15), (shape, got.efficiency, surface(*shape))


def test_a_noisy_hosts_re_runs_do_not_crowd_out_the_m_line(monkeypatch):
    """On a host whose first runs a busy moment slows often (a 2-core VM moving +-19% while it swept), ``recheck``
    queues many re-runs; taken before the line, they spent int8's share after its first half, its line never ran, and
    held-out M = 3, 5 and 7 were "not measured near". The line, once offered, runs before them: it is measured whole
    on a made-up device where every other shape's first run reads 1.8x slow (with the re-runs first: 8 of its 15)."""
    clean, clock, seen = fake_measure([]), [0.0], {}

    def measure(label, kwargs, shape, info, hw, est=None, **_):
        clock[0] += 0.2
        seen[shape] = seen.get(shape, 0) + 1
        kernel, m = clean(label, kwargs, shape, info, hw, est)
        if seen[shape] == 1 and len(seen) % 2 == 0 and shape not in keff.line_shapes():
            m.efficiency /= 1.8
        return kernel, m

    model, rows = _fp32_sweep_on_a_fake_clock(monkeypatch, measure, clock, budget_s=1.4 * FULL_S)
    again = sum(r["run"] > 1 for r in rows)
    got = {tuple(r["shape"]) for r in rows}
    assert again >= 5, again  # re-runs were queued
    assert set(keff.line_shapes()) <= got, sorted(set(keff.line_shapes()) - got)


@pytest.mark.parametrize("key", ["h100_sxm", "h200", "gb10", "b200", "a100_sxm", "jetson_orin_nano_super"])
def test_a_full_calibration_sweeps_full_on_every_simulated_device_and_a_quick_one_does_not(key):
    """A path's sweep is full (M line, twins, GEMV and registry seeds, the end's re-runs) where its share of the
    budget reaches ``LINE_MIN_S``. The shares shrink with the paths a device has (B200: seven GEMM paths and three
    attention ones, 8.6 s of a 90 s calibration each): at 11 s (set for a fake clock's needs) the default calibration
    of an H100, H200, GB10 or B200 swept none full. A quick calibration's share stays under it everywhere."""
    from roofline import get_hardware
    from roofline_kernels.measure import hardware_for
    from tests.simulation import Simulation
    sim = Simulation(key).install()
    try:
        info = sim.detect()
        hw = hardware_for(info, sim.calibration(info, get_hardware(sim.key)))
        shares = sum(keff._share(kw) for _, kw in keff.sweep_precisions(info, hw))
    finally:
        sim.uninstall()
    assert keff.FULL_BUDGET_S / shares >= keff.LINE_MIN_S, (key, shares)
    assert keff.QUICK_BUDGET_S / shares < keff.LINE_MIN_S, (key, shares)
    assert keff._Path("g", {"precision": "bf16"}, None, None, keff.FULL_BUDGET_S / shares).full



def test_a_registry_seed_is_priced_by_its_whole_wall_time_and_left_where_it_does_not_fit():
    """The LM heads' bridge builds a weight 8x an 8192 x 2048 GEMV's: on a 2-core CPU building and packing such a
    weight took seconds (int4 weight-only the most) where its calls took milliseconds. Its first run is priced from the
    first run nearest in bytes, scaled by the bytes (never down), and a sweep offers it only where that fits what is
    left."""
    costs = keff._Costs({"precision": "fp32"}, None)
    assert costs.wall((1, 65536, 2048)) == 0.0  # nothing run yet: nothing known
    costs.add_wall((1, 8192, 2048), 0.5)
    ratio = keff._cost({"precision": "fp32"}, (1, 65536, 2048)).bytes / keff._cost({"precision": "fp32"},
                                                                                     (1, 8192, 2048)).bytes
    assert 7.5 < ratio < 8.5 and costs.wall((1, 65536, 2048)) == pytest.approx(0.5 * ratio)
    assert costs.wall((1, 1024, 1024)) == 0.5  # a smaller shape: the fixed part of a run stays

    class Priced:
        def __call__(self, c):
            return 1e-3 if c[1] > 8192 else 2e-3  # the bridge's calls are the cheaper

        def wall(self, c):
            return 0.5 * c[1] / 8192  # its build is not: 4 s against 0.5

    gemv, bridge = (1, 8192, 2048), (1, 65536, 2048)

    def pick(left, measured=(), candidates=(gemv,)):
        return keff.plan_next(EfficiencyModel(), "fp32", "fp32", list(candidates), Priced(), left, set(measured),
                              extra_seeds=[gemv, bridge])
    assert pick(20.0) == gemv  # the cover's order (the grid's shapes before bridges), not the cheaper call first
    # nothing measured near the bridge: it runs again when the sweep ends (``_Path.alone``), so twice its wall
    assert pick(5.0, {gemv}) is None and pick(9.0, {gemv}) == bridge
    assert pick(5.0, {gemv, (1, 32768, 2048)}) == bridge  # a measured shape near it: once


def test_registry_seeds_are_never_the_planners_candidates(monkeypatch):
    """Priced by a call alone, the planner's pick by uncertainty took the bridges (far from every grid shape, the most
    uncertain of all) whatever their build cost, and before the M line was done: registry seeds are offered only as
    ``plan_next``'s extra seeds, where their whole first run is priced."""
    bridge = (1, 65536, 2048)
    monkeypatch.setattr(keff, "cover_registry", lambda *a, **k: ([bridge], []))
    p = keff._Path("fp32", {"precision": "fp32"}, None, None, FULL_S, None)
    assert p.full and p.registry_seeds == [bridge] and bridge not in p.candidates


def test_a_twin_is_priced_by_its_whole_first_run_too():
    """The LM heads' bridge (K = 2048, aligned) wants its twin at K = 2176, a second 65536-wide weight to build: a
    bf16 share on a 2-core CPU spent seconds on it. A twin is measured only where its whole first run fits."""
    class Priced:
        def __init__(self, wall_s):
            self.wall_s = wall_s

        def __call__(self, c):
            return 1e-3

        def wall(self, c):
            return self.wall_s if c[1] > 8192 else 0.01

    twin = (1, 65536, 2176)
    for wall_s, taken in ((1.0, True), (5.0, False)):
        p = keff._Path("fp32", {"precision": "fp32"}, None, None, 0.0, None)
        p.costs, p.precision, p.twins = Priced(wall_s), "fp32", [twin]
        assert (p.next_shape(EfficiencyModel(), None, 2.0) == twin) is taken, wall_s


def _fp32_sweep(monkeypatch, measure, shapes=None):
    """An fp32 sweep of a 1 s budget on a CPU, every run from ``measure`` (the planning's costs made up)."""
    monkeypatch.setattr(keff, "_measure", measure)
    monkeypatch.setattr(keff, "make_gemm", lambda *a, **k: SimpleNamespace(precision=k["precision"]))
    monkeypatch.setattr(keff, "_Costs", _FakeCosts)
    monkeypatch.setattr(keff.telemetry, "snapshot", lambda *a, **k: {"contention": []})
    info = SimpleNamespace(kind="cpu", torch_device="cpu", simulated=None)
    return keff.run_sweep(info, None, shapes=shapes, precisions=[("fp32", {"precision": "fp32"})], budget_s=1.0)


def test_a_sweep_run_whose_cold_rotation_fell_short_is_no_sample(monkeypatch):
    """Where memory kept a shape's cold rotation short of its span, its samples read partly from cache. ``learn``
    already refused such a case, but the sweep added its own to the model, which then expected a colder run faster
    than it is. Now the sweep says why it has no sample there, and its neighbours are planned without it."""
    from roofline_kernels.measure import SHORT_MARK
    calls, clean = [], fake_measure([])
    short = (256, 4096, 4096)

    def measure(label, kwargs, shape, *a, **k):
        calls.append(shape)
        kernel, m = clean(label, kwargs, shape, *a, **k)
        m.cold_note = f"cold by rotation: 3 copies; {SHORT_MARK} (memory budget 12 MiB)" if shape == short else "cold"
        return kernel, m
    model, rows = _fp32_sweep(monkeypatch, measure, shapes=[(1, 4096, 4096), short, (16, 4096, 4096)])
    sampled = {tuple(int(s[a]) for a in "mnk") for s, _ in model.samples[model_key("gemm", "fp32")]}
    assert short in calls and short not in sampled and {(16, 4096, 4096)} <= sampled
    assert model.meta["skipped"]["fp32 256x4096x4096"] == keff.SHORT_NO_SAMPLE
    assert not [r for r in rows if tuple(r["shape"]) == short] and model.meta["measured"] == 2


def test_a_short_rerun_of_a_sampled_shape_keeps_its_sample_and_is_said(monkeypatch):
    """A full (planned) sweep runs its first shapes again at its end (the drift): where that re-run came back short,
    it joins neither the model nor the drift, the shape keeps its first sample, and the skipped list says "again"."""
    from roofline_kernels.measure import SHORT_MARK
    calls, clean, seen = [], fake_measure([]), {}

    def measure(label, kwargs, shape, *a, **k):
        calls.append(shape)
        seen[shape] = seen.get(shape, 0) + 1
        kernel, m = clean(label, kwargs, shape, *a, **k)
        short = shape == calls[0] and seen[shape] > 1  # the first shape measured, on every run after its first
        m.cold_note = f"cold by rotation; {SHORT_MARK} (memory budget 12 MiB)" if short else "cold"
        return kernel, m
    model, rows = _fp32_sweep(monkeypatch, measure)
    first = calls[0]
    assert seen[first] > 1  # it was run again, and came back short
    label = "x".join(map(str, first))
    assert model.meta["skipped"][f"fp32 {label} again"] == keff.SHORT_NO_SAMPLE
    assert [r["run"] for r in rows if tuple(r["shape"]) == first] == [1]
    sampled = [s for s, _ in model.samples[model_key("gemm" if first[0] > 1 else "gemv", "fp32")]
               if tuple(int(s[a]) for a in "mnk") == first]
    assert len(sampled) == 1
