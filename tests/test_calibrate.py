"""Calibration: sanity of the measured ceilings, the profile format, the per-device cache."""
import json

import pytest

from kernels import calibrate as cal_mod
from kernels.calibrate import load_or_calibrate, profile_path, stream_bandwidth
from roofline import load_calibration

pytestmark = pytest.mark.cpu


def test_dram_bandwidth_sits_between_a_single_core_copy_and_the_cache_bandwidth(calibration, device_info):
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = stream_bandwidth("copy", 4 * device_info.cpu.llc_bytes, rep_ms=60)
    finally:
        torch.set_num_threads(threads)
    cache = max(calibration.cache_bandwidth_gbs[lvl] for lvl in ("L2", "L3") if lvl in calibration.cache_bandwidth_gbs)
    # 10% slack for a shared host: the single-core copy was measured minutes after the profile
    assert single * 0.9 <= calibration.bandwidth_gbs <= cache, (single, calibration.bandwidth_gbs, cache)


def test_profile_has_peaks_versions_and_skips_emulated_paths(calibration):
    assert calibration.hardware == "cpu" and calibration.peaks_tflops["fp32"] > 0
    assert calibration.versions["torch"] and calibration.timestamp and calibration.device["cpu"]["model"]
    skipped = calibration.details["skipped"]
    assert "fp8_e4m3" in skipped and "emulated" in skipped["fp8_e4m3"]
    assert "fp8" not in calibration.peaks_tflops
    # integer and bf16 dot products are faster than fp32 FMAs where the CPU has them
    if "int8" in calibration.peaks_tflops:
        assert calibration.peaks_tflops["int8"] > calibration.peaks_tflops["fp32"]


def test_profile_is_what_roofline_loads(calibration):
    again = load_calibration(calibration.path)
    assert again.peaks_tflops == calibration.peaks_tflops and again.bandwidth_gbs == calibration.bandwidth_gbs


def test_cached_profile_is_reused_and_a_damaged_one_remeasured(tmp_path, device_info, calibration, monkeypatch):
    path = profile_path(device_info, tmp_path)
    path.write_text(json.dumps(calibration.to_dict()))
    monkeypatch.setattr(cal_mod, "calibrate", lambda *a, **k: pytest.fail("re-measured despite a cache"))
    assert load_or_calibrate(device_info, tmp_path, quick=True).bandwidth_gbs == calibration.bandwidth_gbs
    path.write_text("{half a file")
    monkeypatch.setattr(cal_mod, "calibrate", lambda *a, **k: calibration)
    assert load_or_calibrate(device_info, tmp_path, quick=True).path == str(path)
    assert json.loads(path.read_text())["bandwidth_gbs"] == calibration.bandwidth_gbs  # rewritten whole


def test_a_quick_profile_does_not_satisfy_a_full_request(tmp_path, device_info, calibration, monkeypatch):
    assert calibration.details["quick"]
    profile_path(device_info, tmp_path).write_text(json.dumps(calibration.to_dict()))
    calls = []
    monkeypatch.setattr(cal_mod, "calibrate", lambda info, quick, progress: calls.append(quick) or calibration)
    load_or_calibrate(device_info, tmp_path, quick=False)
    assert calls == [False]


def test_calibration_waits_for_a_quiet_machine_and_records_contention(device_info, monkeypatch):
    snaps = iter([["busy CPU: 90%"], [], ["busy CPU: 60%"]])  # busy, then quiet before; busy after
    monkeypatch.setattr(cal_mod.telemetry, "snapshot", lambda kind, busy_interval_s: {"contention": next(snaps)})
    monkeypatch.setattr(cal_mod, "QUIET_WAIT_S", 0.0)
    monkeypatch.setattr(cal_mod, "bandwidth_sweep", lambda info, quick, progress: {
        "dram_gbs": 40.0, "cache_gbs": {}, "sweep": []})
    monkeypatch.setattr(cal_mod, "compute_peaks", lambda info, quick, progress: ({"fp32": 0.2}, {}, []))
    lines = []
    cal = cal_mod.calibrate(device_info, quick=True, progress=lines.append)
    assert cal.details["contention"] == ["after: busy CPU: 60%"]
    assert any("waiting for a quiet machine" in line for line in lines)


def test_a_profile_measured_under_contention_is_not_reused(tmp_path, device_info, calibration, monkeypatch):
    spoiled = calibration.to_dict()
    spoiled["details"] = {**spoiled["details"], "contention": ["before: busy CPU: 80%"]}
    profile_path(device_info, tmp_path).write_text(json.dumps(spoiled))
    calls = []
    monkeypatch.setattr(cal_mod, "calibrate", lambda info, quick, progress: calls.append(1) or calibration)
    load_or_calibrate(device_info, tmp_path, quick=True)
    assert calls == [1]


def test_peaks_take_the_best_of_passes(device_info, monkeypatch):
    results = iter([0.1, 0.3])  # a contended first pass, a clean second one
    monkeypatch.setattr(cal_mod, "COMPUTE_PRECISIONS", ("fp32",))
    monkeypatch.setattr(cal_mod, "_gemm_pass", lambda *a: next(results))
    peaks, skipped, _ = cal_mod.compute_peaks(device_info, quick=True)
    assert peaks == {"fp32": 0.3} and skipped == {}


def test_dram_bandwidth_now_is_a_dram_figure(device_info, calibration):
    now = cal_mod.dram_bandwidth_now(device_info)
    cache = max(calibration.cache_bandwidth_gbs.get(lvl, 0) for lvl in ("L2", "L3"))
    # a DRAM working set (8x LLC): slower than the caches, and within the roof's observed drift
    assert 0.5 * calibration.bandwidth_gbs <= now <= cache, (now, calibration.bandwidth_gbs, cache)
