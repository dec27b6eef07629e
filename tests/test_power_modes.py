"""The power-mode sweep: switching a (fake) Jetson's nvpmodel mode, refusing without permission, settling,
always restoring (a failure, Ctrl-C), and the per-mode report; then the sweep as users run it, under
``--simulate jetson_orin_nano_super``, in a subprocess.

The board is tests/fakes/jetson.py's: a sysfs tree and an ``nvpmodel`` that rewrites it on ``-m ID``, behind a
fake ``sudo``. Nothing here touches a real board.
"""
import json
import subprocess
import sys
import xml.dom.minidom
from pathlib import Path

import pytest

from roofline import REGISTRY
from roofline_kernels.power_modes import PowerModeError, PowerModeRefused, PowerModes, conf_ids
from tests.fakes.host import write
from tests.fakes.jetson import (install_fake_sudo, install_switchable_nvpmodel, make_jetson_tree, mode_rails,
                                nvpmodel_calls, path_with)
from tests.validation.power_report import fit_modes, mode_rows, power_svg

ROOT = Path(__file__).resolve().parents[1]
SUPER = "jetson_orin_nano_super"  # boots in 25W (id 1); 15W is id 0: EMC 2133 MHz, GPU 612 MHz
GPU_MAX = "sys/class/devfreq/17000000.gpu/max_freq"


@pytest.fixture
def board(tmp_path, monkeypatch):
    def make(behaviour="ok", sudo=True):
        make_jetson_tree(tmp_path, SUPER, mode="25W")
        install_switchable_nvpmodel(tmp_path / "bin", tmp_path, SUPER, "25W", behaviour=behaviour)
        install_fake_sudo(tmp_path / "bin", allow=sudo)
        monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
        return tmp_path
    return make


def controller(root, allow=True, **kw):
    return PowerModes(SUPER, root, allow_change=allow, poll_s=0.001, idle_s=0.0, is_root=False, **kw)


def gpu_max_mhz(root) -> float:
    return int((root / GPU_MAX).read_text()) / 1e6


def changes(root) -> list[str]:
    return [c for c in nvpmodel_calls(root) if c.startswith("-m")]


def test_a_change_without_permission_is_refused_and_nothing_runs(board):
    root = board()
    ctl = controller(root, allow=False)
    with pytest.raises(PowerModeRefused, match="from 25W to 15W: .* pass --allow-power-mode-change"):
        ctl.check_allowed(["15W", "25W"])
    with pytest.raises(PowerModeRefused, match="needs --allow-power-mode-change"):
        ctl.switch("15W")
    assert changes(root) == [] and ctl.query()["mode"] == "25W" and gpu_max_mhz(root) == 918


def test_the_current_mode_needs_no_permission(board):
    root = board()
    ctl = controller(root, allow=False)
    ctl.check_allowed(["25W", 1])
    s = ctl.switch("25W")
    assert not s.changed and changes(root) == [] and ctl.restore() == "power mode never changed"


def test_a_switch_sets_the_mode_waits_for_its_caps_and_reads_its_idle_draw(board):
    root = board()
    ctl = controller(root)
    s = ctl.switch("15W")
    assert changes(root) == ["-m 0"] and ctl.query() == {"mode": "15W", "id": 0}
    assert s.changed and s.evidence["read"]["gpu_max_mhz"] == 612 and s.evidence["read"]["emc_cap_mhz"] == 2133
    _, mv, ma = mode_rails(SUPER, "15W")[0]  # VDD_IN
    assert s.idle_w == pytest.approx(mv * ma / 1e6)


@pytest.mark.parametrize("planted", [RuntimeError("a case failed"), KeyboardInterrupt()])
def test_the_original_mode_is_restored_whatever_the_body_raises(board, planted):
    root = board()
    with pytest.raises(type(planted)):
        with controller(root) as ctl:
            ctl.switch("15W")
            assert gpu_max_mhz(root) == 612
            raise planted
    assert changes(root) == ["-m 0", "-m 1"] and ctl.query()["mode"] == "25W" and gpu_max_mhz(root) == 918
    assert ctl.restored == "power mode restored to 25W (id 1)"
    ctl.restore()  # idempotent: no second change
    assert changes(root) == ["-m 0", "-m 1"]


def test_a_board_started_in_a_custom_mode_is_restored_to_it_by_its_own_id(tmp_path, monkeypatch):
    """A mode a user added to /etc/nvpmodel.conf is in no registry: restore uses the id the board reported
    (resolving the name would refuse it) and does not wait for caps nobody knows."""
    from tests.fakes.jetson import STATUS_FILE
    make_jetson_tree(tmp_path, SUPER, mode="25W")
    install_switchable_nvpmodel(tmp_path / "bin", tmp_path, SUPER, "25W", custom={9: "MY_12W"})
    write(tmp_path, STATUS_FILE, "pmode:0009 fmode:quiet\n")
    install_fake_sudo(tmp_path / "bin", allow=True)
    monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
    with controller(tmp_path) as ctl:
        assert ctl.query() == {"mode": "MY_12W", "id": 9}
        ctl.switch("15W")
    assert changes(tmp_path)[-1] == "-m 9" and ctl.query()["mode"] == "MY_12W"
    assert ctl.restored == "power mode restored to MY_12W (id 9)"


def test_sudo_that_wants_a_password_is_a_clear_error_and_nothing_changed(board):
    root = board(sudo=False)
    with pytest.raises(PowerModeError, match=r"`sudo -n nvpmodel -m 0` failed \(exit 1\): sudo: a password is required"
                                             r"; allow it without a password \(sudoers"):
        controller(root).switch("15W")
    assert gpu_max_mhz(root) == 918


def test_a_mode_the_board_does_not_take_is_caught(board):
    root = board("ignore")
    with pytest.raises(PowerModeError, match="returned but the board still reports 25W, not 15W"):
        controller(root).switch("15W")


def test_clocks_that_never_settle_time_out_naming_what_was_read_and_the_mode_is_still_restored(board):
    root = board("no-settle")
    with pytest.raises(PowerModeError, match=r"did not settle in 15W within 0.05 s: read GPU max 918.0 MHz, EMC cap "
                                             r"None MHz.*expected GPU max 612 MHz, EMC cap 2133 MHz"):
        with controller(root, settle_timeout_s=0.05) as ctl:
            ctl.switch("15W")
    assert ctl.query()["mode"] == "25W" and changes(root) == ["-m 0", "-m 1"]


def test_a_failed_change_leaves_nothing_to_restore(board):
    root = board("fail")
    with pytest.raises(PowerModeError, match="NVPM ERROR: failed to set power mode 0"):
        with controller(root) as ctl:
            ctl.switch("15W")
    assert ctl.restored == "power mode never changed" and changes(root) == ["-m 0"]


def test_mode_ids_are_the_boards_own_and_unknown_modes_name_the_known(board):
    root = board()
    assert conf_ids("< POWER_MODEL ID=5 NAME=15W >\n< POWER_MODEL NAME=MAXN_SUPER ID=7 >") == {"15W": 5,
                                                                                                "MAXN_SUPER": 7}
    write(root, "etc/nvpmodel.conf", "< POWER_MODEL ID=5 NAME=15W >\n")
    assert controller(root).resolve("15W") == ("15W", 5) and controller(root).resolve(1) == ("25W", 1)
    with pytest.raises(ValueError, match=r"unknown power mode '7W' for jetson_orin_nano_super; known: 15W \(0\)"):
        controller(root).resolve("7W")


# --- the report (pure parts) -----------------------------------------------------------------------

GEMV_BYTES = 2 * 4096 * 4096 + 2 * 4096 * 2  # fp16 weights, input and output vectors
GEMV_FLOPS = 2 * 4096 * 4096
SUPER_GBS = {"15W": 102 * 2133 / 3199, "25W": 102.0}  # 102 GB/s at EMC 3199 MHz; 15W caps EMC at 2133 MHz


def _record(mode, median_s, energy_j):
    """A GEMV 4096x4096 fp16 case as test_measured_case records it, in ``mode``: its bytes, FLOPs and memory-bound
    roof worked by hand (hardware.md: 102 GB/s; the modes' EMC caps), not by the predictor under test."""
    return {"power_mode": mode, "hardware": f"{SUPER}@nvpmodel {mode}", "op": "gemv", "shape": "1x4096x4096",
            "precision": "fp16", "median_s": median_s, "predicted_datasheet_s": GEMV_BYTES / (SUPER_GBS[mode] * 1e9),
            "bytes": float(GEMV_BYTES), "flops": float(GEMV_FLOPS), "compute_class": "fp16", "energy_j": energy_j,
            "tokens_per_call": 1, "outcome": "passed"}


def test_each_modes_row_sets_measured_beside_that_modes_prediction():
    rows = mode_rows([_record("15W", 6e-4, 4.2e-3), _record("25W", 4e-4, 3.6e-3)], {"15W": 6.0, "25W": 7.1})
    r15, r25 = rows
    assert (r15["budget_w"], r25["budget_w"], r15["idle_w"]) == (15, 25, 6.0)
    assert r15["roof_s"] / r25["roof_s"] == pytest.approx(3199 / 2133)  # each mode's own bandwidth
    # the hand-checked GEMV of test_energy.py: 86 pJ/byte (the LPDDR5 estimate), 0.75 pJ/FLOP, 2.18 W x the roof time
    assert r15["predicted_j"] == pytest.approx(r15["tokens"] / r15["predicted_tokens_per_j"])
    assert r15["predicted_j"] == pytest.approx((2 * 4096 * 4096 + 4 * 4096) * 86e-12 + 2 * 4096 * 4096 * 0.75e-12
                                               + 2.18 * r15["roof_s"])
    assert r15["measured_w"] == pytest.approx(4.2e-3 / 6e-4) and r15["measured_tokens_per_j"] == pytest.approx(1 / 4.2e-3)
    assert r15["energy_ratio"] == pytest.approx(4.2e-3 / r15["predicted_j_at_measured_time"])


def test_the_fit_per_mode_reads_the_static_power_from_the_idle_draw():
    records = [_record("15W", 6e-4, 6.0 * 6e-4 + 33.6e6 * 40e-12), _record("15W", 1.2e-3, 6.0 * 1.2e-3 + 33.6e6 * 40e-12)]
    fitted = fit_modes(records, {"15W": 6.0})["15W"]
    assert fitted.static_w.value == 6.0 and fitted.dram_pj_per_byte.value == pytest.approx(40, rel=0.01)


def test_the_plot_has_a_measured_and_a_predicted_point_per_mode_and_case():
    rows = mode_rows([_record("15W", 6e-4, 4.2e-3), _record("25W", 4e-4, 3.6e-3)])
    svg = power_svg(rows, "sweep")
    xml.dom.minidom.parseString(svg)
    assert svg.count("<circle") == 2 * 2 + 1  # measured points in two panels, plus the legend's
    assert svg.count("<rect x=") - 2 == 2 * 2 and "tokens/J vs W" in svg


# --- the sweep as users run it ---------------------------------------------------------------------

def sweep(tmp_path, *extra, env=None):
    reports = tmp_path / "reports"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "jetson", "--simulate", SUPER,
           "--roofline-cache-dir", str(tmp_path / "store"), "--roofline-report-dir", str(reports),
           "--html", str(reports / "report.html"), "--self-contained-html", "-k",
           "measured_case and gemv-1x4096x4096-bf16", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    return proc, reports


def test_without_the_flag_the_sweep_refuses_before_anything_runs(tmp_path):
    proc, reports = sweep(tmp_path, "--power-modes", "15W,25W")
    assert proc.returncode == 4, proc.stdout[-2000:]
    assert "would change the power mode from 25W to 15W" in proc.stderr and "--allow-power-mode-change" in proc.stderr
    assert not (reports / "measurements.json").exists()


def test_an_unknown_mode_is_a_usage_error_and_off_a_jetson_the_option_is_ignored(tmp_path):
    proc, _ = sweep(tmp_path, "--power-modes", "7W", "--allow-power-mode-change")
    assert proc.returncode == 4 and "unknown power mode '7W' for jetson_orin_nano_super; known: 15W (0)" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           "tests/test_atomic.py", "--power-modes", "15W"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and "--power-modes 15W: ignored, no measurable Jetson" in proc.stdout, proc.stdout


def test_each_mode_is_held_to_its_own_roof_and_the_board_ends_where_it_began(tmp_path):
    proc, reports = sweep(tmp_path, "--power-modes", "15W,25W", "--allow-power-mode-change")
    assert proc.returncode == 0 and "power mode restored to 25W (id 1); board now in 25W" in proc.stdout, \
        proc.stdout[-3000:]
    records = json.loads((reports / "measurements.json").read_text())["records"]
    by_mode = {r["power_mode"]: r for r in records}
    assert set(by_mode) == {"15W", "25W"} and all(r["hardware"].endswith(f"nvpmodel {m}") for m, r in by_mode.items())
    ratio = by_mode["15W"]["predicted_datasheet_s"] / by_mode["25W"]["predicted_datasheet_s"]
    assert ratio == pytest.approx(3199 / 2133, rel=1e-6)  # a memory-bound GEMV follows the EMC cap
    report = json.loads((reports / "power_modes.json").read_text())
    assert report["final_mode"]["mode"] == "25W" and [s["mode"] for s in report["switches"]] == ["15W", "25W"]
    assert len(report["rows"]) == 2 and all(r["measured_j"] and r["predicted_j"] and r["energy_ratio"]
                                            for r in report["rows"])  # one row per mode, each with both
    assert set(report["energy_profile"]["modes"]) == {"15W", "25W"}
    assert "Power modes (SIMULATED" in (reports / "report.html").read_text()
    assert not (tmp_path / "store").exists()  # a simulated run stores no energy profile


def test_a_failing_case_still_ends_in_the_original_mode(tmp_path):
    proc, reports = sweep(tmp_path, "--power-modes", "15W", "--allow-power-mode-change", "--simulate-fault",
                          "below-floor")
    assert proc.returncode == 1 and "power mode restored to 25W" in proc.stdout, proc.stdout[-3000:]
    assert json.loads((reports / "power_modes.json").read_text())["final_mode"]["mode"] == "25W"


def test_ctrl_c_in_a_lower_mode_still_ends_in_the_original_mode(tmp_path):
    (tmp_path / "plugin").mkdir()
    (tmp_path / "plugin" / "planted_interrupt.py").write_text(
        "import pytest\n\n\n@pytest.hookimpl(tryfirst=True)\ndef pytest_runtest_call(item):\n"
        "    raise KeyboardInterrupt('planted Ctrl-C')\n")
    env = dict(__import__("os").environ, PYTHONPATH=str(tmp_path / "plugin"))
    proc, reports = sweep(tmp_path, "--power-modes", "15W,25W", "--allow-power-mode-change", "-p", "planted_interrupt",
                          env=env)
    assert proc.returncode == 2 and "KeyboardInterrupt" in proc.stdout, proc.stdout[-3000:]
    report = json.loads((reports / "power_modes.json").read_text())
    assert [s["mode"] for s in report["switches"]] == ["15W"]  # interrupted in 15W, before 25W ran
    assert report["restored"] == "power mode restored to 25W (id 1)" and report["final_mode"]["mode"] == "25W"


def test_a_mode_no_table_lists_runs_at_its_measured_caps_and_says_so(monkeypatch, tmp_path):
    """An AGX Orin 32GB in MODE_40W (or a custom mode in /etc/nvpmodel.conf): hardware_for raised 'unknown power
    mode', in the calibration fixture, so every measured case errored. Now: the caps the board reports."""
    from roofline_kernels import jetson
    from roofline_kernels.device import detect
    from roofline import get_hardware
    from roofline_kernels.measure import hardware_for
    from tests.fakes.install import install_device
    from tests.fakes.jetson import install_fake_nvpmodel
    install_device(monkeypatch, "jetson_agx_orin", tmp_path)
    install_fake_nvpmodel(tmp_path / "bin", "MODE_40W", 3)  # what the board's nvpmodel -q prints now
    gpu = jetson.find_gpu_devfreq(tmp_path)
    (gpu / "max_freq").write_text(f"{int(1000e6)}\n")
    info = detect(root=tmp_path)
    assert info.power_mode["mode"] == "MODE_40W"
    hw = hardware_for(info)
    nominal = get_hardware("jetson_agx_orin")
    assert hw.key == "jetson_agx_orin@nvpmodel MODE_40W" and "in no power-mode table" in hw.name
    assert "GPU 1000 MHz" in hw.name
    assert hw.peaks["fp16"].value == pytest.approx(nominal.peaks["fp16"].value * 1000 / nominal.gpu_clock.value)


@pytest.mark.parametrize("key, mode", [("jetson_agx_orin", "MODE_30W"), ("jetson_orin_nano", "7W"),
                                       ("jetson_orin_nano_super", "25W"), ("jetson_orin_nx_16gb", "10W")])
def test_a_container_without_nvpmodel_reads_its_mode_from_the_caps(tmp_path, key, mode):
    """A container has no nvpmodel: the board got its top mode's roofs whatever it ran (an AGX Orin in its default
    MODE_30W held to FP16 42.6 where its mode gives about 10). The caps the mode set name it."""
    from roofline.clocks import resolve
    from roofline_kernels.device import DeviceInfo, read_cpu_info
    from roofline_kernels.measure import hardware_for
    root = make_jetson_tree(tmp_path, key, mode, docker=True)
    info = DeviceInfo(key, "jetson", "x", "y", read_cpu_info("/nonexistent"), sysfs_root=str(root),
                      sm_count=REGISTRY[key].sm_count)
    hw = hardware_for(info)
    assert hw.power_mode == mode and hw.peaks["fp16"].value == pytest.approx(resolve(key, mode).peaks["fp16"].value)
    assert hw.peaks["fp16"].value < REGISTRY[key].peaks["fp16"].value


def test_caps_that_name_no_one_mode_scale_the_roofs_to_themselves(tmp_path):
    # an Orin NX Super's MAXN_SUPER and 40W set the same caps: either way the roofs are those caps', said so
    from roofline_kernels.device import DeviceInfo, read_cpu_info
    from roofline_kernels.measure import hardware_for
    key = "jetson_orin_nx_16gb_super"
    root = make_jetson_tree(tmp_path, key, "40W", docker=True)
    info = DeviceInfo(key, "jetson", "x", "y", read_cpu_info("/nonexistent"), sysfs_root=str(root),
                      sm_count=REGISTRY[key].sm_count)
    hw = hardware_for(info)
    assert hw.power_mode == "unreported" and "no nvpmodel to ask" in hw.name and "GPU 1173 MHz" in hw.name
