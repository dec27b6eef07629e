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
