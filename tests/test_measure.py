"""Measurements travel with their context, and the CLI's measure/calibrate commands."""
import io
import json

import pytest

from roofline_kernels.measure import measure_kernel, predict_kernel
from roofline_kernels.ops import make_gemv
from roofline_kernels.timer import sampled_enough
from roofline.__main__ import main

pytestmark = pytest.mark.cpu


def test_a_measurement_carries_its_prediction_and_context(device_info, hardware_entry):
    k = make_gemv(2048, 2048, "fp32")
    m = measure_kernel(k, device_info, hardware_entry, "cold", "calibrated", rep_ms=50)
    d = m.to_dict()
    assert d["prediction"]["bound"] == "memory" and d["peaks"] == "calibrated"
    assert m.efficiency == pytest.approx(m.predicted_time_s / m.timing.median_s)
    assert m.achieved_gbs == pytest.approx(k.cost.bytes / m.timing.median_s / 1e9)
    from roofline_kernels.measure import cache_bytes
    assert d["mode"] == "cold" and d["timing"]["rotation_bytes"] >= 2 * cache_bytes(device_info) or "SHORT" in m.cold_note
    assert sampled_enough(m.timing, 10) and d["SIMULATED"] is False
    assert "cpu" in d["telemetry"] and "region" in d["telemetry"] and isinstance(d["contention"], list)


def test_a_kernel_whose_correctness_check_took_too_long_is_refused_on_that_call(device_info, hardware_entry):
    """``check`` times its call; ``measure_kernel(warm=True)`` hands that to the timer, which refuses a kernel whose
    ``min_reps`` such calls lie well past the case budget without calling it again."""
    from roofline_kernels.timer import BudgetExceeded
    k = make_gemv(256, 256, "fp32")
    assert k.checked_call_s is None
    k.check()
    assert 0 < k.checked_call_s < 1.0
    k.checked_call_s = 30.0  # as a 3 s int8 GEMM's check would leave it, 10 samples against a 20 s budget
    calls, call = [], k.call
    k.call = lambda inputs: (calls.append(1), call(inputs))[1]
    with pytest.raises(BudgetExceeded, match="its correctness check's"):
        measure_kernel(k, device_info, hardware_entry, "cold", "calibrated", rep_ms=10, max_wall_s=20, warm=True,
                       with_telemetry=False)
    assert not calls
    k.checked_call_s = 1e-4  # a short call: timed as ever
    m = measure_kernel(k, device_info, hardware_entry, "cold", "calibrated", rep_ms=10, max_wall_s=20, warm=True,
                       with_telemetry=False)
    assert calls and sampled_enough(m.timing, 10)


def test_a_missing_calibrated_peak_falls_back_to_the_datasheet_with_a_note():
    """A Blackwell profile without an FP4 peak (calibration never measured it) must price FP4, not error."""
    from roofline import Calibration, gemm, get_hardware
    from roofline_kernels.ops import Kernel
    hw = get_hardware("gb10").with_calibration(Calibration("gb10", {"bf16": 50.0}, 230.0))
    k = Kernel("gemm", "nvfp4", "cuda", lambda i: None, {}, lambda: None,
               gemm(4096, 4096, 4096, precision="nvfp4"), "test")
    t, pred, note = predict_kernel(k, hw, "calibrated")
    assert pred["peak_tflops"] == 500 and pred["bandwidth_gbs"] == 230.0 and pred["bound"] == "compute"
    assert "has no measured fp4 peak" in pred["peak_source"] and "NVIDIA" in pred["peak_source"]
    assert t == pytest.approx(max(k.cost.flops / 500e12, k.cost.bytes / 230e9))


def test_an_emulated_kernel_is_held_against_the_memory_roof_only(hardware_entry):
    k = make_gemv(256, 256, "fp8_e4m3")
    t, pred, note = predict_kernel(k, hardware_entry, "calibrated")
    assert pred is None and "memory roof only" in note and t == k.cost.bytes / (hardware_entry.bandwidth_gbs(
        "calibrated") * 1e9)


def run(*argv):
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_cli_measure_json(calibration):
    rc, text = run("measure", "gemv", "--n", "1024", "--k", "1024", "--precision", "bf16", "--rep-ms", "30",
                   "--calibration", calibration.path, "--json")
    d = json.loads(text)
    assert rc == 0
    for key in ("median_s", "p20_s", "p80_s", "count", "achieved_gbs", "achieved_tflops", "predicted_time_s",
                "efficiency"):
        assert d[key] is not None, key
    assert d["p20_s"] <= d["median_s"] <= d["p80_s"]


def test_cli_measure_text_and_attention(calibration):
    rc, text = run("measure", "attention", "--heads", "8", "--kv-heads", "2", "--seq-kv", "512", "--head-dim", "64",
                   "--precision", "fp32", "--mode", "hot", "--rep-ms", "20", "--calibration", calibration.path)
    assert rc == 0 and "efficiency" in text and "hot" in text


@pytest.mark.parametrize("argv, needle", [
    (["measure", "gemv", "--precision", "nvfp4"], "no nvfp4 kernel on cpu"),
    (["measure", "gemv", "--precision", "int4"], "int4_tinygemm"),
    (["measure", "model"], "invalid choice"),
    (["measure", "gemv", "--mode", "warm"], "invalid choice"),
    (["measure", "gemv", "--n", "0"], ">= 1"),
    (["measure", "gemv", "--cuda-graph"], "--cuda-graph needs a CUDA device; this one is cpu"),
])
def test_cli_measure_bad_input(argv, needle, capsys, calibration):
    rc, text = run(*argv, "--calibration", calibration.path)
    err = capsys.readouterr().err
    assert rc == 2 and text == "" and needle in err
    assert len([line for line in err.splitlines() if not line.startswith("[roofline]")]) == 1


def test_cli_calibrate_reads_the_cache(tmp_path, device_info, calibration):
    from roofline_kernels.calibrate import profile_path
    from tests.test_calibrate import quiet
    profile_path(device_info, tmp_path).write_text(json.dumps(quiet(calibration)))
    out_file = tmp_path / "copy.json"
    rc, text = run("calibrate", "--quick", "--cache-dir", str(tmp_path), "--output", str(out_file), "--json")
    assert rc == 0 and json.loads(text)["bandwidth_gbs"] == calibration.bandwidth_gbs
    assert json.loads(out_file.read_text())["peaks_tflops"] == calibration.peaks_tflops
    rc, text = run("calibrate", "--show", "--cache-dir", str(tmp_path))
    assert rc == 0 and "1 profile(s)" in text and str(profile_path(device_info, tmp_path)) in text
    import torch
    threads = calibration.details.get("threads")
    assert threads == torch.get_num_threads()  # the profile is of this thread count (it is in its fingerprint)
    rc, text = run("calibrate", "--quick", "--cache-dir", str(tmp_path))
    assert rc == 0 and f"({device_info.name}, {threads} torch thread" in text.splitlines()[0], text
