"""Theory against measurement, per (operator, shape, precision) and hardware family.

- `test_theory_case`: every registry entry with a datasheet, under its family marker, on any machine.
- `test_measured_case`: measures on the family's hardware (skipped elsewhere with what was required
  and what was detected): it may not beat the roof, must reach the tolerance table's efficiency
  floor, and goes into the timing history (pytest-benchmark) and the report.
- `test_precision_ratio`: speedups between precisions of one memory-bound shape follow the bytes.
"""
import dataclasses

import pytest

from kernels.calibrate import dram_bandwidth_now
from kernels.measure import measure_kernel, predict_kernel
from kernels.ops import UnsupportedKernel, make_attention, make_gemm
from roofline import REGISTRY, attention, gemm, predict
from roofline.hardware import hardware_families
from roofline.predict import UnsupportedPathError
from tests.hardware import on_hardware
from tests.validation.cases import RATIO_PAIRS, RATIO_SHAPE, GEMM_PRECISIONS, cases_for
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
    return gemm(case.shape["m"], case.shape["n"], case.shape["k"], **kw)


def theory_params():
    for key in DATASHEET_KEYS:
        family = REGISTRY[key].family
        for case in cases_for(family):
            yield pytest.param(key, case, marks=getattr(pytest.mark, family), id=f"{key}-{case.id}")


@pytest.mark.parametrize("key, case", list(theory_params()))
def test_theory_case(key, case):
    hw = REGISTRY[key]
    try:
        p = predict(theory_cost(case), hw)
    except UnsupportedPathError as e:
        # said so, naming the hardware: never silently priced
        assert hw.key in str(e)
        return
    assert p.bound == case.expected_bound, f"{case.id} on {key}: {p.bound}-bound, the case expects {case.expected_bound}"
    assert p.time_s == max(p.t_memory_s, p.t_compute_s) > 0
    tol = tolerance(hw.family, case.expected_bound, case.precision, "attention" if case.op == "attention" else "")
    assert tol.floor is not None, f"tolerances.toml has no {case.expected_bound} floor for {case.precision} on {hw.family}"


def build_kernel(case, device):
    if case.op == "attention":
        return make_attention(**case.shape, precision=case.precision, device=device)
    return make_gemm(case.shape["m"], case.shape["n"], case.shape["k"], device=device, **case.kwargs)


def measured_params():
    for family in FAMILIES:
        for case in cases_for(family):
            marks = on_hardware(family) + ([pytest.mark.slow] if case.is_slow(family) else [])
            yield pytest.param(family, case, marks=marks, id=f"{family}-{case.id}")


@pytest.fixture(scope="session")
def flusher(device_info):
    """The cold-mode flush for pytest-benchmark's rounds (the same buffer size the timer uses)."""
    import torch
    if device_info.torch_device == "cpu":
        buf = torch.ones(device_info.flush_bytes // 4)
        return lambda: (buf.sum(), None)[1]
    buf = torch.empty(device_info.flush_bytes, dtype=torch.int8, device="cuda")
    return lambda: (buf.zero_(), torch.cuda.synchronize(), None)[2]


def _synced(kernel):
    if kernel.device == "cpu":
        return kernel.fn
    import torch
    return lambda: (kernel.fn(), torch.cuda.synchronize())


@pytest.mark.parametrize("family, case", list(measured_params()))
def test_measured_case(family, case, request, device_info, hardware_entry, calibration, roofline_record, benchmark,
                       flusher):
    note_calibration(request.config, calibration)
    try:
        kernel = build_kernel(case, device_info.torch_device)
    except UnsupportedKernel as e:
        pytest.skip(f"no kernel: {e}")
    rep_ms = 60 if kernel.emulated else 100
    m = measure_kernel(kernel, device_info, hardware_entry, "cold", "calibrated", rep_ms=rep_ms)
    # floors by the case's operator class: its predicted bound can flip near the ridge point with the roof
    tol = tolerance(family, case.expected_bound, case.precision, "attention" if case.op == "attention" else "")
    first_contention = []
    if m.contention and tol.floor is not None and m.efficiency < tol.floor:
        # Measured while something else loaded the machine: measure once more rather than judge the
        # kernel by someone else's load. The bound itself does not move.
        first_contention = m.contention
        m = measure_kernel(kernel, device_info, hardware_entry, "cold", "calibrated", rep_ms=rep_ms)
    try:
        sheet = predict(kernel.cost, hardware_entry, "datasheet")
    except (UnsupportedPathError, ValueError):  # no datasheet bandwidth (CPU) or no native path
        sheet = None
    pred = m.prediction or {}
    roofline_record.update(
        hardware=hardware_entry.key, device=device_info.name, op=case.op, shape=case.name, precision=case.precision,
        path=kernel.path, emulated=kernel.emulated, mode=m.timing.mode, median_s=m.timing.median_s,
        p20_s=m.timing.p20_s, p80_s=m.timing.p80_s, count=m.timing.count, rel_iqr=m.timing.rel_iqr, flops=m.flops,
        bytes=m.bytes, ai=m.flops / m.bytes, bound=pred.get("bound", "memory roof only"),
        operator_class=case.expected_bound,
        compute_class=pred.get("compute_class"), predicted_time_s=m.predicted_time_s, efficiency=m.efficiency,
        predicted_datasheet_s=sheet.time_s if sheet else None,
        efficiency_datasheet=sheet.time_s / m.timing.median_s if sheet else None,
        achieved_gbs=m.achieved_gbs, achieved_tflops=m.achieved_tflops, floor=tol.floor,
        floor_source=tol.floor_source, roof_checked=tol.roof,
        contention=m.contention + [f"re-measured after: {c}" for c in first_contention], note=m.prediction_note,
        calibrated_peak_tflops=pred.get("peak_tflops"), calibrated_bandwidth_gbs=hardware_entry.bandwidth_gbs("calibrated"),
        datasheet_peak_tflops=sheet.peak_tflops if sheet else None,
        datasheet_bandwidth_gbs=sheet.bandwidth_gbs if sheet else None)

    # timing history: device time of the same kernel, cold, with the prediction beside it
    benchmark.extra_info.update({k: roofline_record[k] for k in (
        "hardware", "op", "shape", "precision", "predicted_time_s", "efficiency", "ai", "emulated", "path")})
    # ~0.3 s of rounds (flush included), 5 to 30: cheap kernels get enough samples for a stable median
    rounds = 3 if kernel.emulated else max(5, min(30, int(0.3 / (m.timing.median_s + 0.007))))
    benchmark.pedantic(_synced(kernel), setup=flusher, rounds=rounds, warmup_rounds=1)

    # 1. cannot beat the roof
    roof_s = sheet.time_s if (tol.roof == "datasheet" and sheet) else m.predicted_time_s
    if (m.timing.median_s < roof_s * (1 - tol.beat_epsilon) and tol.roof == "calibrated"
            and case.expected_bound == "memory" and case.op != "attention"):
        # A calibrated DRAM roof drifts with other tenants' traffic, which this VM cannot see: re-measure
        # it now and hold the case to the better of the two. A real excess (caching, bytes) still fails.
        now_gbs = dram_bandwidth_now(device_info)
        if now_gbs > hardware_entry.bandwidth_gbs("calibrated"):
            remeasured = hardware_entry.with_calibration(dataclasses.replace(calibration, bandwidth_gbs=now_gbs))
            roof_s = min(roof_s, predict_kernel(kernel, remeasured, "calibrated")[0])
            roofline_record["note"] = f"roof re-measured now: {now_gbs:.1f} GB/s; " + roofline_record["note"]
    assert m.timing.median_s >= roof_s * (1 - tol.beat_epsilon), (
        f"{case.id}: measured {m.timing.median_s * 1e6:.1f} us beats the {tol.roof} roof {roof_s * 1e6:.1f} us by "
        f"more than {tol.beat_epsilon:.0%}: {m.bytes / 1e6:.1f} MB at {m.achieved_gbs:.1f} GB/s achieved vs "
        f"{hardware_entry.bandwidth_gbs('calibrated'):.1f} GB/s calibrated; {m.flops / 1e9:.2f} GFLOP at "
        f"{m.achieved_tflops:.3g} TFLOP/s vs peak {pred.get('peak_tflops')}. Suspect the byte model, the peaks, "
        f"or cache residency (flush {device_info.flush_bytes >> 20} MiB)" + (
            f"; the calibration itself saw contention ({'; '.join(calibration.details['contention'])}): "
            "rerun with --recalibrate on a quiet machine" if calibration.details.get("contention") else ""))

    if kernel.emulated:
        # No compute roof exists for an emulated path; what is checkable is the memory roof (above) and,
        # for FP8 on a CPU, that it really is emulation-bound: near memory speed would mean a native path.
        if case.precision.startswith("fp8") and device_info.kind == "cpu":
            assert m.efficiency < 0.5, f"{case.id}: 'emulated' FP8 ran at {m.efficiency:.0%} of the memory roof"
            roofline_record["note"] = "EMULATED: compute-bound by software FP8; " + m.prediction_note
        else:
            roofline_record["note"] = "EMULATED: " + m.prediction_note
        return

    # 2. efficiency floor against the calibrated roof
    assert tol.floor is not None, f"tolerances.toml has no floor for {family}/{case.expected_bound}/{case.precision}"
    assert m.efficiency >= tol.floor, (
        f"{case.id}: efficiency {m.efficiency:.1%} of the calibrated roof is under the floor {tol.floor:.0%} "
        f"{tol.floor_source} ({case.expected_bound}-class case, predicted {pred.get('bound')}-bound, {m.achieved_gbs:.1f} GB/s, {m.achieved_tflops:.3g} TFLOP/s; "
        f"datasheet efficiency {roofline_record['efficiency_datasheet'] or float('nan'):.1%}; "
        f"contention: {', '.join(m.contention) or 'none seen'})")


def ratio_params():
    for family in FAMILIES:
        for a, b in RATIO_PAIRS:
            yield pytest.param(family, a, b, marks=on_hardware(family), id=f"{family}-{a}_vs_{b}".replace("/", "_"))


@pytest.mark.parametrize("family, slow_prec, fast_prec", list(ratio_params()))
def test_precision_ratio(family, slow_prec, fast_prec, device_info, hardware_entry):
    kwargs = dict(GEMM_PRECISIONS)
    kernels = []
    for prec in (slow_prec, fast_prec):
        try:
            kernels.append(make_gemm(**RATIO_SHAPE, device=device_info.torch_device, **kwargs[prec]))
        except UnsupportedKernel as e:
            pytest.skip(f"no kernel: {e}")
    # three alternated pairs: drift between the two measurements of a pair is what a ratio must not see
    pairs = [[measure_kernel(k, device_info, hardware_entry, "cold", "calibrated", rep_ms=50, with_telemetry=False)
              for k in kernels] for _ in range(3)]
    a, b = pairs[-1]
    if a.prediction is None or b.prediction is None:
        pytest.skip(f"{slow_prec} or {fast_prec} has no native path on {hardware_entry.key}: no predicted ratio")
    predicted = a.predicted_time_s / b.predicted_time_s
    ratios = sorted(x.timing.median_s / y.timing.median_s for x, y in pairs)
    measured = ratios[1]
    tol = tolerance(family, "memory", fast_prec)  # the bands are per family; bound/precision pick floors only
    assert predicted / tol.ratio_band <= measured <= predicted * tol.ratio_band_upper, (
        f"{fast_prec} vs {slow_prec} on {RATIO_SHAPE}: measured speedup {measured:.2f}x (pairs "
        f"{', '.join(f'{r:.2f}' for r in ratios)}), predicted {predicted:.2f}x (allowed x1/{tol.ratio_band} to "
        f"x{tol.ratio_band_upper}): efficiencies {a.efficiency:.0%} and {b.efficiency:.0%}")
