"""Root conftest: Hypothesis profiles, the device under test, and the one hook that skips absent hardware.

- Hypothesis: `dev` for local runs, `ci` (deadline off, derandomized) for CI; pick one with
  `--hypothesis-profile NAME` or `HYPOTHESIS_PROFILE`; CI=true selects `ci`.
- `--hardware KEY` overrides detection (done once per session). A test that measures on a hardware
  family carries `@pytest.mark.measure("b10")` (with the `b10` selector marker: see
  tests/hardware.py `on_hardware`); elsewhere it is skipped with a reason naming what was required
  and what was detected. `gpu` tests need a CUDA device.
- The calibration profile is measured once per device and cached in pytest's cache dir
  (`--recalibrate` measures again).
"""
import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.validation.report"]
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100)
settings.register_profile("ci", max_examples=200, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_addoption(parser):
    group = parser.getgroup("roofline", "roofline validation suite")
    group.addoption("--hardware", default=None,
                    help="registry key of the device under test (default: detected); e.g. b10, jetson_orin_nano")
    group.addoption("--recalibrate", action="store_true", help="measure the calibration profile again")
    group.addoption("--run-slow", action="store_true", help="run cases marked slow (skipped by default)")


_DEVICE = {}
_HISTORY = {}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """A device's first gated run (`--benchmark-compare-fail`) has no history to compare with, and
    pytest-benchmark refuses the option then: this run starts the history; the gate applies next run."""
    if not getattr(config.option, "benchmark_compare_fail", None):
        return
    storage = str(getattr(config.option, "benchmark_storage", "") or "")
    if storage.startswith("file://") and not any(Path(storage[len("file://"):]).glob("*/*.json")):
        config.option.benchmark_compare = []
        config.option.benchmark_compare_fail = None
        _HISTORY["note"] = (f"benchmark history: none yet in {storage}; this run starts it and the regression "
                            "gate applies from the next run")


def _device_info(config):
    if "info" not in _DEVICE:
        try:
            from kernels.device import detect
        except ImportError as e:  # torch missing: theory-only session
            _DEVICE["info"], _DEVICE["error"] = None, f"measurement layer unavailable: {e}"
        else:
            _DEVICE["info"] = detect(config.getoption("--hardware"))
    return _DEVICE["info"]


def pytest_report_header(config):
    info = _device_info(config)
    lines = [f"device: none ({_DEVICE.get('error')})" if info is None else
             f"device: {info.hardware_key} ({info.name}; {info.detected_by})"]
    if "note" in _HISTORY:
        lines.append(_HISTORY["note"])
    return lines


def pytest_runtest_setup(item):
    if item.get_closest_marker("slow") and not item.config.getoption("--run-slow"):
        pytest.skip("slow: heavy on this hardware; run with --run-slow")
    required = [m.args[0] for m in item.iter_markers("measure")]
    needs_gpu = item.get_closest_marker("gpu") is not None
    if not required and not needs_gpu:
        return
    info = _device_info(item.config)
    if info is None:
        pytest.skip(f"requires measurement on {required or 'a GPU'}; {_DEVICE.get('error')}")
    from roofline import get_hardware
    family = get_hardware(info.hardware_key).family
    detected = f"detected {info.hardware_key} ({info.name}; {info.detected_by})"
    for fam in required:
        if fam != family:
            pytest.skip(f"requires {fam} hardware; {detected}")
    if needs_gpu and info.kind == "cpu":
        pytest.skip(f"requires a CUDA GPU; {detected}")


@pytest.fixture(scope="session")
def device_info(request):
    info = _device_info(request.config)
    if info is None:
        pytest.skip(_DEVICE.get("error"))
    return info


@pytest.fixture(scope="session")
def calibration(request, device_info):
    from kernels.calibrate import load_or_calibrate
    cache_dir = request.config.cache.mkdir("roofline-calibration")
    return load_or_calibrate(device_info, cache_dir, quick=True, refresh=request.config.getoption("--recalibrate"))


@pytest.fixture(scope="session")
def hardware_entry(device_info, calibration):
    """The registry entry measurements are held against, with this device's calibration beside it."""
    from kernels.measure import hardware_for
    return hardware_for(device_info, calibration)
