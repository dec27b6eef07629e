"""A calibrated roof the efficiency sweep ran faster than is raised, never past what truly bounds the device.

The device here is made up (a GB10 entry whose bf16 calibration ran while the host was slow: 50 TFLOP/s where its
GEMMs reach 60), so the arithmetic is exact; the prediction of every run is the project's own (``roofline.predict``
on the calibrated entry), as ``measure_kernel`` makes it. Seen on a real Zen 4 host: int8 calibrated at 0.76
TFLOP/s while its sweep's GEMMs ran up to 1.12x that, and the model's cap at the roof held their expected time 12%
slow."""
import io
import json
import math
from types import SimpleNamespace

import pytest

import roofline_kernels.efficiency as keff
from roofline import Calibration, gemm, get_hardware, load_calibration, predict
from roofline.efficiency import EfficiencyModel, expected_time, model_of
from roofline_kernels import cli as kcli

SLOW_PEAK, TRUE_PEAK, BANDWIDTH, STREAM = 50.0, 60.0, 230.0, 0.8  # TFLOP/s, TFLOP/s, GB/s, fraction of it
MS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
NKS = ((2048, 2048), (4096, 4096))


def calibration(peaks=None, bandwidth=BANDWIDTH, **kw):
    return Calibration("gb10", dict(peaks or {"bf16": SLOW_PEAK}), bandwidth, timestamp="t0", **kw)


def true_time(cost, peak=TRUE_PEAK, stream=STREAM * BANDWIDTH):
    """The made-up device: a clean roofline at its true peak, streaming at 80% of the calibrated bandwidth."""
    return max(cost.bytes / (stream * 1e9), cost.flops / (peak * 1e12))


def swept(cal, timing=true_time, shapes=None, memory_only=False):
    """(model, rows) as ``run_sweep`` leaves them: every run's prediction on the calibrated entry (``memory_only``:
    held to the memory roof alone, as ``measure_kernel`` holds a software kernel whose peak is no ceiling)."""
    hw = get_hardware("gb10").with_calibration(cal)
    model, rows = EfficiencyModel(), []
    for m, n, k in shapes or [(m, n, k) for m in MS for n, k in NKS]:
        cost = gemm(m, n, k, precision="bf16")
        pred = predict(cost, hw, "calibrated").to_dict()
        roof = pred["t_memory_s"] if memory_only else pred["time_s"]
        t = timing(cost)
        kernel = SimpleNamespace(op="gemv" if m == 1 else "gemm", precision="bf16", cost=cost)
        meas = SimpleNamespace(prediction=pred, predicted_time_s=roof, memory_roof_only=memory_only,
                               efficiency=roof / t, timing=SimpleNamespace(median_s=t, rel_iqr=0.01))
        model.add(kernel.op, "bf16", cost.shape, meas.efficiency, "memory" if memory_only else "full")
        rows.append(keff._row(kernel, meas, (m, n, k), 1))
    return model, rows


def expected_s(model, cal, m, n, k):
    return expected_time(predict(gemm(m, n, k, precision="bf16"), get_hardware("gb10").with_calibration(cal),
                                 "calibrated"), get_hardware("gb10").with_calibration(cal), model)


def test_a_compute_peak_the_sweep_beat_is_raised_and_expected_time_follows_the_device():
    cal = calibration()
    model, rows = swept(cal)
    assert max(r["efficiency"] for r in rows) == pytest.approx(TRUE_PEAK / SLOW_PEAK)  # the defect: beyond the roof
    held = (1536, 3000, 3000)  # compute-bound, between the swept N x K
    measured = true_time(gemm(*held, precision="bf16"))
    capped = expected_s(model, cal, *held)
    assert capped / measured == pytest.approx(TRUE_PEAK / SLOW_PEAK, rel=0.02)  # the cap at the roof held it slow

    new, out = keff.raise_roofs(cal, model, rows)
    assert new.peaks_tflops["bf16"] == pytest.approx(TRUE_PEAK) and new.bandwidth_gbs == BANDWIDTH
    assert cal.peaks_tflops["bf16"] == SLOW_PEAK  # the calibration given is not changed
    said = new.details["raised_by_sweep"]["bf16"]
    assert said["calibrated"] == SLOW_PEAK and said["times"] == pytest.approx(TRUE_PEAK / SLOW_PEAK)
    assert said["shape"].startswith("gemm bf16 ") and out["raised"]["bf16"] == said
    assert max(e for rows_ in model.samples.values() for _, e in rows_) <= 1 + 1e-9
    assert max(r["efficiency"] for r in rows) <= 1 + 1e-9 and model.meta["raised_roofs"] == out["raised"]
    assert expected_s(model, new, *held) == pytest.approx(measured, rel=0.02)
    gemv = (1, 3000, 3000)  # memory-bound: its expected time does not move
    assert expected_s(model, new, *gemv) == pytest.approx(true_time(gemm(*gemv, precision="bf16")), rel=0.02)


def test_the_bandwidth_a_memory_bound_run_beat_is_raised_and_a_compute_peak_it_did_not_is_not():
    cal = calibration(peaks={"bf16": 100.0})  # the GEMMs reach it, no more
    model, rows = swept(cal, lambda c: true_time(c, peak=100.0, stream=1.1 * BANDWIDTH))
    new, out = keff.raise_roofs(cal, model, rows)
    assert set(out["raised"]) == {"bandwidth"} and new.peaks_tflops == {"bf16": 100.0}
    assert new.bandwidth_gbs == pytest.approx(1.1 * BANDWIDTH)
    hw = get_hardware("gb10").with_calibration(cal)
    memory_bound = [s for s, _ in model.samples["gemm:bf16"]
                    if predict(gemm(s["m"], s["n"], s["k"], precision="bf16"), hw, "calibrated").bound == "memory"]
    assert len(memory_bound) > 4 and out["raised"]["bandwidth"]["shape"] in {
        f"gemm bf16 {s['m']}x{s['n']}x{s['k']}" for s in memory_bound}
    assert all(e == pytest.approx(1.0) for s, e in model.samples["gemm:bf16"] if s in memory_bound)


def test_a_run_that_beat_both_roofs_raises_both():
    """A compute-bound run that also read faster than the bandwidth: judged against the roof that bound it alone,
    the bandwidth stayed and GEMMs near the ridge kept efficiencies of 1.15 (a reviewer's case)."""
    cal = calibration()
    shapes = [(m, 4096, 4096) for m in (256, 512, 1024, 2048)]  # every one compute-bound on the calibrated roofs
    hw = get_hardware("gb10").with_calibration(cal)
    assert all(predict(gemm(*s, precision="bf16"), hw, "calibrated").bound == "compute" for s in shapes)
    model, rows = swept(cal, lambda c: true_time(c, stream=1.3 * BANDWIDTH), shapes)
    new, out = keff.raise_roofs(cal, model, rows)
    assert set(out["raised"]) == {"bf16", "bandwidth"}
    assert new.peaks_tflops["bf16"] == pytest.approx(TRUE_PEAK) and new.bandwidth_gbs > 1.1 * BANDWIDTH
    assert max(e for _, e in model.samples["gemm:bf16"]) == pytest.approx(1.0)


def test_a_path_held_to_the_memory_roof_alone_raises_the_bandwidth_never_its_peak():
    """A software kernel's peak is no ceiling (``measure_kernel`` holds it to bytes / bandwidth): its FLOP rate past
    the calibrated peak raises nothing, its byte rate past the bandwidth raises the bandwidth."""
    cal = calibration()
    model, rows = swept(cal, lambda c: true_time(c, stream=1.2 * BANDWIDTH), memory_only=True)
    new, out = keff.raise_roofs(cal, model, rows)
    assert set(out["raised"]) == {"bandwidth"} and new.peaks_tflops == cal.peaks_tflops
    assert max(e for _, e in model.samples["gemm:bf16"]) == pytest.approx(1.0)
    assert all(r["roof_s"] == pytest.approx(r["bytes"] / new.bandwidth_gbs / 1e9) for r in rows)


def test_the_fastest_run_within_the_ceiling_raises_the_roof_and_those_beyond_it_are_said():
    cal = calibration()
    model, rows = swept(cal, lambda c: true_time(c, peak=60.0 if c.shape["m"] >= 2048 else 54.0))
    new, out = keff.raise_roofs(cal, model, rows, ceiling={"bf16": 57.0})
    assert new.peaks_tflops["bf16"] == pytest.approx(54.0)
    assert out["beyond_ceiling"]["bf16"]["rate"] == pytest.approx(60.0) and out["beyond_ceiling"]["bf16"]["runs"] == 2
    assert out["beyond_ceiling"]["bf16"]["shape"].startswith("gemm bf16 2048x")


def test_nothing_beyond_what_truly_bounds_the_device_is_taken_as_a_roof():
    """A run beyond the physical ceiling (the datasheet on a GPU, the ISA and best DRAM shown on a CPU) is a bug to
    explain: said, and the calibration and model stay as they were."""
    cal = calibration()
    model, rows = swept(cal)
    before = {k: list(v) for k, v in model.samples.items()}
    new, out = keff.raise_roofs(cal, model, rows, ceiling={"bf16": 55.0})
    assert new is cal and out["raised"] == {} and out["beyond_ceiling"]["bf16"]["ceiling"] == 55.0
    assert model.samples == before


def test_a_class_the_profile_did_not_calibrate_is_not_raised_and_a_second_raise_keeps_the_first_calibration():
    cal = calibration(peaks={"fp16": SLOW_PEAK})  # bf16 runs at its datasheet stand-in (125): nothing beats it
    model, rows = swept(cal, lambda c: true_time(c, peak=130.0))
    assert max(r["efficiency"] for r in rows) > 1  # beyond the datasheet stand-in, and still not raised
    assert keff.raise_roofs(cal, model, rows) == (cal, {})
    model, rows = swept(cal, lambda c: true_time(c, peak=130.0, stream=1.1 * BANDWIDTH))  # and past the bandwidth
    new, out = keff.raise_roofs(cal, model, rows)
    assert set(out["raised"]) == {"bandwidth"} and new.peaks_tflops == cal.peaks_tflops
    stand_in = get_hardware("gb10").peaks["bf16"].value
    assert all(r["roof_s"] == pytest.approx(max(r["bytes"] / new.bandwidth_gbs / 1e9, r["flops"] / stand_in / 1e12))
               for r in rows)
    first, _ = keff.raise_roofs(calibration(), *swept(calibration(), lambda c: true_time(c, peak=55.0)))
    second, _ = keff.raise_roofs(first, *swept(first))
    assert second.peaks_tflops["bf16"] == pytest.approx(TRUE_PEAK)
    assert second.details["raised_by_sweep"]["bf16"]["calibrated"] == SLOW_PEAK
    assert second.details["raised_by_sweep"]["bf16"]["was"] == pytest.approx(55.0)


def test_the_first_calibration_saves_its_raised_roofs_and_calibrate_shows_them(tmp_path, monkeypatch):
    """``ensure_model`` (the first calibration's sweep) writes the raised roofs into the profile with the model, and
    a sample another process learned meanwhile, held to the old roofs, is not kept (said)."""
    path = tmp_path / "calibration-gb10-x.json"
    cal = Calibration.from_dict(calibration(details={"quick": True}).to_dict(), path=str(path))
    path.write_text(json.dumps(cal.to_dict()))
    learner = EfficiencyModel()
    learner.add("gemm", "bf16", {"m": 64, "n": 1024, "k": 1024}, 0.5)
    keff.write_json_atomic(path, dict(cal.to_dict(), details={"quick": True, "efficiency": dict(
        learner.to_dict(), meta={"calibration": "t0", "learned_only": True})}))  # as learn() writes it
    monkeypatch.setattr(keff, "sweep_precisions", lambda info, hw: [("bf16", {"precision": "bf16"})])
    monkeypatch.setattr(keff, "run_sweep", lambda *a, **k: swept(cal))
    info = SimpleNamespace(kind="cuda", simulated=None)
    said = []
    got = keff.ensure_model(cal, info, get_hardware("gb10").with_calibration(cal), 1.0, said.append)
    saved = load_calibration(path)
    for c in (got, saved):
        assert c.peaks_tflops["bf16"] == pytest.approx(TRUE_PEAK)
        assert c.details["raised_by_sweep"]["bf16"]["calibrated"] == SLOW_PEAK
        samples = model_of(c).samples["gemm:bf16"]
        assert len(samples) == len(MS) * len(NKS) and max(e for _, e in samples) <= 1 + 1e-9
    assert any("raised 50 -> 60 TFLOP/s" in s and "1.20x that roof" in s for s in said), said
    assert any("1 samples learned while the sweep ran" in s for s in said), said
    out = io.StringIO()
    kcli._show_profiles([saved], tmp_path, False, out)
    assert "bf16 60 TFLOP/s (calibrated 50; raised: the efficiency sweep's gemm bf16 " in out.getvalue()
    assert math.isclose(got.bandwidth_gbs, BANDWIDTH)


def test_a_run_whose_rotation_fell_short_raises_no_roof():
    # a rotation memory kept short of 2x the caches read partly from cache: its rate is no evidence of a roof
    cal = calibration(peaks={"bf16": 100.0})
    model, rows = swept(cal, lambda c: true_time(c, peak=100.0, stream=1.1 * BANDWIDTH))
    for r in rows:
        r["short"] = True
    new, out = keff.raise_roofs(cal, model, rows)
    assert out.get("raised", {}) == {} and new.bandwidth_gbs == BANDWIDTH
    short = SimpleNamespace(cold_note="cold by rotation: 2 copies spanning 512 MiB (target 962 MiB = 2x caches); "
                                      "SHORT of target (memory budget 512 MiB): samples may be partly cached",
                            prediction={}, timing=SimpleNamespace(median_s=1e-3, rel_iqr=0.01), predicted_time_s=1e-3,
                            memory_roof_only=False, efficiency=1.0)
    kernel = SimpleNamespace(op="gemv", precision="bf16", cost=gemm(1, 2048, 2048, precision="bf16"))
    assert keff._row(kernel, short, (1, 2048, 2048), 1)["short"] is True


def test_a_sweep_that_finishes_second_keeps_the_first_sweeps_model_and_roofs(tmp_path, monkeypatch):
    """Two processes swept one profile that had no model: the first raised the bandwidth 20 -> 25 and saved; the
    second, which raised nothing, merged the first's samples (held to 25) with its own (held to 20) and wrote the
    bandwidth back to 20 beside a raised_by_sweep saying 25. The first sweep's model and roofs now stand."""
    path = tmp_path / "calibration-gb10-x.json"
    cal = Calibration.from_dict(calibration(peaks={"bf16": 100.0}, details={"quick": True}).to_dict(), path=str(path))
    first, _ = swept(cal, lambda c: true_time(c, peak=100.0, stream=1.1 * BANDWIDTH))
    won, _ = keff.raise_roofs(cal, first, swept(cal, lambda c: true_time(c, peak=100.0, stream=1.1 * BANDWIDTH))[1])
    keff.attach(won, first)
    path.write_text(json.dumps(won.to_dict()))  # the first process's save
    monkeypatch.setattr(keff, "sweep_precisions", lambda info, hw: [("bf16", {"precision": "bf16"})])
    monkeypatch.setattr(keff, "run_sweep", lambda *a, **k: swept(cal, lambda c: true_time(c, peak=100.0)))
    said = []
    got = keff.ensure_model(cal, SimpleNamespace(kind="cuda", simulated=None),
                            get_hardware("gb10").with_calibration(cal), 1.0, said.append)
    saved = load_calibration(path)
    for c in (got, saved):
        assert c.bandwidth_gbs == pytest.approx(won.bandwidth_gbs) and won.bandwidth_gbs > BANDWIDTH
        assert c.details["raised_by_sweep"]["bandwidth"]["rate"] == pytest.approx(c.bandwidth_gbs)
        assert len(model_of(c).samples["gemm:bf16"]) == len(MS) * len(NKS)  # the first sweep's alone
    assert any("finished first" in s for s in said), said
