"""pytest plugin: the power-mode sweep, ``pytest -m jetson --power-modes 15W,7W [--allow-power-mode-change]``.

- Every test whose fixtures reach ``device_info`` is parametrized by mode (session scope, so pytest runs all
  of one mode's cases, then the next): the ``power_mode`` fixture switches the board (roofline_kernels/power_modes.py)
  and waits for its clocks to settle; ``device_info`` then carries that mode, so each case is held to the
  mode's scaled roof and calibrated, baselined and recorded per mode.
- Refusal comes first: a list that needs a change without ``--allow-power-mode-change`` is a usage error
  before anything runs, so a run without the flag never changes a mode. Unknown modes likewise.
- Restore, whatever happens: at the session's end (failures and Ctrl-C included: pytest calls
  ``pytest_sessionfinish`` on KeyboardInterrupt), again from the config's cleanup as a backstop, and on
  SIGTERM, which is turned into KeyboardInterrupt while a mode other than the original is set.
- Off a Jetson the option is ignored with a header line (the Jetson cases skip there anyway).
"""
from __future__ import annotations

import signal

import pytest

from tests.validation.report import RECORD_KEY

STATE_KEY = pytest.StashKey[dict]()


def pytest_addoption(parser):
    group = parser.getgroup("roofline")
    group.addoption("--power-modes", default=None, metavar="MODES",
                    help="measure the Jetson cases in each of these nvpmodel modes in turn (e.g. 15W,7W), each "
                         "against that mode's roof and energy; a change needs --allow-power-mode-change")
    group.addoption("--allow-power-mode-change", action="store_true",
                    help="let --power-modes change the board's mode (sudo -n nvpmodel -m ID); the original mode is "
                         "restored at the end whatever happens")
    group.addoption("--power-mode-settle-s", type=float, default=30.0,
                    help="how long a new mode's clocks may take to settle (default 30 s)")


def sweep_state(config) -> dict | None:
    return config.stash.get(STATE_KEY, None)


def pytest_configure(config):
    spec = config.getoption("--power-modes", None)
    if not spec:
        return
    modes = [m.strip() for m in spec.split(",") if m.strip()]
    if not modes:
        raise pytest.UsageError(f"--power-modes {spec!r}: expected mode names or ids, e.g. 15W,7W")
    from conftest import suite_session
    info = suite_session(config).device_info()
    if info is None or info.kind != "jetson" or info.unavailable:
        what = "none" if info is None else f"{info.hardware_key} ({info.unavailable or info.kind})"
        config.stash[STATE_KEY] = {"modes": [], "note": f"--power-modes {spec}: ignored, no measurable Jetson "
                                                        f"(device under test: {what})"}
        return
    from roofline_kernels.power_modes import PowerModeError, PowerModes
    sim = suite_session(config).simulation
    ctl = PowerModes(info.hardware_key, info.sysfs_root, config.getoption("--allow-power-mode-change"),
                     settle_timeout_s=config.getoption("--power-mode-settle-s"),
                     poll_s=0.02 if sim else 0.25, idle_s=0.05 if sim else 1.0)
    try:
        names = list(dict.fromkeys(ctl.resolve(m)[0] for m in modes))
        ctl.check_allowed(names)
    except (ValueError, PowerModeError) as e:
        raise pytest.UsageError(str(e)) from None
    if sim is not None:
        sim.realtime_energy = True  # the rails integrate over the synthesised time, as a board's would
    config.stash[STATE_KEY] = {"modes": names, "controller": ctl, "restored": None, "errors": {}}
    config.add_cleanup(lambda: _restore(config))


def pytest_report_header(config):
    state = sweep_state(config)
    if state is None:
        return None
    if not state["modes"]:
        return state["note"]
    ctl = state["controller"]
    return (f"power-mode sweep: {', '.join(state['modes'])} on {ctl.key}, then back to the current mode"
            + ("" if ctl.allow_change else " (no change allowed: the current mode only)"))


def pytest_generate_tests(metafunc):
    state = sweep_state(metafunc.config)
    if state and state["modes"] and "power_mode" in metafunc.fixturenames:
        metafunc.parametrize("power_mode", state["modes"], indirect=True, scope="session",
                             ids=[f"mode-{m}" for m in state["modes"]])


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def power_mode(request):
    """{"mode", "id"} the board was put in for this parameter (settled), or None outside a sweep."""
    if not hasattr(request, "param"):
        return None
    from roofline_kernels.power_modes import PowerModeError
    state = sweep_state(request.config)
    try:
        rec = state["controller"].switch(request.param)
    except PowerModeError as e:
        state["errors"][request.param] = str(e)
        pytest.fail(f"power mode {request.param}: {e}", pytrace=False)
    if rec.changed and "sigterm" not in state:
        try:
            state["sigterm"] = signal.signal(signal.SIGTERM, _raise_interrupt)
        except ValueError:  # not the main thread
            state["sigterm"] = None
    return {"mode": rec.mode, "id": rec.id}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each case's record says which mode it ran in and how many tokens one call makes."""
    yield
    rec = item.stash.get(RECORD_KEY, None)
    params = getattr(getattr(item, "callspec", None), "params", {})
    if rec is not None and call.when == "call":
        rec["power_mode"] = params.get("power_mode")
        case = params.get("case")
        if case is not None:
            s = case.shape
            rec["tokens_per_call"] = (s["batch"] * s["seq_q"] if case.op == "attention" else
                                      None if case.op == "grouped_gemm" else s["m"])  # an expert's rows are no tokens


def _restore(config) -> str | None:
    state = sweep_state(config)
    if not state or not state.get("controller"):
        return None
    from roofline_kernels.power_modes import PowerModeError
    ctl = state["controller"]
    try:
        state["restored"] = ctl.restore()
    except PowerModeError as e:
        state["restored"] = str(e)
    finally:
        if state.get("sigterm") is not None:
            signal.signal(signal.SIGTERM, state.pop("sigterm"))
    return state["restored"]


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    """Restore before anything is written, so the report can say where the board was left."""
    state = sweep_state(session.config)
    if state and state.get("controller"):
        _restore(session.config)
        try:
            state["final"] = state["controller"].query()
        except Exception as e:  # the report says so; the restore line already carries any failure
            state["final"] = {"mode": None, "id": None, "error": str(e)}


def pytest_terminal_summary(terminalreporter, config):
    state = sweep_state(config)
    if state and not state["modes"]:
        terminalreporter.write_line(state["note"])
    if state and state.get("controller"):
        ctl = state["controller"]
        terminalreporter.write_sep("-", "power modes")
        for s in ctl.switches:
            terminalreporter.write_line(f"{s.mode}: {'switched' if s.changed else 'already set'}, settled in "
                                        f"{s.settle_s:.2f} s, idle {s.idle_w if s.idle_w is None else round(s.idle_w, 3)} W")
        for mode, err in state["errors"].items():
            terminalreporter.write_line(f"{mode}: FAILED: {err}")
        terminalreporter.write_line(f"{state['restored']}; board now in {(state.get('final') or {}).get('mode')}")
