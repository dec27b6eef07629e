"""`measure`'s hardware options do what they say (issue 20: `_measure_context` used to ignore all five).

``--hardware-file F --hardware KEY`` measures against that entry; ``--power-mode``, ``--gpu-clock-mhz``,
``--mem-clock-mhz`` and ``--active-sms`` state how the device measured runs: each applies where it describes
the device, and is refused with the reason where it cannot. Boards are the simulated ones (tests/simulation.py);
the host CPU is real.
"""
import dataclasses
import io
import json
from pathlib import Path

import pytest

from roofline import gemv, get_hardware, predict
from roofline.__main__ import main

pytestmark = pytest.mark.cpu

FAST = ["--rep-ms", "5", "--warmup-ms", "2"]


def run(*argv):
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def measure_json(*argv):
    rc, text = run("measure", "gemv", "--n", "1024", "--k", "1024", *FAST, "--json", *argv)
    assert rc == 0
    return json.loads(text)


def refused(capsys, *argv) -> str:
    rc, text = run("measure", "gemv", "--n", "1024", "--k", "1024", *FAST, *argv)
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[roofline]")]
    assert rc == 2 and text == "" and len(err) == 1, err
    return err[0]


def test_a_hardware_file_entry_is_measured_against(tmp_path, isolated_registry):
    """Before the fix: 'unknown hardware' (the file was never read). After: the entry's roofs price the case."""
    f = tmp_path / "hw.json"
    f.write_text(json.dumps({"key": "bench_cpu", "kind": "cpu", "bandwidth_gbs": 20.0, "peaks_tflops": {"fp32": 0.5},
                             "native": ["fp32"]}))
    d = measure_json("--precision", "fp32", "--hardware-file", str(f), "--hardware", "bench_cpu",
                     "--peaks", "datasheet", "--cache-dir", str(tmp_path / "store"))
    want = predict(gemv(1024, 1024, precision="fp32"), get_hardware("bench_cpu"))
    assert d["hardware"] == "bench_cpu" and d["peaks"] == "datasheet"
    assert d["predicted_time_s"] == pytest.approx(want.time_s) and d["prediction"]["bandwidth_gbs"] == 20.0


def test_a_hardware_file_for_another_kind_of_device_is_refused_with_the_reason(tmp_path, isolated_registry, capsys):
    f = tmp_path / "hw.json"
    f.write_text(json.dumps({"key": "far_gpu", "kind": "gpu", "bandwidth_gbs": 900, "peaks_tflops": {"fp16": 100}}))
    err = refused(capsys, "--hardware-file", str(f), "--hardware", "far_gpu", "--cache-dir", str(tmp_path))
    assert "far_gpu" in err and "detected as a cpu device" in err


def test_a_profile_store_that_is_a_file_is_refused_before_anything_is_measured(tmp_path, capsys):
    """Before: calibrate measured for a minute, then died at the save with a FileExistsError traceback, and
    --show said the store held 0 profiles."""
    f = tmp_path / "not_a_dir"
    f.write_text("")
    for argv in (("calibrate", "--quick", "--cache-dir", str(f)), ("calibrate", "--show", "--cache-dir", str(f)),
                 ("measure", "gemv", "--n", "1024", "--k", "1024", *FAST, "--hardware", "cpu", "--cache-dir", str(f))):
        rc, text = run(*argv)
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[roofline]")]
        assert rc == 2 and len(err) == 1 and f"profile store {f} is a file, not a directory" in err[0], (argv, err)
    rc, _ = run("calibrate", "--show", "--cache-dir", str(f / "below"))  # nor can a store be made below a file
    err = capsys.readouterr().err
    assert rc == 2 and f"profile store {f / 'below'}: {f} is a file, not a directory" in err, err


def test_pytest_refuses_a_profile_store_that_is_a_file_as_a_usage_error(tmp_path):
    """Not a fixture error with a traceback on every measured test: one usage error before any is collected."""
    import subprocess
    import sys
    f = tmp_path / "not_a_dir"
    f.write_text("")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--co",
                           "--roofline-cache-dir", str(f), "tests/test_judge.py"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR, (proc.returncode, proc.stdout[-500:], proc.stderr[-500:])
    assert f"profile store {f} is a file, not a directory" in proc.stderr, proc.stderr[-800:]


def test_stated_gpu_clocks_scale_the_datasheet_roof_and_the_key_names_them():
    base = measure_json("--precision", "bf16", "--m", "1", "--simulate", "gb10", "--peaks", "datasheet")
    half = measure_json("--precision", "bf16", "--simulate", "gb10", "--gpu-clock-mhz", "1209", "--active-sms", "24")
    assert base["hardware"] == "gb10" and half["hardware"] == "gb10@gpu_clock_mhz=1209.0, active_sms=24"
    assert half["peaks"] == "datasheet"  # the default with stated clocks
    assert half["prediction"]["peak_tflops"] == pytest.approx(base["prediction"]["peak_tflops"] / 4)
    assert half["prediction"]["bandwidth_gbs"] == base["prediction"]["bandwidth_gbs"]
    mem = measure_json("--precision", "fp16", "--simulate", "jetson_orin_nano", "--mem-clock-mhz", "1066.5")
    full = measure_json("--precision", "fp16", "--simulate", "jetson_orin_nano", "--peaks", "datasheet")
    assert mem["prediction"]["bandwidth_gbs"] == pytest.approx(full["prediction"]["bandwidth_gbs"] / 2)
    assert mem["predicted_time_s"] > full["predicted_time_s"]


def test_the_power_mode_the_board_runs_in_applies(capsys):
    d = measure_json("--precision", "fp16", "--simulate", "jetson_orin_nano", "--power-mode", "15W")
    assert d["hardware"] == "jetson_orin_nano@nvpmodel 15W"


@pytest.mark.parametrize("argv, needle", [
    (["--simulate", "jetson_orin_nano", "--power-mode", "7W"], "the board runs in 15W now"),
    (["--simulate", "jetson_orin_nano", "--power-mode", "1"], "the board runs in 15W now"),
    (["--simulate", "jetson_orin_nano", "--power-mode", "bogus"], "unknown power mode 'bogus' for jetson_orin_nano; known"),
    (["--simulate", "gb10", "--power-mode", "15W"], "gb10 has no nvpmodel power modes"),
    (["--power-mode", "15W"], "cpu has no nvpmodel power modes"),
    (["--gpu-clock-mhz", "1000"], "is a CPU; these options scale a GPU's roof"),
    (["--active-sms", "4"], "is a CPU"),
    (["--simulate", "h100_sxm", "--gpu-clock-mhz", "1000"], "h100_sxm has no nominal gpu_clock_mhz"),
    (["--simulate", "gb10", "--active-sms", "96"], "exceeds gb10's 48 SMs"),
    (["--simulate", "gb10", "--active-sms", "24", "--peaks", "calibrated"], "use --peaks datasheet"),
])
def test_an_option_that_cannot_apply_is_refused_with_the_reason(argv, needle, capsys):
    assert needle in refused(capsys, "--precision", "fp16", *argv)


def test_a_stated_power_mode_applies_where_the_board_reports_none(device_info):
    """nvpmodel unreadable (no sudo, masked tool): the mode the user states is the roof's."""
    from roofline_kernels.measure import hardware_for
    board = dataclasses.replace(device_info, hardware_key="jetson_orin_nano", kind="jetson", power_mode=None)
    assert hardware_for(board, power_mode="7W").key == "jetson_orin_nano@nvpmodel 7W"
    assert hardware_for(board).key == "jetson_orin_nano"
    with pytest.raises(ValueError, match="the board runs in MAXN"):
        hardware_for(dataclasses.replace(board, power_mode={"mode": "MAXN"}), power_mode="7W")


def test_calibrate_takes_a_hardware_file(tmp_path, isolated_registry, device_info, calibration, capsys):
    """The profile of a custom entry is filed under its key: calibrate reads the file, then finds the profile."""
    from roofline_kernels.calibrate import profile_path
    from tests.test_calibrate import quiet
    f = tmp_path / "hw.json"
    f.write_text(json.dumps({"key": "bench_cpu", "kind": "cpu", "bandwidth_gbs": 20.0, "peaks_tflops": {"fp32": 0.5}}))
    store = tmp_path / "store"
    store.mkdir()
    profile = dict(quiet(calibration), hardware="bench_cpu")
    profile_path(dataclasses.replace(device_info, hardware_key="bench_cpu"), store).write_text(json.dumps(profile))
    argv = ["calibrate", "--quick", "--efficiency-budget-s", "0", "--hardware", "bench_cpu", "--cache-dir", str(store),
            "--json"]
    assert "bench_cpu" in refused_calibrate(capsys, *argv)
    rc, text = run(*argv, "--hardware-file", str(f))
    assert rc == 0 and json.loads(text)["hardware"] == "bench_cpu"


def refused_calibrate(capsys, *argv) -> str:
    rc, text = run(*argv)
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("[roofline]")]
    assert rc == 2 and text == "" and len(err) == 1, err
    return err[0]


def test_the_target_says_which_roof_applies_and_whether_the_model_learns(calibration, tmp_path):
    """One resolution (roofline_kernels.target): a real device with its profile learns; stated clocks, a simulated
    board or no profile do not (a locked-clock or synthesised time would teach the model a wrong efficiency)."""
    from roofline_kernels.target import resolve_target, simulated_target
    from tests.simulation import Simulation
    real = resolve_target("cpu", calibration=calibration, store=tmp_path)
    assert (real.peaks, real.learns, real.calibration is calibration) == ("calibrated", True, True)
    assert real.info.kind == "cpu" and real.hardware.base_key == "cpu"
    bare = resolve_target("cpu", peaks="datasheet", store=tmp_path)
    assert (bare.peaks, bare.learns, bare.model) == ("datasheet", False, None)
    sim = Simulation("gb10")
    sim.install()
    try:
        board = simulated_target(sim)
        locked = simulated_target(sim, clocks={"gpu_clock_mhz": 1209.0})
    finally:
        sim.uninstall()
    assert (board.peaks, board.learns, board.ceiling.key) == ("calibrated", False, "gb10")
    assert (locked.peaks, locked.learns, locked.clocks_stated) == ("datasheet", False, True)
    assert locked.hardware.key == "gb10@gpu_clock_mhz=1209.0" and locked.hardware.base_key == "gb10"
    with pytest.raises(ValueError, match="unknown clock option"):
        resolve_target("cpu", clocks={"sm_clock": 1})
