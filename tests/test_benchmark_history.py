"""pytest-benchmark's timing history, as the suite keeps it: one folder per device, and only passing runs in it.

The tox envs store a board *family* each (``reports/benchmarks/h100``), and pytest-benchmark picks the run to compare
with by folder, not by machine: an H100 PCIe (2000 GB/s) was gated against an H100 SXM's last run (3350 GB/s) and failed
1.65x healthy. It also saves a run before it checks it (session.py ``finish``: ``handle_saving`` then
``prepare_benchmarks``), so a regressed run became the next run's baseline and the gate passed the run after it.
"""
import dataclasses

import pytest

import conftest
from roofline_kernels.device import DeviceInfo, history_dir, read_cpu_info

pytestmark = pytest.mark.cpu


def test_each_device_and_power_mode_keeps_its_own_history(monkeypatch):
    import torch
    cpu = read_cpu_info("/nonexistent")
    pcie = DeviceInfo("h100_pcie", "cuda", "NVIDIA H100 PCIe", "nvml", cpu)
    sxm = dataclasses.replace(pcie, hardware_key="h100_sxm", name="NVIDIA H100 80GB HBM3")
    orin = DeviceInfo("jetson_orin_nano_super", "jetson", "Orin", "tegra", cpu, power_mode={"mode": "15W", "id": 0})
    maxn = dataclasses.replace(orin, power_mode={"mode": "MAXN_SUPER", "id": 2})
    host = DeviceInfo("cpu", "cpu", "x", "y", dataclasses.replace(cpu, model="AMD EPYC 9R14", threads=2))
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    dirs = [history_dir(i) for i in (pcie, sxm, orin, maxn, host, dataclasses.replace(
        host, cpu=dataclasses.replace(host.cpu, model="Intel Xeon 8480+")))]
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # OMP_NUM_THREADS=1: the calibration's fingerprint too
    dirs.append(history_dir(host))
    assert len(set(dirs)) == len(dirs), dirs
    assert dirs[2] == "jetson_orin_nano_super-15w" and dirs[4] == "cpu-amd-epyc-9r14-2t"
    assert all("/" not in d and " " not in d for d in dirs)


class _FakeBenchmarkSession:
    """The attributes of pytest_benchmark.session.BenchmarkSession the hook reads and sets (checked against the real
    class below): ``save``/``autosave`` decide ``handle_saving``; ``prepare_benchmarks`` appends to
    ``performance_regressions`` what ``--benchmark-compare-fail`` fails."""

    def __init__(self, regress: bool):
        self.save, self.autosave = None, True
        self.compare_fail = ["median:10%"] if regress is not None else None
        self.compared_mapping = {"0001_run.json": {}}
        self.performance_regressions = []
        self._regress = regress

    def prepare_benchmarks(self):
        if self._regress:
            self.performance_regressions.append(("test_case", "median 1.4x"))
        yield {}


class _Session:
    def __init__(self, bench, failed):
        self.testsfailed = failed
        self.config = type("C", (), {})()
        self.config._benchmarksession = bench
        self.config.stash = {}
        self.config.pluginmanager = type("P", (), {"get_plugin": staticmethod(lambda name: None)})()
        self.config.getoption = lambda *a, **k: None


@pytest.mark.parametrize("failed, regress, status, saved", [
    (0, False, 0, True),    # a passing run joins the history
    (1, False, 1, False),   # a failed test keeps the run out
    (0, True, 0, False),    # a timing past the gate keeps it out: it must not become the baseline
    (0, None, 0, True),     # no gate asked for (a CPU's tox env): saved
    (0, False, 2, False),   # interrupted (Ctrl-C): no failure counted, and no baseline either
])
def test_only_a_passing_run_is_saved_to_the_timing_history(failed, regress, status, saved, monkeypatch):
    bench = _FakeBenchmarkSession(regress)
    monkeypatch.setattr(conftest, "suite_session", lambda config: type("S", (), {"history_note": None})())
    hook = conftest.pytest_sessionfinish(_Session(bench, failed), status)
    next(hook)  # the part that runs before pytest-benchmark's own sessionfinish (which saves)
    assert bool(bench.save or bench.autosave) is saved
    assert bench.performance_regressions == []  # left for the gate itself to find again, once


def test_the_fake_benchmark_session_matches_pytest_benchmarks():
    from pytest_benchmark.session import BenchmarkSession
    import inspect
    init = inspect.getsource(BenchmarkSession.__init__)
    for attr in ("self.save", "self.autosave", "self.compare_fail", "self.performance_regressions"):
        assert attr in init, attr
    assert "self.compared_mapping" in inspect.getsource(BenchmarkSession.handle_loading)
    finish = inspect.getsource(BenchmarkSession.finish)
    assert finish.index("handle_saving") < finish.index("prepare_benchmarks")  # it saves before it compares
