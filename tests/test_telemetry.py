"""Telemetry on simulated devices: Jetson sysfs trees, a fake NVML on one and several GPUs, the timed region."""
import os
import sys
import tempfile

import pytest

from roofline_kernels import jetson, telemetry
from roofline_kernels.device import detect
from roofline_kernels.nvml import other_gpu_processes
from roofline_kernels.region import CLOCK_DROP_FRACTION, RegionMonitor, Sample, integrate_power, region_flags
from tests.fakes.cuda import install_fake_cuda
from tests.fakes.devices import SIMULATED, multi_gpu
from tests.fakes.host import write
from tests.fakes.install import install_device
from tests.fakes.jetson import MODULE_RAILS, gpu_frequencies_mhz, make_jetson_tree, write_rails
from tests.fakes.nvml import FAKE_SM_CLOCK_MHZ, NVML_ERROR_LIBRARY_NOT_FOUND, ClockDrop, make_fake_pynvml

NVPMODEL_Q = "NV Power Mode: MAXN_SUPER\n2\n"


class ManualClock:
    """The fake NVML's clock, moved by hand: a region of exactly ``t`` seconds, no sleeping."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def use_nvml(monkeypatch, fake):
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


# --- Jetson files --------------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["jp6", "jp5"])
def test_jetson_snapshot_from_a_fake_tree(tmp_path, layout):
    make_jetson_tree(tmp_path, "jetson_orin_nano_super", mode="MAXN_SUPER", layout=layout, gpu_cur_mhz=306)
    s = jetson.jetson_snapshot(tmp_path, nvpmodel_output=NVPMODEL_Q)
    assert s["available"] and s["gpu_cur_mhz"] == 306 and s["gpu_max_mhz"] == 1020
    assert s["gpu_available_mhz"] == gpu_frequencies_mhz("jetson_orin_nano_super") and s["gpu_load_pct"] == 73.4
    # MAXN_SUPER caps no EMC: its config writes no clock there (0), read as no cap
    assert s["emc_cap_mhz"] is None and s["power_mode"] == {"mode": "MAXN_SUPER", "id": 2}
    label, mv, ma = MODULE_RAILS[0]
    assert s["rails"][label]["power_mw"] == pytest.approx(mv * ma / 1000)
    assert s["board_power_w"] == pytest.approx(mv * ma / 1e6)


def test_old_l4t_path_and_gpu0_load(tmp_path):
    base = "sys/devices/17000000.ga10b/devfreq/17000000.ga10b"
    write(tmp_path, f"{base}/cur_freq", "624750000\n")
    write(tmp_path, "sys/devices/gpu.0/load", "120\n")
    s = jetson.jetson_snapshot(tmp_path, nvpmodel_output="")
    assert s["gpu_cur_mhz"] == 624.75 and s["gpu_load_pct"] == 12.0
    assert s["rails"] == {} and s["board_power_w"] is None and s["power_mode"] == {"mode": None, "id": None}


def test_jetson_absent_is_not_available(tmp_path):
    s = jetson.jetson_snapshot(tmp_path, nvpmodel_output="")
    assert s == {"available": False, "reason": "no Jetson GPU devfreq node under /sys/class/devfreq"}


@pytest.mark.parametrize("text, mode", [("NV Power Mode: 15W\n0\n", {"mode": "15W", "id": 0}),
                                        ("NVPM WARN: fan mode is not set!\nNV Power Mode: MODE_30W\n2\n",
                                         {"mode": "MODE_30W", "id": 2}),
                                        ("", {"mode": None, "id": None})])
def test_parse_nvpmodel(text, mode):
    assert jetson.parse_nvpmodel(text) == mode


def test_snapshot_with_info_reads_the_root_detection_read(tmp_path, monkeypatch):
    install_device(monkeypatch, "jetson_orin_nano", tmp_path, mode="7W")
    info = detect(root=tmp_path)
    s = telemetry.snapshot(info.kind, busy_interval_s=0, info=info)
    assert s["jetson"]["available"] and s["jetson"]["gpu_max_mhz"] == 408
    assert s["jetson"]["power_mode"] == {"mode": "7W", "id": 1}


# --- NVML ------------------------------------------------------------------------------------------------

def test_nvml_absent_degrades(monkeypatch):
    use_nvml(monkeypatch, make_fake_pynvml([], init_error=NVML_ERROR_LIBRARY_NOT_FOUND))
    s = telemetry.nvml_snapshot()
    assert not s["available"] and "NVML Shared Library Not Found" in s["reason"]
    region = RegionMonitor(visible_gpu(monkeypatch, multi_gpu("h100_sxm", 1), 0))
    region.start()
    region.stop()
    r = region.result(10)
    assert r["energy_j"] is None and "NVML unavailable" in r["energy_source"] and r["flags"] == []


def test_nvml_snapshot_and_contention(monkeypatch):
    fake = use_nvml(monkeypatch, make_fake_pynvml([SIMULATED["gb10"]], processes={0: [(4242, 2**30)]},
                                                  throttle_reasons=("GpuIdle", "HwThermalSlowdown")))
    s = telemetry.nvml_snapshot()
    assert s["available"] and s["name"] == "NVIDIA GB10" and s["power_w"] == SIMULATED["gb10"].power_w
    assert s["sm_clock_mhz"] == int(SIMULATED["gb10"].gpu_clock_mhz) and "index 0" in s["matched_by"]
    assert s["throttle_reasons"] == ["HwThermalSlowdown"]  # idle is not a throttle
    flags = telemetry.contention({"nvml": s, "cpu": {"busy_fraction": 0.9}})
    assert any("4242" in f for f in flags) and any("HwThermalSlowdown" in f for f in flags)
    assert any("busy CPU" in f for f in flags)
    assert fake.fake_state["inits"] == 0  # every nvmlInit was shut down


def test_nvml_query_a_device_lacks_is_none_not_a_crash(monkeypatch):
    use_nvml(monkeypatch, make_fake_pynvml([SIMULATED["gb10"]], unsupported={"nvmlDeviceGetPowerUsage"}))
    s = telemetry.nvml_snapshot()
    assert s["available"] and s["power_w"] is None and "power_w: NVMLError_NotSupported" in s["unsupported"]


def visible_gpu(monkeypatch, gpus, index):
    """A node with ``gpus`` where CUDA_VISIBLE_DEVICES=index: torch sees one device, NVML all of them. Detected
    over an empty filesystem root, not this host's: on a Jetson, its real device tree would reroute the fake GPU."""
    install_fake_cuda(monkeypatch, [gpus[index]])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", str(index))
    with tempfile.TemporaryDirectory(prefix="no-host-") as root:  # read during detection only
        return detect(root=root)


def test_nvml_follows_cuda_visible_devices_by_uuid(monkeypatch):
    """Before: NVML index 0 (another GPU) supplied the clocks, power and processes of a run on GPU 2."""
    gpus = [g.replace(power_w=100.0 + 10 * i, temperature_c=40 + i) for i, g in enumerate(multi_gpu("h100_sxm", 4))]
    use_nvml(monkeypatch, make_fake_pynvml(gpus, processes={0: [(4242, 2**30)]}))
    info = visible_gpu(monkeypatch, gpus, 2)
    s = telemetry.snapshot(info.kind, busy_interval_s=0, info=info)["nvml"]
    assert s["uuid"] == gpus[2].uuid and s["matched_by"] == f"UUID {gpus[2].uuid}"
    assert (s["power_w"], s["temperature_c"]) == (120.0, 42) and s["other_process_count"] == 0


def test_nvml_falls_back_to_the_pci_bus_id_and_never_silently_to_index_0(monkeypatch):
    gpus = multi_gpu("h100_sxm", 3)
    use_nvml(monkeypatch, make_fake_pynvml(gpus))
    s = telemetry.nvml_snapshot(uuid=None, pci_bus_id="0000:38:00.0")
    assert s["uuid"] == gpus[2].uuid and "PCI bus id 00000000:38:00.0" in s["matched_by"]
    lost = telemetry.nvml_snapshot(uuid="GPU-ffffffff-0000-0000-0000-000000000000")
    assert not lost["available"] and "no NVML device matches" in lost["reason"] and "Not Found" in lost["reason"]


def test_a_containerised_process_does_not_count_itself_as_another(tmp_path, monkeypatch):
    """NVML lists host PIDs; in its own PID namespace this process is one of them under another number."""
    gpus = multi_gpu("h100_sxm", 1)
    use_nvml(monkeypatch, make_fake_pynvml(gpus, processes={0: [(873421, 3 * 2**30)]}))
    install_fake_cuda(monkeypatch, gpus)  # holds a CUDA context: torch.cuda.is_initialized() is True
    info = detect(root=tmp_path)  # tmp_path/proc has none of the host PIDs
    s = telemetry.snapshot(info.kind, busy_interval_s=0, info=info)
    assert s["nvml"]["other_process_count"] == 0 and "PID namespace" in s["nvml"]["processes_note"]
    assert not any("other GPU processes" in f for f in s["contention"])


def test_other_processes_by_pid_namespace(tmp_path):
    me = os.getpid()
    procs = [{"pid": me, "used_memory_bytes": 1}, {"pid": 4242, "used_memory_bytes": 2}]
    assert other_gpu_processes(procs, me, tmp_path) == (1, [procs[1]], None)  # host namespace: named
    host = [{"pid": 500001, "used_memory_bytes": 1}, {"pid": 500002, "used_memory_bytes": 2}]
    count, named, note = other_gpu_processes(host, me, tmp_path, on_gpu=True)
    assert (count, named) == (1, []) and "500001, 500002" in note and "--pid=host" in note
    assert other_gpu_processes(host, me, tmp_path, on_gpu=False)[0] == 2
    (tmp_path / "proc/500001").mkdir(parents=True)
    (tmp_path / "proc/500002").mkdir(parents=True)
    assert other_gpu_processes(host, me, tmp_path, on_gpu=True) == (2, host, None)  # visible: not ours


# --- the timed region -------------------------------------------------------------------------------------

def cuda_region(monkeypatch, gpus, index=0, **nvml_options):
    clock = ManualClock()
    fake = use_nvml(monkeypatch, make_fake_pynvml(gpus, clock=clock, **nvml_options))
    info = visible_gpu(monkeypatch, gpus, index)
    # the thread never wakes: the samples are the two at start and stop
    return RegionMonitor(info, interval_s=60), clock, fake


def test_energy_comes_from_the_counter_over_the_timed_region_only(monkeypatch):
    """Before: 1 s-averaged power samples, and the whole span (warmup, flushes) divided by the timed calls."""
    gpus = [g.replace(power_w=150.0 + 100 * i) for i, g in enumerate(multi_gpu("h100_sxm", 2))]
    region, clock, fake = cuda_region(monkeypatch, gpus, index=1)
    clock.t = 5.0  # warmup: before start, not counted
    region.start()
    clock.t = 7.0  # two seconds of timed calls
    region.stop()
    clock.t = 9.0  # after: not counted
    r = region.result(calls=400)
    assert r["energy_source"] == "nvml total energy counter" and r["matched_by"] == f"UUID {gpus[1].uuid}"
    assert r["energy_j"] == pytest.approx(gpus[1].power_w * 2.0, abs=1e-3)
    assert r["energy_per_call_j"] == pytest.approx(r["energy_j"] / 400)
    assert r["flags"] == [] and r["samples"] == 2 and fake.fake_state["inits"] == 0


def test_no_energy_counter_says_so_instead_of_guessing(monkeypatch):
    region, clock, _ = cuda_region(monkeypatch, multi_gpu("gb10", 1),
                                   unsupported={"nvmlDeviceGetTotalEnergyConsumption"})
    region.start()
    clock.t = 1.0
    region.stop()
    r = region.result(100)
    assert r["energy_j"] is None and r["energy_per_call_j"] is None
    assert r["energy_source"].startswith("none: nvmlDeviceGetTotalEnergyConsumption")
    assert "NotSupported" in r["energy_source"]


def test_a_clock_drop_and_throttle_during_the_region_are_flagged(monkeypatch):
    """Before: telemetry was one snapshot taken before the timed region; a cap biting mid-run went unseen."""
    gpus = multi_gpu("h100_sxm", 1)
    top = int(gpus[0].gpu_clock_mhz or FAKE_SM_CLOCK_MHZ)
    region, clock, _ = cuda_region(monkeypatch, gpus, clock_drop=ClockDrop(after_s=0.5, to_mhz=top * 0.7,
                                                                           reasons=("HwSlowdown",)))
    region.start()
    clock.t = 1.0
    region.stop()
    r = region.result(50)
    assert f"SM clock dropped from {top} to {int(top * 0.7)} MHz during the timed region" in r["flags"]
    assert "throttled during the timed region: HwSlowdown" in r["flags"]
    assert (r["sm_clock_mhz_max"], r["sm_clock_mhz_min"]) == (top, int(top * 0.7))
    assert r["temperature_c_min"] == gpus[0].temperature_c and r["load_pct_max"] == gpus[0].utilization_pct


@pytest.mark.parametrize("reasons, contention", [
    (("SwPowerCap",), False), (("SwPowerCap", "DisplayClockSetting"), False),
    (("SwPowerCap", "ApplicationsClocksSetting"), False),
    (("ApplicationsClocksSetting",), True),  # a fixed ceiling explains no fall part-way through
    (("HwSlowdown",), True), (("SwPowerCap", "HwThermalSlowdown"), True), (("HwPowerBrakeSlowdown",), True),
    (("SyncBoost",), True), ((), True)])
def test_a_clock_drop_the_boards_own_settings_explain_is_not_contention(monkeypatch, reasons, contention):
    """Before: every clocks-event reason and every drop was contention. A dense GEMM on an H100 runs at its power
    limit (SwPowerCap) in every run, and a board whose clocks a user locked reports ApplicationsClocksSetting in every
    run: such a case was never measured "without contention", so its history never started and its regression check
    never ran. DCGM fails a run on HW slowdown, thermal slowdowns and the power brake alone
    (nvvs/src/DcgmRecorder.cpp, CheckForClocksEvent's failureMask); those, sync boost and a drop the power limit
    does not explain stay contention (applications clocks are a fixed ceiling: no fall part-way through is theirs).
    The settings stay in the record, with the clocks they held."""
    gpus = multi_gpu("h100_sxm", 1)
    top = int(gpus[0].gpu_clock_mhz or FAKE_SM_CLOCK_MHZ)
    low = int(top * 0.85)
    region, clock, _ = cuda_region(monkeypatch, gpus, clock_drop=ClockDrop(after_s=0.5, to_mhz=low, reasons=reasons))
    region.start()
    clock.t = 1.0
    region.stop()
    r = region.result(50)
    assert bool(r["flags"]) == contention, r["flags"]
    assert r["throttle_reasons"] == sorted(reasons)  # every reason kept, contention or not
    settings = sorted(set(reasons) & telemetry.CLOCK_SETTING_REASONS)
    if settings:
        assert len(r["settings"]) == 1 and r["settings"][0].startswith(
            f"clocks held by the board's settings: {', '.join(settings)} (SM {low}-{top} MHz)")
    else:
        assert r["settings"] == []
    assert (f"SM clock dropped from {top} to {low} MHz during the timed region" in r["flags"]) == contention


@pytest.mark.parametrize("reasons", [("SwPowerCap",), ("ApplicationsClocksSetting",), ("HwSlowdown",)])
def test_a_measurement_at_the_boards_settings_is_not_under_contention(monkeypatch, tmp_path, reasons):
    """End to end on a simulated H100 whose NVML reports the reason before and throughout the timed calls: the
    measurement's contention (which keeps a case out of its history) names only what disturbs it."""
    import dataclasses
    from roofline import get_hardware
    from roofline_kernels.measure import measure_kernel
    from roofline_kernels.ops import make_gemm
    from roofline_kernels.timer import summarize
    install_device(monkeypatch, "h100_sxm", tmp_path, throttle_reasons=reasons)
    info = dataclasses.replace(detect(root=tmp_path), simulated="h100_sxm")
    kernel = make_gemm(1, 256, 256, precision="bf16", device="cpu", target="cuda")
    m = measure_kernel(kernel, info, get_hardware("h100_sxm"), "hot", "datasheet",
                       timer=lambda *a: summarize([1e-3] * 10, "hot", "simulated"))
    disturbing = reasons == ("HwSlowdown",)
    assert m.contention == (["GPU clocks throttled: HwSlowdown", "throttled during the timed region: HwSlowdown"]
                            if disturbing else [])
    assert (m.telemetry["region"]["settings"] == []) == disturbing


def test_the_sampler_thread_samples_during_the_region(monkeypatch):
    gpus = multi_gpu("h100_sxm", 1)
    use_nvml(monkeypatch, make_fake_pynvml(gpus))
    region = RegionMonitor(visible_gpu(monkeypatch, gpus, 0), interval_s=0.005)
    region.start()
    import time
    deadline = time.monotonic() + 5
    while len(region.samples) < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    region.stop()
    assert region.result(1)["samples"] >= 4  # start, at least two from the thread, stop


def test_jetson_energy_integrates_the_vdd_in_rail(tmp_path, monkeypatch):
    install_device(monkeypatch, "jetson_orin_nano", tmp_path)
    region = RegionMonitor(detect(root=tmp_path), interval_s=60)
    region.start()
    write(tmp_path, "sys/class/devfreq/17000000.gpu/cur_freq", "408000000\n")  # a clock drop mid-run
    write_rails(tmp_path, MODULE_RAILS)
    region.stop()
    r = region.result(10)
    label, mv, ma = MODULE_RAILS[0]
    assert r["energy_source"].startswith("jetson INA3221 VDD_IN")
    assert r["energy_j"] == pytest.approx(mv * ma / 1e6 * (region.samples[-1].t_s - region.samples[0].t_s))
    assert "GPU clock dropped from 625 to 408 MHz during the timed region" in r["flags"]


def test_a_board_without_vdd_in_says_which_rail_is_missing(tmp_path, monkeypatch):
    install_device(monkeypatch, "jetson_agx_orin", tmp_path)  # its rails: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0
    region = RegionMonitor(detect(root=tmp_path), interval_s=60)
    region.start()
    region.stop()
    r = region.result(10)
    assert r["energy_j"] is None and "no INA3221 VDD_IN rail" in r["energy_source"]


def test_a_region_that_never_ran_says_so(monkeypatch):
    """A simulated run synthesises its timing: the timer never starts the region, and result() must cope."""
    gpus = multi_gpu("gb10", 1)
    use_nvml(monkeypatch, make_fake_pynvml(gpus))
    r = RegionMonitor(visible_gpu(monkeypatch, gpus, 0)).result(25)
    assert r["samples"] == 0 and r["flags"] == [] and r["energy_j"] is None
    assert r["energy_source"] == "none: the region was never started (no timed loop ran through it)"


def test_on_the_cpu_the_region_is_cheap_and_quiet():
    region = RegionMonitor(detect("cpu"))  # the host CPU, on a GPU host as well
    region.start()
    region.stop()
    r = region.result(0)
    assert r["flags"] == [] and r["samples"] == 0 and r["energy_per_call_j"] is None and region._thread is None


def test_region_rules_by_hand():
    top = 2000.0
    just_under = top * (1 - CLOCK_DROP_FRACTION) + 1
    assert region_flags([Sample(0, top), Sample(1, just_under)]) == []
    assert region_flags([Sample(0, 1000), Sample(1, top), Sample(2, 1000)]) == \
        ["SM clock dropped from 2000 to 1000 MHz during the timed region"]  # a ramp up is no drop
    assert region_flags([Sample(0, 1000), Sample(1, top)]) == []
    assert integrate_power([Sample(0, power_w=10), Sample(2, power_w=20)]) == 30
    assert integrate_power([Sample(0, power_w=10)]) is None


# --- the host CPU ---------------------------------------------------------------------------------------

def test_cpu_snapshot_from_a_fake_tree(tmp_path):
    write(tmp_path, "proc/loadavg", "1.50 0.80 0.40 2/300 12345\n")
    write(tmp_path, "proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n")
    for i in range(2):
        write(tmp_path, f"sys/devices/system/cpu/cpu{i}/cpufreq/scaling_cur_freq", "3000000\n")
        write(tmp_path, f"sys/devices/system/cpu/cpu{i}/cpufreq/scaling_governor", "performance\n")
    s = telemetry.cpu_snapshot(tmp_path, busy_interval_s=0.001)
    assert s["freq_mhz"] == [3000.0, 3000.0] and s["governor"] == ["performance"] and s["loadavg_1m"] == 1.5
    assert s["busy_fraction"] is None  # the fake /proc/stat does not move: no number rather than a wrong one


def _stat(per_cpu: dict[int, tuple[int, int]], guest: int = 0) -> str:
    """A /proc/stat of CPUs {id: (busy jiffies, idle jiffies)}: its "cpu" line is their sum, as the kernel writes it;
    ``guest`` jiffies of each CPU's user time ran a virtual machine (counted inside user, and again in guest)."""
    def line(name, busy, idle, g):
        return f"{name} {busy} 0 0 {idle} 0 0 0 0 {g} 0"
    rows = [line("cpu ", sum(b for b, _ in per_cpu.values()), sum(i for _, i in per_cpu.values()), guest * len(per_cpu))]
    rows += [line(f"cpu{c}", b, i, guest) for c, (b, i) in sorted(per_cpu.items())]
    return "\n".join(rows + ["intr 0", "ctxt 0"]) + "\n"


def _moving_stat(monkeypatch, tmp_path, before: str, after: str):
    """/proc/stat reads ``before`` until the busy look sleeps, ``after`` once it wakes."""
    write(tmp_path, "proc/stat", before)
    monkeypatch.setattr(telemetry.time, "sleep", lambda s: write(tmp_path, "proc/stat", after))


def test_load_on_a_pinned_process_cpus_is_not_diluted_by_the_host(monkeypatch, tmp_path):
    """A pod pinned to CPUs 4-5 of 64 (a cpuset), both taken by other work. Before: the busy look read the host's
    "cpu" line, 2 of 64 CPUs busy = 3%, under the 25% flag, and the slow run was judged as a clean one. Now it reads
    the process's own CPUs: 100% busy, flagged, and the record says which CPUs it read."""
    idle = {c: (0, 0) for c in range(64)}
    later = {c: ((100, 0) if c in (4, 5) else (0, 100)) for c in range(64)}
    _moving_stat(monkeypatch, tmp_path, _stat(idle), _stat(later))
    assert telemetry.busy_fractions(tmp_path, 0.1)[0] == pytest.approx(2 / 64)  # what the host-wide line says
    _moving_stat(monkeypatch, tmp_path, _stat(idle), _stat(later))
    s = telemetry.cpu_snapshot(tmp_path, busy_interval_s=0.1, cpus={4, 5})
    assert s["busy_fraction"] == 1.0 and s["busy_cpus"] == "4-5" and s["host_busy_fraction"] == pytest.approx(2 / 64)
    assert telemetry.contention({"cpu": s}) == \
        ["busy CPU: others used 100% of this process's CPUs 4-5 before the measurement"]
    # its own CPUs quiet, the host's others busy: still flagged (they share the memory and the cache), and said so
    later = {c: ((0, 100) if c in (4, 5) else (100, 0)) for c in range(64)}
    _moving_stat(monkeypatch, tmp_path, _stat(idle), _stat(later))
    s = telemetry.cpu_snapshot(tmp_path, busy_interval_s=0.1, cpus={4, 5})
    assert s["busy_fraction"] == 0.0 and s["host_busy_fraction"] == pytest.approx(62 / 64)
    assert telemetry.contention({"cpu": s}) == \
        ["busy CPU: others used 97% of the host's CPU time before the measurement (this process's CPUs 4-5 below the "
         "flag), sharing its memory and cache"]


def test_a_stat_without_a_pinned_cpus_line_reads_the_whole_host_and_says_why(monkeypatch, tmp_path):
    before, after = _stat({0: (0, 0), 1: (0, 0)}), _stat({0: (30, 70), 1: (30, 70)})
    _moving_stat(monkeypatch, tmp_path, before, after)
    s = telemetry.cpu_snapshot(tmp_path, busy_interval_s=0.1, cpus={1, 12})
    assert s["busy_fraction"] == pytest.approx(0.3) and "host_busy_fraction" not in s
    assert s["busy_cpus"] == "all (CPU 12 of this process's is not in /proc/stat)"
    assert telemetry.contention({"cpu": s}) == ["busy CPU: 30% of CPU time used by others before the measurement"]


def test_affinity_over_every_listed_cpu_reads_the_hosts_line(monkeypatch, tmp_path):
    """Pinned or not is read from /proc/stat's own CPU lines, not os.cpu_count() (which PYTHON_CPU_COUNT moves)."""
    _moving_stat(monkeypatch, tmp_path, _stat({0: (0, 0), 1: (0, 0)}), _stat({0: (100, 0), 1: (0, 100)}))
    s = telemetry.cpu_snapshot(tmp_path, busy_interval_s=0.1, cpus={0, 1})
    assert s["busy_cpus"] == "all" and s["busy_fraction"] == pytest.approx(0.5) and "host_busy_fraction" not in s


def test_this_process_own_cpu_time_is_not_others(monkeypatch, tmp_path):
    """torch's threads spinning on after a warmup are this process's, not contention. Before: a process pinned to one
    CPU read its own spin as "100% used by others"."""
    _moving_stat(monkeypatch, tmp_path, _stat({0: (0, 0), 1: (0, 0)}), _stat({0: (100, 0), 1: (0, 100)}))
    write(tmp_path, "proc/self/stat", "4242 (python3 x) S " + " ".join(["0"] * 10) + " 500 100 0 0\n")
    real_sleep = telemetry.time.sleep

    def sleep(s):  # the interval: others' nothing, this process 100 jiffies (80 user, 20 system) on CPU 0
        real_sleep(0)
        write(tmp_path, "proc/stat", _stat({0: (100, 0), 1: (0, 100)}))
        write(tmp_path, "proc/self/stat", "4242 (python3 x) S " + " ".join(["0"] * 10) + " 580 120 0 0\n")
    monkeypatch.setattr(telemetry.time, "sleep", sleep)
    write(tmp_path, "proc/stat", _stat({0: (0, 0), 1: (0, 0)}))
    s = telemetry.cpu_snapshot(tmp_path, busy_interval_s=0.1, cpus={0})
    assert s["busy_fraction"] == 0.0 and s["host_busy_fraction"] == 0.0 and telemetry.contention({"cpu": s}) == []


def test_a_look_over_few_cpus_is_stretched_to_enough_ticks(monkeypatch, tmp_path):
    """At 100 Hz, 50 ms of one CPU is 5 jiffies, and two of them (40%) crossed the 25% flag."""
    slept = []
    _moving_stat(monkeypatch, tmp_path, _stat({0: (0, 0), 1: (0, 0)}), _stat({0: (1, 19), 1: (0, 20)}))
    monkeypatch.setattr(telemetry.time, "sleep", lambda s: (slept.append(s), write(
        tmp_path, "proc/stat", _stat({0: (1, 19), 1: (0, 20)}))))
    monkeypatch.setattr(os, "sysconf", lambda name: 100)
    telemetry.cpu_snapshot(tmp_path, busy_interval_s=0.05, cpus={0})
    assert slept == [pytest.approx(telemetry.MIN_BUSY_TICKS / 100)]
    slept.clear()
    write(tmp_path, "proc/stat", _stat({0: (0, 0), 1: (0, 0)}))
    telemetry.cpu_snapshot(tmp_path, busy_interval_s=0.05)  # the host's line: as it was
    assert slept == [0.05]


def test_a_vm_host_guest_time_is_not_counted_twice(monkeypatch, tmp_path):
    """On a KVM host, a guest's time is in user and again in guest (proc(5): "guest ... included in user"). Summing
    every field counted it twice: 50 busy and 50 idle jiffies, 40 of the busy a guest's, read 64% busy, not 50%."""
    _moving_stat(monkeypatch, tmp_path, _stat({0: (0, 0)}), _stat({0: (50, 50)}, guest=40))
    assert telemetry.busy_fractions(tmp_path, 0.1)[0] == pytest.approx(0.5)


def test_own_cpus_is_the_affinity_on_the_real_host_only(monkeypatch, tmp_path):
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no sched_getaffinity on this platform: every CPU counts, which the other tests cover")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5})
    assert telemetry.own_cpus("/") == {4, 5}
    assert telemetry.own_cpus(tmp_path) is None  # a fake tree's CPUs are not this process's
    # an OpenMP thread bound elsewhere (OMP_PROC_BIND): its CPU is this process's too, and its time taken out there
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: ["100", "101"] if str(path) == "/proc/self/task" else
                        real_listdir(path))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0: {4, 5}, 100: {4, 5}, 101: {9}}[pid])
    assert telemetry.own_cpus("/") == {4, 5, 9}


def test_cpu_snapshot_of_an_empty_tree_degrades(tmp_path):
    s = telemetry.cpu_snapshot(tmp_path, busy_interval_s=0.001)
    assert s["available"] and s["freq_mhz"] is None and s["loadavg_1m"] is None and s["busy_fraction"] is None


def test_snapshot_on_this_machine():
    s = telemetry.snapshot("cuda", busy_interval_s=0.01)
    assert "cpu" in s and "nvml" in s and isinstance(s["contention"], list)
    nv = s["nvml"]
    assert nv["name"] if nv["available"] else nv["reason"].startswith("NVML unavailable")


def test_the_fake_pynvml_names_and_types_what_nvidia_ml_py_does():
    """The fake answered busId as bytes (the real struct decodes it on access: str), had a
    nvmlDeviceGetHandleByPciBusId_v2 the real module has not (so the product took that branch only under the fake),
    and lacked UserDefinedClocks, BoardLimit and Reliability (mask 0x200 named nothing under it)."""
    real = pytest.importorskip("pynvml", reason="nvidia-ml-py is not installed (extra 'gpu')")
    from tests.fakes.devices import SIMULATED as DEVICES
    from tests.fakes.nvml import make_fake_pynvml
    fake = make_fake_pynvml([DEVICES["h100_sxm"]])
    for name in dir(fake):
        if name.startswith(("nvmlDevice", "nvmlClocks", "nvmlSystem", "nvmlInit", "nvmlShutdown")):
            assert hasattr(real, name), f"the fake has {name}, nvidia-ml-py has not"
        if name.startswith("nvmlClocks"):
            assert getattr(fake, name) == getattr(real, name), name
    assert {n for n in dir(real) if n.startswith("nvmlClocks")} <= set(dir(fake))
    fake.nvmlInit()
    info = fake.nvmlDeviceGetPciInfo(fake.nvmlDeviceGetHandleByIndex(0))
    struct = real.nvmlPciInfo_t()
    struct.busId = b"00000000:18:00.0"
    assert type(info.busId) is type(struct.busId) is str
    for mask in (0x2, 0x200 | 0x4):  # one name a bit, aliases or not, and the same under both modules
        assert telemetry.throttle_reason_names(mask, fake) == telemetry.throttle_reason_names(mask, real)
    assert telemetry.throttle_reason_names(0x2, real) == ["ApplicationsClocksSetting"]


# --- a MIG slice ----------------------------------------------------------------------------------------

MIG_UUID = "MIG-0b8e9a3c-8f2e-5b1a-9f0e-1c2d3e4f5a6b"


def mig_slice(profile="1g.10gb", sms=16, gib=9.75):
    """An H100's MIG instance as CUDA shows it: the slice's name, SMs and memory; its UUID is the instance's (CUDA
    Driver API, cuDeviceGetUuid: "If the device is in MIG mode, returns its MIG UUID"), which torch prints bare."""
    return SIMULATED["h100_sxm"].replace(cuda_name=f"NVIDIA H100 80GB HBM3 MIG {profile}", sm_count=sms,
                                         memory_bytes=int(gib * 2**30), uuid=MIG_UUID)


def test_a_mig_slice_reads_its_instance_and_its_board(monkeypatch, tmp_path):
    """On a MIG slice, torch's bare UUID is the instance's. Before: it was looked up as "GPU-<uuid>", found nothing,
    and the PCI bus id gave the board, whose process list (all instances, and refused to a user without
    privileges) was the slice's "other GPU processes". Now the instance's handle is found by its MIG UUID; its own
    processes are the ones that share its SMs, and the board's handle gives the clocks, power limit and
    temperature, which nvml.h documents for no MIG handle."""
    board = SIMULATED["h100_sxm"]
    install_device(monkeypatch, "h100_sxm", tmp_path, device=mig_slice(), processes={MIG_UUID: []})
    info = detect(root=tmp_path)
    assert info.uuid == MIG_UUID
    s = telemetry.snapshot(info.kind, busy_interval_s=0, info=info)
    nv = s["nvml"]
    assert nv["matched_by"] == f"UUID {MIG_UUID}" and nv["name"] == "NVIDIA H100 80GB HBM3 MIG 1g.10gb"
    assert nv["sm_clock_mhz"] and nv["power_limit_w"] and nv["temperature_c"] == board.temperature_c
    assert nv["gpu_util_pct"] is None  # not on a MIG-enabled GPU (nvml.h): said in "unsupported", not guessed
    assert "board" in nv["mig"] and nv["other_process_count"] == 0 and s["contention"] == []


def test_on_a_mig_slice_only_its_own_instance_processes_are_contention(monkeypatch, tmp_path):
    other = "MIG-11111111-2222-3333-4444-555555555555"
    neighbour = mig_slice("3g.40gb", 60, 39.4).replace(uuid=other)
    me = os.getpid()
    for mine, contended in (([(me, 2**30)], False), ([(me, 2**30), (4242, 2**30)], True)):
        monkeypatch.undo()
        gpus = [SIMULATED["h100_sxm"]]
        use_nvml(monkeypatch, make_fake_pynvml(gpus, mig={0: [mig_slice(), neighbour]},
                                               processes={MIG_UUID: mine, other: [(5151, 2**34)]}))
        install_fake_cuda(monkeypatch, [mig_slice()])
        info = detect(root=tmp_path)
        s = telemetry.snapshot(info.kind, busy_interval_s=0, info=info)
        assert s["nvml"]["other_process_count"] == int(contended)  # 5151 on the 3g.40gb shares none of its SMs
        assert s["contention"] == (["other GPU processes: 1 (4242)"] if contended else [])


def test_a_mig_slice_region_samples_the_boards_clocks_and_claims_no_energy(monkeypatch, tmp_path):
    """The energy counter is the board's, which every instance shares: divided by this slice's calls it charged
    them the other instances' work and the whole board's idle power. Now the region samples the board's clocks
    and clocks-event reasons (a throttle there slows the slice) and says what the board used, per call nothing."""
    clock = ManualClock()
    gpus = [SIMULATED["h100_sxm"]]
    top = int(gpus[0].gpu_clock_mhz or FAKE_SM_CLOCK_MHZ)
    use_nvml(monkeypatch, make_fake_pynvml(gpus, mig={0: [mig_slice()]}, clock=clock,
                                           clock_drop=ClockDrop(after_s=0.5, to_mhz=top * 0.7)))
    install_fake_cuda(monkeypatch, [mig_slice()])
    region = RegionMonitor(detect(root=tmp_path), interval_s=60)
    region.start()
    clock.t = 1.0
    region.stop()
    r = region.result(100)
    assert r["matched_by"] == f"UUID {MIG_UUID}" and r["sm_clock_mhz_max"] == top
    assert "throttled during the timed region: HwSlowdown" in r["flags"]
    assert r["energy_j"] is None and r["energy_per_call_j"] is None and "MIG" in r["energy_source"]
    assert r["board_energy_j"] == pytest.approx(gpus[0].power_w * 1.0, abs=1e-3)


def test_a_mig_instance_is_found_whichever_prefix_detection_gave_its_uuid(monkeypatch):
    """A slice whose CUDA name lacks its profile is spelt "GPU-<its MIG UUID>" by detection: the lookup tries the
    other prefix before the PCI bus id (which gives the board, and with it every instance's processes)."""
    from roofline_kernels.nvml import find_handle, open_target
    fake = make_fake_pynvml([SIMULATED["h100_sxm"]], mig={0: [mig_slice()]})
    fake.nvmlInit()
    bare, bus = MIG_UUID.split("-", 1)[1], SIMULATED["h100_sxm"].pci_bus_id
    for spelt in (MIG_UUID, f"GPU-{bare}", bare):
        t = open_target(fake, spelt, bus, "NVIDIA H100 80GB HBM3")
        assert t.matched_by == f"UUID {MIG_UUID}" and t.mig and t.board is not t.handle and t.processes
    board = open_target(fake, None, bus, "NVIDIA H100 80GB HBM3")
    assert board.matched_by.startswith("PCI bus id") and not board.mig and board.board is board.handle
    with pytest.raises(fake.NVMLError_NotSupported):  # the instance's handle has no clock of its own (see the fake)
        fake.nvmlDeviceGetClockInfo(t.handle, fake.NVML_CLOCK_SM)
    # a plain GPU not found: the other prefix is tried after Not Found only, and said
    with pytest.raises(LookupError, match=r"UUID GPU-dead\S* \(NVMLError_NotFound.*UUID MIG-dead"):
        find_handle(fake, "GPU-dead0000-0000-0000-0000-000000000000")
    fake.nvmlShutdown()


def _one_second_region(info, clock, calls=100) -> dict:
    """A timed region of one second on the fake NVML's ``clock``, its record."""
    region = RegionMonitor(info, interval_s=60)
    region.start()
    clock.t += 1.0
    region.stop()
    return region.result(calls)


def test_a_slice_whose_lookup_ends_on_its_board_is_still_a_slice(monkeypatch, tmp_path):
    """A MIG-named device whose UUID NVML does not know (found by its PCI bus id: the board). Before the name counted,
    it was a whole board: per-call energy from the board's counter, and the board's process list (every instance's)
    as its contention. Now it stays a slice: no energy per call, its processes unknown, and the record says why."""
    clock = ManualClock()
    gpus = [SIMULATED["h100_sxm"]]
    lost = mig_slice().replace(uuid="MIG-99999999-9999-9999-9999-999999999999")  # not among the board's instances
    use_nvml(monkeypatch, make_fake_pynvml(gpus, mig={0: [mig_slice()]}, clock=clock, mig_privileged=True,
                                           processes={MIG_UUID: [(5151, 2**30)]}))
    install_fake_cuda(monkeypatch, [lost])
    info = detect(root=tmp_path)
    s = telemetry.snapshot(info.kind, busy_interval_s=0, info=info)
    nv = s["nvml"]
    assert nv["matched_by"].startswith("PCI bus id") and "not the MIG slice's own instance" in nv["notes"][0]
    assert nv["other_process_count"] is None and s["contention"] == [] and nv["sm_clock_mhz"]
    r = _one_second_region(info, clock)
    assert r["energy_per_call_j"] is None and "a MIG slice" in r["energy_source"]


def test_a_mig_instance_whose_board_nvml_withholds_reads_no_board_state(monkeypatch, tmp_path):
    """``nvmlDeviceGetDeviceHandleFromMigDeviceHandle`` refused: the instance's handle is not asked in its stead (nvml.h
    documents none of the board's readings there), and the record says why."""
    clock = ManualClock()
    fake = make_fake_pynvml([SIMULATED["h100_sxm"]], mig={0: [mig_slice()]}, clock=clock,
                            unsupported={"nvmlDeviceGetDeviceHandleFromMigDeviceHandle"})
    use_nvml(monkeypatch, fake)
    install_fake_cuda(monkeypatch, [mig_slice()])
    info = detect(root=tmp_path)
    nv = telemetry.snapshot(info.kind, busy_interval_s=0, info=info)["nvml"]
    assert nv["mig"] and "NVML gave no board" in nv["notes"][0] and "unsupported" not in nv
    assert nv["sm_clock_mhz"] is None and nv["other_process_count"] == 0
    r = _one_second_region(info, clock)
    assert r["energy_j"] is None and "no board reading either" in r["energy_source"]
    assert any("NVML gave no board" in n for n in r["notes"])
    assert not any(n.startswith(("sm_clock", "throttle", "temperature", "energy")) for n in r["notes"])  # not asked


@pytest.mark.parametrize("profile, sms, shared", [("1g.10gb", 16, True), ("1c.3g.40gb", 16, True),
                                                  ("7g.80gb", 132, False)])
def test_a_slice_held_at_the_boards_power_limit_says_others_may_have_reached_it(monkeypatch, tmp_path, profile, sms,
                                                                                shared):
    """SwPowerCap is a standing setting of a whole board (its own dense GEMM reaches the limit in every run). On a
    slice the limit is the whole board's: other instances' load may have brought it on, unseen. The record says so
    (it stays a setting: a slice that reaches it alone would otherwise never start its history)."""
    clock = ManualClock()
    dev = mig_slice(profile, sms, 9.75)
    use_nvml(monkeypatch, make_fake_pynvml([SIMULATED["h100_sxm"]], mig={0: [dev]}, clock=clock,
                                           throttle_reasons=("SwPowerCap",)))
    install_fake_cuda(monkeypatch, [dev])
    r = _one_second_region(detect(root=tmp_path), clock)
    assert r["flags"] == [] and len(r["settings"]) == 1 and "SwPowerCap" in r["settings"][0]
    assert ("other instances' or VMs' load may have brought it on" in r["settings"][0]) == shared


def test_a_vgpu_claims_no_energy_per_call(monkeypatch, tmp_path):
    """A guest's vGPU (time-sliced here): NVIDIA's vGPU guide lists no energy among a guest's metrics, so a counter it
    reads is not shown to be its own; it is said, not divided by its calls."""
    clock = ManualClock()
    dev = SIMULATED["h100_sxm"].replace(cuda_name="NVIDIA H100XM-20C", memory_bytes=20 * 2**30)
    use_nvml(monkeypatch, make_fake_pynvml([dev], clock=clock))
    install_fake_cuda(monkeypatch, [dev])
    r = _one_second_region(detect(root=tmp_path), clock)
    assert r["energy_per_call_j"] is None and r["energy_source"].startswith("none: a vGPU")
