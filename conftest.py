"""Root conftest: Hypothesis profiles, the device under test, and the one hook that skips absent hardware.

- Hypothesis: `dev` for local runs, `ci` (deadline off, derandomized) for CI; pick one with
  `--hypothesis-profile NAME` or `HYPOTHESIS_PROFILE`; CI=true selects `ci`.
- `--hardware KEY` overrides detection (done once per session; a GPU entry on a CPU-only host is refused
  by detection). `--simulate KEY` runs the suite against a simulated device (tests/simulation.py).
- A test that measures on a hardware family carries `@pytest.mark.measure("b10")` (with the `b10`
  selector marker: tests/hardware.py `on_hardware`); elsewhere it is skipped with a reason naming what
  was required and what was detected. `cpu` tests measure the host CPU: they run when the device under
  test is the CPU (`--hardware cpu` selects it on a GPU host). `gpu` tests need a CUDA device.
- One profile store for the CLI and pytest (`--roofline-cache-dir`, `$ROOFLINE_CACHE_DIR`,
  `$XDG_CACHE_HOME/roofline`, ~/.cache/roofline): the calibration profile, measured once per device
  fingerprint (`--recalibrate` measures again), the best DRAM bandwidth this device has shown (a CPU's
  DRAM ceiling), and this device's history of each case (the evidence regressions are judged by;
  `--rebaseline` starts it anew).
  Nothing here needs pytest's cache provider (`-p no:cacheprovider` works).
"""
import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.validation.report", "tests.validation.power_sweep", "tests.validation.power_report"]
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100)
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

DEFAULT_CASE_BUDGET_S = 20.0


def pytest_addoption(parser):
    group = parser.getgroup("roofline", "roofline validation suite")
    group.addoption("--hardware", default=None,
                    help="registry key of the device under test (default: detected); e.g. b10, jetson_orin_nano")
    group.addoption("--recalibrate", action="store_true", help="measure the calibration profile again")
    group.addoption("--rebaseline", action="store_true",
                    help="start this device's history of each case anew (the reference regressions are judged by)")
    group.addoption("--run-slow", action="store_true", help="run cases marked slow (skipped by default)")
    group.addoption("--shape", action="append", default=[], metavar="OP:DIMS",
                    help="add this shape's cases (every precision, theory and measured, the same tolerances): "
                         "gemm:MxNxK, gemv:NxK or attention:BxHxKVxSQxSKVxD; repeatable")
    group.addoption("--roofline-cache-dir", default=None,
                    help="the profile store shared with the CLI (default: $ROOFLINE_CACHE_DIR, "
                         "$XDG_CACHE_HOME/roofline or ~/.cache/roofline)")
    group.addoption("--case-budget-s", type=float, default=DEFAULT_CASE_BUDGET_S,
                    help="wall budget per measured case; a kernel whose 10 samples cannot fit is skipped, named, "
                         "unless its history shows the single calls it took past its regression band: then it fails")
    group.addoption("--simulate", default=None, metavar="KEY",
                    help="run against a simulated device (e.g. gb10, jetson_orin_nano, h100_sxm): a dry run "
                         "with synthesised times, marked SIMULATED, never written to any history")
    group.addoption("--simulate-fault", default=None, choices=("above-roof", "below-floor", "wrong-result"),
                    help="plant a fault in the simulated measurements (proves the suite catches it)")
    group.addoption("--simulate-power-mode", default=None, metavar="MODE",
                    help="the simulated Jetson's current nvpmodel mode (e.g. 7W); its roofs are that mode's")
    group.addoption("--simulate-torch-without-cuda", action="store_true",
                    help="the simulated board's torch has no CUDA (a CPU wheel on a Jetson): what that run says")


class SuiteSession:
    """What one pytest session knows of the device under test, kept on ``config.stash`` (``suite_session``), not in
    module globals: the simulated device (``--simulate``), the device detected once (or why measurement is
    unavailable), and what the benchmark history's gate says this run. The plugins (tests/validation/) and
    the tests reach it through ``suite_session(config)`` or the ``suite`` fixture."""

    def __init__(self, config):
        self.config = config
        self.simulation = None  # tests/simulation.py's Simulation, installed for this session
        self.history_note = None
        self.error = None  # why no device can be measured (torch missing), where none can
        self._info, self._detected = None, False

    def device_info(self):
        """The device under test, detected (or simulated) once per session; None where measurement is unavailable."""
        if not self._detected:
            try:
                from roofline_kernels.device import detect
            except ImportError as e:  # torch missing: theory-only session
                self.error = f"measurement layer unavailable: {e}"
            else:
                try:
                    self._info = (self.simulation.detect if self.simulation else detect)(
                        self.config.getoption("--hardware"))
                except ValueError as e:  # e.g. --hardware b10 on a CPU-only host: refused wherever it is asked
                    raise pytest.UsageError(str(e)) from None
            self._detected = True
        return self._info


SUITE_KEY = pytest.StashKey[SuiteSession]()


def suite_session(config) -> SuiteSession:
    if SUITE_KEY not in config.stash:
        config.stash[SUITE_KEY] = SuiteSession(config)
    return config.stash[SUITE_KEY]


@pytest.fixture(scope="session")
def suite(request) -> SuiteSession:
    return suite_session(request.config)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """A device's first gated run (`--benchmark-compare-fail`) has no history to compare with, and
    pytest-benchmark refuses the option then: this run starts the history; the gate applies next run."""
    from roofline_kernels.calibrate import store_dir
    from tests.validation.cases import parse_shape_option
    try:  # a store that is a file: one usage error now, not a fixture traceback on every measured test
        store_dir(config.getoption("--roofline-cache-dir", None))
    except ValueError as e:
        raise pytest.UsageError(str(e)) from None
    for spec in config.getoption("--shape", None) or ():
        try:
            parse_shape_option(spec)  # refused now, with the forms allowed, not as a collection error later
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None
    key = config.getoption("--simulate", None)
    if key:
        from tests.simulation import Simulation
        try:
            suite_session(config).simulation = Simulation(key, config.getoption("--simulate-fault"),
                                               config.getoption("--simulate-power-mode"),
                                               not config.getoption("--simulate-torch-without-cuda")).install()
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None
        # synthesised times never enter a history, whatever was asked for
        config.option.benchmark_autosave = False
        config.option.benchmark_save = None
        config.option.benchmark_json = None
        config.option.benchmark_compare = []
        config.option.benchmark_compare_fail = None
        return
    storage = str(getattr(config.option, "benchmark_storage", "") or "")
    info = suite_session(config).device_info() if storage.startswith("file://") else None
    if info is not None and not getattr(config.option, "benchmark_disable", False):
        # each device's own history: the tox env's folder holds a board family, whose boards and power modes differ
        from roofline_kernels.device import history_dir
        storage = f"{storage.rstrip('/')}/{history_dir(info)}"
        config.option.benchmark_storage = storage
    if not getattr(config.option, "benchmark_compare_fail", None):
        return
    if storage.startswith("file://") and not any(Path(storage[len("file://"):]).glob("*/*.json")):
        config.option.benchmark_compare = []
        config.option.benchmark_compare_fail = None
        suite_session(config).history_note = (f"benchmark history: none yet in {storage}; this run starts it and the regression "
                            "gate applies from the next run")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """A run that failed, or that the benchmark gate finds regressed, is not saved to the timing history: saved, it
    became the next run's baseline (pytest-benchmark saves before it compares), and the gate passed the run after a
    slowdown. The history holds passing runs; the report says when this one was kept out."""
    bench = getattr(session.config, "_benchmarksession", None)
    if bench is not None and (bench.save or bench.autosave):
        regressed = []
        if bench.compare_fail and getattr(bench, "compared_mapping", None):
            list(bench.prepare_benchmarks())  # the gate's own check, run ahead of its save
            regressed, bench.performance_regressions = list(bench.performance_regressions), []
        if session.testsfailed or regressed or exitstatus != 0:  # an interrupted run is no baseline either
            bench.save = bench.autosave = False
            suite_session(session.config).history_note = (
                f"benchmark history: this run is not saved ({session.testsfailed} test(s) failed, exit status "
                f"{int(exitstatus)}"
                + (f", {len(regressed)} timing(s) past the gate" if regressed else "") + "): the next run is compared "
                "with the last passing one")
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(suite_session(session.config).history_note)
    yield


def pytest_unconfigure(config):
    sim = suite_session(config).simulation
    if sim is not None:
        suite_session(config).simulation = None
        sim.uninstall()


def pytest_report_header(config):
    suite = suite_session(config)
    info = suite.device_info()
    lines = [f"device: none ({suite.error})" if info is None else
             f"device: {info.hardware_key} ({info.name}; {info.detected_by})"]
    if info is not None and info.simulated:
        lines.insert(0, f"SIMULATED device {info.simulated}: synthesised times, nothing written to any history")
    if info is not None and info.unavailable:
        lines.append(f"measurement unavailable: {info.unavailable}")
    if suite.history_note:
        lines.append(suite.history_note)
    try:  # the stack and what it can run; `python -m roofline doctor` says more
        from roofline_kernels.stack import header_lines
        lines += header_lines(simulated=bool(info is not None and info.simulated))
    except Exception as e:  # a header never fails a session
        lines.append(f"stack: unknown ({type(e).__name__}: {e})")
    return lines


def pytest_runtest_setup(item):
    if item.get_closest_marker("slow") and not item.config.getoption("--run-slow"):
        pytest.skip("slow: heavy on this hardware; run with --run-slow")
    required = [m.args[0] for m in item.iter_markers("measure")]
    needs_gpu = item.get_closest_marker("gpu") is not None
    needs_cpu = item.get_closest_marker("cpu") is not None and not required
    if not required and not needs_gpu and not needs_cpu:
        return
    suite = suite_session(item.config)
    info = suite.device_info()
    if info is None:
        pytest.skip(f"requires measurement on {required or ('a GPU' if needs_gpu else 'the host CPU')}; "
                    f"{suite.error}")
    from roofline import get_hardware
    family = get_hardware(info.hardware_key).family
    detected = f"detected {info.hardware_key} ({info.name}; {info.detected_by})"
    for fam in required:
        if fam != family:
            pytest.skip(f"requires {fam} hardware; {detected}")
    if needs_cpu and info.kind != "cpu":
        pytest.skip(f"measures the host CPU; the device under test is {info.hardware_key} (select the host CPU "
                    "with --hardware cpu)")
    if needs_gpu and (info.kind == "cpu" or info.simulated):
        pytest.skip(f"requires a real CUDA GPU; {detected}" + (" (simulated: nothing can run on it)"
                                                                if info.simulated else ""))
    if info.unavailable:
        pytest.skip(f"cannot measure on {info.hardware_key}: {info.unavailable}")


@pytest.fixture(scope="session")
def device_info(suite, power_mode):
    """The device under test; in a power-mode sweep (tests/validation/power_sweep.py) as set to that mode."""
    info = suite.device_info()
    if info is None:
        pytest.skip(suite.error)
    if power_mode is not None:
        import dataclasses
        info = dataclasses.replace(info, power_mode=power_mode)
    return info


@pytest.fixture(scope="session")
def profile_store(request) -> Path:
    from roofline_kernels.calibrate import store_dir
    return store_dir(request.config.getoption("--roofline-cache-dir"))


@pytest.fixture(scope="session")
def calibration(request, suite, device_info, profile_store):
    from roofline_kernels.measure import hardware_for
    sim = suite.simulation
    hw = hardware_for(device_info)
    if sim is not None:
        return sim.calibration(device_info, hw)
    from roofline_kernels.calibrate import load_or_calibrate
    return load_or_calibrate(device_info, profile_store, quick=True, refresh=request.config.getoption("--recalibrate"),
                             hw=hw)


@pytest.fixture(scope="session")
def hardware_entry(device_info, calibration):
    """The registry entry measurements are held against, with this device's calibration beside it."""
    from roofline_kernels.measure import hardware_for
    return hardware_for(device_info, calibration)


@pytest.fixture(scope="session")
def history_book(request, device_info, calibration, profile_store):
    """This device's history of each case (loaded once; the runs this session adds are saved at its end)."""
    from roofline.regress import MIN_EFFECT, MIN_EFFECT_CPU
    from roofline_kernels.baseline import baseline_path, load_book, save_book
    path = baseline_path(device_info, profile_store)
    book = load_book(path, fresh=request.config.getoption("--rebaseline"),
                     min_effect=MIN_EFFECT_CPU if device_info.kind == "cpu" else MIN_EFFECT)
    yield book
    if book.added and not device_info.simulated:
        save_book(book, path)


@pytest.fixture
def ceiling_entry(device_info, hardware_entry, calibration, profile_store):
    """What physics holds measurements to: the datasheet on a GPU; a CPU's ISA-derived compute peaks beside the
    best DRAM bandwidth this device has shown (roofline_kernels/ceiling.py). Read per case: a beat raises it."""
    from roofline_kernels.ceiling import ceiling_hardware
    return ceiling_hardware(device_info, hardware_entry, None if device_info.simulated else profile_store)
