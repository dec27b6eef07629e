"""Telemetry: fake Jetson sysfs trees, a fake NVML, the absent paths, contention flags."""
import sys
import types

import pytest

from kernels import telemetry


def write(root, rel, text):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def jetson_tree(root, layout="jp6"):
    """Mirrors the real layouts: JetPack 6 names the node 17000000.gpu, JetPack 5 17000000.ga10b."""
    node = "17000000.gpu" if layout == "jp6" else "17000000.ga10b"
    dev = root / "sys/class/devfreq" / node
    write(root, f"sys/class/devfreq/{node}/device/of_node/name", ("gpu" if layout == "jp6" else "ga10b") + "\x00")
    write(root, f"sys/class/devfreq/{node}/cur_freq", "306000000\n")
    write(root, f"sys/class/devfreq/{node}/min_freq", "306000000\n")
    write(root, f"sys/class/devfreq/{node}/max_freq", "1020000000\n")
    write(root, f"sys/class/devfreq/{node}/available_frequencies", "306000000 612000000 1020000000\n")
    write(root, f"sys/class/devfreq/{node}/device/load", "734\n")
    write(root, "sys/kernel/nvpmodel_emc_cap/emc_iso_cap", "3199000000\n")
    hw = "sys/bus/i2c/devices/1-0040/hwmon/hwmon3"
    write(root, "sys/bus/i2c/devices/1-0040/name", "ina3221\n")
    for n, (label, mv, ma) in enumerate([("VDD_IN", 5072, 1480), ("VDD_CPU_GPU_CV", 5072, 560),
                                         ("VDD_SOC", 5072, 384)], start=1):
        write(root, f"{hw}/in{n}_label", label + "\n")
        write(root, f"{hw}/in{n}_input", f"{mv}\n")
        write(root, f"{hw}/curr{n}_input", f"{ma}\n")
    return dev


NVPMODEL_Q = "NV Power Mode: MAXN_SUPER\n2\n"


@pytest.mark.parametrize("layout", ["jp6", "jp5"])
def test_jetson_snapshot_from_a_fake_tree(tmp_path, layout):
    jetson_tree(tmp_path, layout)
    s = telemetry.jetson_snapshot(tmp_path, nvpmodel_output=NVPMODEL_Q)
    assert s["available"] and s["gpu_cur_mhz"] == 306 and s["gpu_max_mhz"] == 1020
    assert s["gpu_available_mhz"] == [306, 612, 1020] and s["gpu_load_pct"] == 73.4
    assert s["emc_cap_mhz"] == 3199 and s["power_mode"] == {"mode": "MAXN_SUPER", "id": 2}
    assert s["rails"]["VDD_IN"]["power_mw"] == pytest.approx(5072 * 1480 / 1000)
    assert s["board_power_w"] == pytest.approx(7.50656)


def test_old_l4t_path_and_gpu0_load(tmp_path):
    base = "sys/devices/17000000.ga10b/devfreq/17000000.ga10b"
    write(tmp_path, f"{base}/cur_freq", "624750000\n")
    write(tmp_path, "sys/devices/gpu.0/load", "120\n")
    s = telemetry.jetson_snapshot(tmp_path, nvpmodel_output="")
    assert s["gpu_cur_mhz"] == 624.75 and s["gpu_load_pct"] == 12.0
    assert s["rails"] == {} and s["board_power_w"] is None and s["power_mode"] == {"mode": None, "id": None}


def test_jetson_absent_is_not_available(tmp_path):
    s = telemetry.jetson_snapshot(tmp_path, nvpmodel_output="")
    assert s == {"available": False, "reason": "no Jetson GPU devfreq node under /sys/class/devfreq"}


def test_nvml_absent_degrades(monkeypatch):
    broken = types.ModuleType("pynvml")

    def init():
        raise RuntimeError("NVML Shared Library Not Found")

    broken.nvmlInit = init
    monkeypatch.setitem(sys.modules, "pynvml", broken)
    s = telemetry.nvml_snapshot()
    assert not s["available"] and "NVML Shared Library Not Found" in s["reason"]
    with telemetry.PowerSampler() as sampler:
        pass
    assert sampler.result() == {"available": False, "reason": "NVML unavailable: RuntimeError"}


def fake_nvml(power_mw=250_000, mask=0, procs=()):
    m = types.ModuleType("pynvml")
    m.NVML_TEMPERATURE_GPU, m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM = 0, 1, 2
    m.nvmlClocksEventReasonGpuIdle, m.nvmlClocksEventReasonSwPowerCap = 0x1, 0x4
    m.nvmlClocksEventReasonHwThermalSlowdown = 0x40
    m.nvmlInit = m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetHandleByIndex = lambda i: "h"
    m.nvmlDeviceGetName = lambda h: b"NVIDIA GB10"
    m.nvmlSystemGetDriverVersion = lambda: "580.95"
    m.nvmlDeviceGetPowerUsage = lambda h: power_mw
    m.nvmlDeviceGetEnforcedPowerLimit = lambda h: 140_000
    m.nvmlDeviceGetTemperature = lambda h, s: 61
    m.nvmlDeviceGetClockInfo = lambda h, c: {1: 2418, 2: 4266}[c]
    m.nvmlDeviceGetMaxClockInfo = lambda h, c: 2418
    m.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=97, memory=80)
    m.nvmlDeviceGetCurrentClocksEventReasons = lambda h: mask
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: [types.SimpleNamespace(pid=p, usedGpuMemory=2**30)
                                                         for p in procs]
    return m


def test_nvml_snapshot_and_contention(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(mask=0x1 | 0x40, procs=(4242,)))
    s = telemetry.nvml_snapshot()
    assert s["available"] and s["name"] == "NVIDIA GB10" and s["power_w"] == 250 and s["sm_clock_mhz"] == 2418
    assert s["throttle_reasons"] == ["HwThermalSlowdown"]  # idle is not a throttle
    flags = telemetry.contention({"nvml": s, "cpu": {"busy_fraction": 0.9}})
    assert any("4242" in f for f in flags) and any("HwThermalSlowdown" in f for f in flags)
    assert any("busy CPU" in f for f in flags)


def test_nvml_query_a_device_lacks_is_none_not_a_crash(monkeypatch):
    m = fake_nvml()

    def unsupported(h):
        raise RuntimeError("Not Supported")

    m.nvmlDeviceGetPowerUsage = unsupported
    monkeypatch.setitem(sys.modules, "pynvml", m)
    s = telemetry.nvml_snapshot()
    assert s["available"] and s["power_w"] is None and "power_w: RuntimeError" in s["unsupported"]


def test_power_sampler_averages_power(monkeypatch):
    import time
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(power_mw=100_000))
    with telemetry.PowerSampler(interval_s=0.002) as sampler:
        time.sleep(0.05)
    r = sampler.result(kernel_calls=10)
    assert r["available"] and r["avg_power_w"] == 100 and r["energy_j"] == pytest.approx(100 * r["span_s"])
    assert r["energy_per_call_j"] == pytest.approx(r["energy_j"] / 10)


def test_cpu_snapshot_from_a_fake_tree(tmp_path):
    write(tmp_path, "proc/loadavg", "1.50 0.80 0.40 2/300 12345\n")
    write(tmp_path, "proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n")
    for i in range(2):
        write(tmp_path, f"sys/devices/system/cpu/cpu{i}/cpufreq/scaling_cur_freq", "3000000\n")
        write(tmp_path, f"sys/devices/system/cpu/cpu{i}/cpufreq/scaling_governor", "performance\n")
    s = telemetry.cpu_snapshot(tmp_path, busy_interval_s=0.001)
    assert s["freq_mhz"] == [3000.0, 3000.0] and s["governor"] == ["performance"] and s["loadavg_1m"] == 1.5
    assert s["busy_fraction"] is None  # the fake /proc/stat does not move: no number rather than a wrong one


def test_cpu_snapshot_of_an_empty_tree_degrades(tmp_path):
    s = telemetry.cpu_snapshot(tmp_path, busy_interval_s=0.001)
    assert s["available"] and s["freq_mhz"] is None and s["loadavg_1m"] is None and s["busy_fraction"] is None


def test_snapshot_on_this_machine():
    s = telemetry.snapshot("cuda", busy_interval_s=0.01)
    assert "cpu" in s and "nvml" in s and isinstance(s["contention"], list)
    nv = s["nvml"]
    assert nv["name"] if nv["available"] else nv["reason"].startswith("NVML unavailable")
