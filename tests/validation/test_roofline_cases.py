"""Theory against measurement, per (operator, shape, precision) and hardware family.

- `test_theory_case`: every registry entry with a datasheet, under its family marker, on any machine.
- `test_measured_case`: measures on the family's hardware (skipped elsewhere with what was required
  and what was detected): build -> measure -> judge (roofline/judge.py) -> assert. Physics,
  correctness and stored bytes always bind; efficiency binds against sourced floors or this device's
  own baseline. The timing goes into the history (pytest-benchmark) and every record into the report.
- `test_precision_ratio`: speedups between precisions of one memory-bound shape follow the bytes
  (enforced where the family's paths reach their roofs; reported elsewhere).
"""
import dataclasses
import datetime as dt
import itertools
import statistics
import time

import pytest

from roofline_kernels import telemetry
from roofline_kernels.calibrate import dram_bandwidth_now
from roofline_kernels.ceiling import dram_settled, offer_dram, remeasure_span
from roofline_kernels.measure import cold_rotation, measure_kernel, predict_kernel
from roofline_kernels.ops import UnsupportedKernel, make_attention, make_gemm, make_grouped_gemm
from roofline_kernels.timer import BudgetExceeded
from roofline import REGISTRY, attention, gemm, get_format, predict
from roofline.hardware import hardware_families
from roofline.moe import grouped_gemm
from roofline.efficiency import model_of
from roofline_kernels.efficiency import device_spread, learn
from roofline.reports.runs import MEMORY_ONLY
from roofline.judge import (REPRODUCE_PAUSES_S, Evidence, Observation, judge_measurement, ratio, untimed_checks,
                            untimed_regression)
from roofline.regress import Run, acceptable, compare, thin
from roofline.predict import UnsupportedPathError
from tests.hardware import on_hardware
from tests.validation.cases import (RATIO_NOT_AT_ROOF_ON_CUDA, RATIO_PAIRS, RATIO_SHAPE, GEMM_PRECISIONS, cases_for,
                                    user_cases)
from tests.validation.report import note_calibration
from tests.validation.tolerances import tolerance

FAMILIES = sorted(hardware_families())
DATASHEET_KEYS = [k for k, hw in REGISTRY.items() if hw.peaks and hw.bandwidth]


def theory_cost(case):
    if case.op == "attention":
        s = case.shape
        return attention(s["batch"], s["heads"], s["kv_heads"], s["seq_q"], s["seq_kv"], s["head_dim"],
                         precision=case.precision, causal=s["seq_q"] > 1)
    kw = dict(case.kwargs)
    if "precision" in kw:
        kw["weight"] = kw["act"] = kw.pop("precision")
    if case.op == "grouped_gemm":
        return grouped_gemm(case.shape["groups"], case.shape["m"], case.shape["n"], case.shape["k"], **kw)
    return gemm(case.shape["m"], case.shape["n"], case.shape["k"], **kw)


def theory_params(extra=()):
    for key in DATASHEET_KEYS:
        family = REGISTRY[key].family
        for case in cases_for(family, extra):
            yield pytest.param(key, case, marks=getattr(pytest.mark, family), id=f"{key}-{case.id}")


def pytest_generate_tests(metafunc):
    """The cases, plus every precision of each ``--shape OP:DIMS`` on the command line (the user's own layers)."""
    extra = user_cases(metafunc.config.getoption("--shape", None))
    if metafunc.definition.name == "test_theory_case":
        metafunc.parametrize("key, case", list(theory_params(extra)))
    elif metafunc.definition.name == "test_measured_case":
        metafunc.parametrize("family, case", list(measured_params(extra)))


def test_theory_case(key, case):
    hw = REGISTRY[key]
    try:
        p = predict(theory_cost(case), hw)
    except UnsupportedPathError as e:
        # said so, naming the hardware: never silently priced
        assert hw.key in str(e)
        return
    if case.expected_bound is not None:  # a --shape case has none: its bound is what this hardware's roof says
        assert p.bound == case.expected_bound, f"{case.id} on {key}: {p.bound}-bound, the case expects {case.expected_bound}"
    assert p.time_s == max(p.t_memory_s, p.t_compute_s) > 0
    bound = case.expected_bound or p.bound
    tol = tolerance(hw.family, bound, case.precision, case.op if case.op in ("attention", "grouped_gemm") else "")
    assert tol.floor is not None or tol.reported, f"tolerances.toml has no {bound} floor for {case.precision} on {hw.family}"


def build_kernel(case, device_info):
    """The case's kernel on the device under test: CUDA's paths with CPU tensors on a simulated GPU."""
    target = "cpu" if device_info.kind == "cpu" else "cuda"
    if case.op == "attention":
        return make_attention(**case.shape, precision=case.precision, device=device_info.torch_device, target=target)
    if case.op == "grouped_gemm":
        return make_grouped_gemm(case.shape["groups"], case.shape["m"], case.shape["n"], case.shape["k"],
                                 device=device_info.torch_device, target=target, **case.kwargs)
    return make_gemm(case.shape["m"], case.shape["n"], case.shape["k"], device=device_info.torch_device,
                     target=target, **case.kwargs)


def measured_params(extra=()):
    for family in FAMILIES:
        for case in cases_for(family, extra):
            marks = on_hardware(family) + ([pytest.mark.slow] if case.is_slow(family) else [])
            yield pytest.param(family, case, marks=marks, id=f"{family}-{case.id}")


EMULATED_FLOP_LIMIT = 1e8  # software FP8/FP16 runs at MFLOP/s rates: beyond this a call takes seconds


def _kernel_or_skip(case, device_info, run_slow, sim):
    try:
        kernel = sim_probe(case, device_info) if sim else build_kernel(case, device_info)
    except UnsupportedKernel as e:
        pytest.skip(f"no kernel: {e}")
    if kernel.emulated and kernel.cost.flops > EMULATED_FLOP_LIMIT and not run_slow:
        pytest.skip(f"emulated path ({kernel.path}): {kernel.cost.flops / 1e9:.2g} GFLOP in software; "
                    "run with --run-slow")
    return sim.wrap_kernel(kernel) if sim else kernel


def untimed_or_skip(why, checks):
    """A case too slow to time here is skipped, unless a check no timing enters failed: a wrong result or a
    mis-stored weight fails the case whatever its speed."""
    failed = [c for c in checks if c.enforced and not c.ok]
    if failed:
        pytest.fail("; ".join(f"{c.name}: {c.reason}" for c in failed) + f" (not timed: {why})")
    passed = [c.name for c in checks if c.enforced]
    pytest.skip(f"over the per-case budget on this device: {why}; raise --case-budget-s to measure it"
                + (f" (untimed checks passed: {', '.join(passed)})" if passed else ""))


def sim_probe(case, device_info):
    from tests.simulation import probe_kernel
    return probe_kernel(build_kernel, case, device_info)


def _check_result(kernel):
    """(error, why not, checked): the kernel's output against its reference, before any timing."""
    if kernel.note.startswith("not probed"):
        return None, kernel.note, False
    try:
        return kernel.check(), "", True
    except AssertionError as e:
        return None, str(e), True


@dataclasses.dataclass(frozen=True)
class Ceiling:
    """What physics holds a case to: a number that truly bounds it (roofline_kernels/ceiling.py), or none."""
    time_s: float | None  # None: no ceiling known here (a CPU before any DRAM look): physics is reported only
    label: str
    remeasurable: bool    # a CPU's DRAM ceiling is the best shown so far: beaten, DRAM is measured again


def ceiling_of(kernel, ceiling_hw, device_info, simulated, settled=True) -> Ceiling:
    if ceiling_hw is None:
        return Ceiling(None, "no ceiling yet (a CPU's DRAM ceiling starts with its first calibration)", False)
    t, pred, note = predict_kernel(kernel, ceiling_hw, "datasheet")
    bound = pred["bound"] if pred else "memory"
    if device_info.kind != "cpu":
        return Ceiling(t, f"datasheet roof ({ceiling_hw.key})", False)
    if bound == "memory":
        spec = ceiling_hw.bandwidth
        if not settled:  # every look so far saw a neighbour: the figure may be theirs, not a ceiling (reported)
            return Ceiling(None, f"unsettled memory ceiling (DRAM {spec.value:.1f} GB/s: every look so far was taken "
                           "under contention)", False)
        how = f"DRAM {spec.value:.1f} GB/s, {spec.note}"
    else:
        spec = ceiling_hw.peaks[pred["compute_class"]]
        how = f"{pred['compute_class']} {spec.value:.3g} TFLOP/s = {spec.note}"
    return Ceiling(t, f"CPU ceiling ({bound}: {how})", bound == "memory" and not simulated)


def test_measured_case(family, case, request, suite, device_info, hardware_entry, calibration, roofline_record,
                       history_book, ceiling_entry, profile_store):
    note_calibration(request.config, calibration)
    sim = suite.simulation
    kernel = _kernel_or_skip(case, device_info, request.config.getoption("--run-slow"), sim)
    error, error_note, checked = _check_result(kernel)  # a wrong result fails whatever its speed: checked first
    try:
        sheet = predict(kernel.cost, hardware_entry, "datasheet")
    except (UnsupportedPathError, ValueError):  # no datasheet bandwidth (CPU) or no native path
        sheet = None
    budget = request.config.getoption("--case-budget-s")
    timer = sim.timer if sim else None

    _, pred0, _ = predict_kernel(kernel, hardware_entry, "calibrated")
    # a --shape case has no expected bound: the roof this device is held to decides it (the floors are per bound)
    bound = case.expected_bound or (sheet.bound if sheet else (pred0 or {}).get("bound", "memory"))
    tol = tolerance(family, bound, case.precision, case.op if case.op in ("attention", "grouped_gemm") else "")
    settled = sim is not None or device_info.kind != "cpu" or dram_settled(device_info, profile_store)
    ceiling = ceiling_of(kernel, ceiling_entry, device_info, bool(sim), settled)
    last = {}

    def measure():
        m = measure_kernel(kernel, device_info, hardware_entry, "cold", "calibrated", rep_ms=60 if kernel.emulated
                           else 100, max_wall_s=budget, timer=timer, warm=checked,  # the check ran it once
                           model=model_of(calibration))
        last["m"] = m
        return Observation(m.timing.median_s, m.timing.p20_s, ceiling.time_s or m.predicted_time_s,
                           tuple(m.contention), m.predicted_time_s, m.timing.samples_s, m.timing.count)

    def dram_now():  # the best shown so far may be understated: read this case's cold span now, raise it if beaten
        before = ceiling_entry.bandwidth.value
        span = remeasure_span(device_info, last["m"].timing.rotation_bytes)
        if span is None:  # a rotation memory kept short: partly cached, no evidence the ceiling is understated
            return 1.0
        busy = bool(telemetry.snapshot(device_info.kind, busy_interval_s=0.1, info=device_info)["contention"])
        hist = offer_dram(device_info, profile_store, dram_bandwidth_now(device_info, nbytes=span, traffic=True),
                          f"re-measured by {case.id} over its {span / 2**20:.0f} MiB cold span", busy)
        return hist["best_gbs"] / before

    w_fmt = kernel.cost.weight_format
    charged = get_format(w_fmt).bits_per_element if kernel.weight_elements else 0.0
    ref = None if sim else history_book.reference(case.id, device_spread(calibration, kernel))
    evidence = Evidence(floor=tol.floor, floor_source=tol.floor_source, reference=ref,
                        reference_source=f"this device's history ({hardware_entry.key})")
    try:
        verdict, obs = judge_measurement(
            measure, error=error, error_note=error_note, error_checked=checked,
            stored_bits=kernel.weight_bits_per_element(),
            charged_bits=charged, fmt=w_fmt or "",
            roof_noise=0.0 if ceiling.time_s else None, roof_label=ceiling.label, evidence=evidence,
            check_efficiency=not kernel.emulated, roof_now=dram_now if ceiling.remeasurable else None)
    except BudgetExceeded as e:
        checks = untimed_checks(error, error_note, checked, kernel.weight_bits_per_element(), charged, w_fmt or "")
        if ref is not None and e.estimate_s:  # a history judges it still: the refusal's call and one more, and as
            # a timed case's regression must, one after each reproduce pause until a call shows it is not one
            calls = [e.estimate_s, _one_call_s(kernel, device_info)]
            reg = untimed_regression(calls, ref)
            for wait in REPRODUCE_PAUSES_S:
                if reg.ok:
                    break
                time.sleep(wait)
                calls.append(_one_call_s(kernel, device_info))
                reg = untimed_regression(calls, ref)
            checks.append(reg)
        untimed_or_skip(e, checks)
    m = last["m"]
    pred = m.prediction or {}
    roofline_record.update(
        SIMULATED=bool(sim), hardware=hardware_entry.key, device=device_info.name, op=case.op, shape=case.name,
        precision=case.precision, path=kernel.path, emulated=kernel.emulated, mode=m.timing.mode,
        median_s=m.timing.median_s, p20_s=m.timing.p20_s, p80_s=m.timing.p80_s, count=m.timing.count,
        rel_iqr=m.timing.rel_iqr, flops=m.flops, bytes=m.bytes, ai=m.flops / m.bytes,
        bound=MEMORY_ONLY if m.memory_roof_only else pred.get("bound"), operator_class=bound,
        compute_class=pred.get("compute_class"), predicted_time_s=m.predicted_time_s, efficiency=m.efficiency,
        expected_time_s=m.expected_time_s, expected_efficiency=m.expected_efficiency,
        expected_source=m.expected_source, expected_note=m.expected_note,
        expected_uncertainty=m.expected_uncertainty,
        predicted_datasheet_s=sheet.time_s if sheet else None,
        efficiency_datasheet=sheet.time_s / m.timing.median_s if sheet else None,
        achieved_gbs=m.achieved_gbs, achieved_tflops=m.achieved_tflops,
        floor=evidence.bar[0] if evidence.bar else None, floor_source=evidence.bar[1] if evidence.bar else
        "none (no sourced floor for this family)", contention=list(obs.contention),
        ceiling_s=ceiling.time_s, ceiling=ceiling.label,
        score_median=statistics.median(obs.scores) if obs.scores else None, scores=thin(list(obs.scores)),
        history_runs=ref.runs if ref else 0, detectable_slowdown=ref.detectable if ref else None,
        note="; ".join(x for x in (m.prediction_note, kernel.note, m.cold_note, *verdict.notes) if x),
        verdict=verdict.to_dict(), correctness_error=error, stored_bits=kernel.weight_bits_per_element(),
        energy_j=m.telemetry.get("region", {}).get("energy_per_call_j"),
        energy_source=m.telemetry.get("region", {}).get("energy_source"),
        settings=m.telemetry.get("region", {}).get("settings") or [],
        calibrated_peak_tflops=pred.get("peak_tflops"),
        calibrated_bandwidth_gbs=hardware_entry.bandwidth_gbs("calibrated"),
        datasheet_peak_tflops=sheet.peak_tflops if sheet else None,
        datasheet_bandwidth_gbs=sheet.bandwidth_gbs if sheet else None)
    if kernel.emulated:
        roofline_record["note"] = "EMULATED: " + roofline_record["note"]

    if not sim:
        # what this device remembers (its efficiency model, its timing history) takes a run only where the history
        # would: not one that failed its verdict, ran under contention or lay slower than the band. The model grows
        # with use, and a failing run it learned moved every later expected time toward the defect (a planted 2x
        # int8 kernel, learned once: the next healthy run's expected time of the 1x11008x4096 GEMV rose from 1.50 to
        # 2.22 ms, its measured 1.64 ms now "faster than expected")
        comparison = compare(list(obs.scores), ref) if ref and len(obs.scores) >= 2 else None
        ok, why = acceptable(comparison, bool(obs.contention), verdict.passed)
        roofline_record["efficiency_model"] = (learn(calibration, kernel, m, device_info) or "added") if ok else why
        # timing history: device time of the same kernel, cold (rotating copies), with the prediction beside it;
        # asked for only here, so a simulated run never touches a history
        benchmark = request.getfixturevalue("benchmark")
        benchmark.extra_info.update({k: roofline_record[k] for k in (
            "hardware", "op", "shape", "precision", "predicted_time_s", "efficiency", "ai", "emulated", "path")})
        rounds = max(3, min(30, int(0.3 / m.timing.median_s)))  # ~0.3 s of history, 3 rounds at least
        copies, _, _ = cold_rotation(kernel, device_info)  # the same cold samples as the measurement
        cycle = itertools.cycle([_synced(f, device_info) for f in copies])
        benchmark.pedantic(lambda f: f(), setup=lambda: ((next(cycle),), {}), rounds=rounds,
                           warmup_rounds=0 if m.timing.median_s > 0.05 else 1)
        if not kernel.emulated and len(obs.scores) >= 2:
            if ok:
                history_book.add(case.id, Run(statistics.median(obs.scores), tuple(thin(list(obs.scores))),
                                              dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                              obs.median_s))
            else:
                roofline_record["note"] += f"; not added to this device's history: {why}"

    if kernel.emulated and case.precision.startswith("fp8") and device_info.kind == "cpu":
        # no compute roof exists for software FP8; what is checkable beyond the memory roof is that it really
        # is emulation-bound: near memory speed would mean a native path behind the "emulated" label
        assert m.efficiency < 0.5, f"{case.id}: 'emulated' FP8 ran at {m.efficiency:.0%} of the memory roof"
    assert verdict.passed, f"{case.id} on {hardware_entry.key}: {verdict.message()}"


def _one_call_s(kernel, device_info) -> float:
    """One call of the kernel, timed on the wall clock (synchronized on a GPU): what a case over the budget shows."""
    call = _synced(kernel.fn, device_info)
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def _synced(fn, device_info):
    if device_info.torch_device == "cpu":
        return fn
    import torch
    return lambda: (fn(), torch.cuda.synchronize())


def ratio_params():
    for family in FAMILIES:
        for a, b in RATIO_PAIRS:
            yield pytest.param(family, a, b, marks=on_hardware(family), id=f"{family}-{a}_vs_{b}".replace("/", "_"))


@pytest.mark.parametrize("family, slow_prec, fast_prec", list(ratio_params()))
def test_precision_ratio(family, slow_prec, fast_prec, suite, device_info, hardware_entry, request):
    sim = suite.simulation
    kwargs = dict(GEMM_PRECISIONS)
    target = "cpu" if device_info.kind == "cpu" else "cuda"
    kernels = []
    for prec in (slow_prec, fast_prec):
        try:
            if sim:
                from tests.validation.cases import Case
                kernels.append(sim_probe(Case("gemv", "ratio", RATIO_SHAPE, prec, kwargs[prec], "memory"), device_info))
            else:
                kernels.append(make_gemm(**RATIO_SHAPE, device=device_info.torch_device, target=target, **kwargs[prec]))
        except UnsupportedKernel as e:
            pytest.skip(f"no kernel: {e}")
    # three alternated pairs: drift between the two measurements of a pair is what a ratio must not see
    budget = request.config.getoption("--case-budget-s") / 6
    try:
        pairs = [[measure_kernel(k, device_info, hardware_entry, "cold", "calibrated", rep_ms=50, with_telemetry=False,
                                 max_wall_s=budget, timer=sim.timer if sim else None) for k in kernels]
                 for _ in range(3)]
    except BudgetExceeded as e:
        pytest.skip(f"over the per-case budget on this device: {e}")
    a, b = pairs[-1]
    if a.prediction is None or b.prediction is None:
        pytest.skip(f"{slow_prec} or {fast_prec} has no native path on {hardware_entry.key}: no predicted ratio")
    predicted = a.predicted_time_s / b.predicted_time_s
    ratios = sorted(x.timing.median_s / y.timing.median_s for x, y in pairs)
    tol = tolerance(family, "memory", fast_prec)  # the bands are per family; bound/precision pick floors only
    not_at_roof = RATIO_NOT_AT_ROOF_ON_CUDA.get((slow_prec, fast_prec)) if target == "cuda" else None
    check = ratio(ratios[1], predicted, tol.ratio_band, tol.ratio_band_upper, tol.ratio_enforced and not not_at_roof,
                  not_at_roof or f"{family} paths are not expected at their roofs (tolerances.toml ratio_enforced)")
    detail = (f"{fast_prec} vs {slow_prec} on {RATIO_SHAPE}: {check.reason} (pairs "
              f"{', '.join(f'{r:.2f}' for r in ratios)}; efficiencies {a.efficiency:.0%} and {b.efficiency:.0%})")
    if not check.enforced:
        pytest.skip(f"reported, not enforced: {detail}")
    assert check.ok, detail
