"""What the machine was doing while we measured: clocks, power, load, throttling, other users.

Sources: NVML via ``nvidia-ml-py`` (module ``pynvml``), Jetson sysfs (paths move between L4T
releases, so they are searched for under a root that tests point at fake trees), and Linux CPU
sysfs/procfs. Every source degrades to ``{"available": False, "reason": ...}``, never an exception.
``contention`` turns a snapshot into the flags a report shows next to a measured number.
"""
from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

BUSY_CPU_FRACTION = 0.25  # other processes using more than this share of the CPUs flag contention


def _read(path: Path) -> str | None:
    try:
        return path.read_text().replace("\x00", "").strip()
    except OSError:
        return None


def _num(path: Path):
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


# --- NVML -----------------------------------------------------------------------------------------

def nvml_snapshot(index: int = 0) -> dict:
    try:
        import pynvml
        pynvml.nvmlInit()
    except Exception as e:  # no library, no driver, no GPU
        return {"available": False, "reason": f"NVML unavailable: {type(e).__name__}: {e}"}
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(index)
        out = {"available": True, "name": _s(pynvml.nvmlDeviceGetName(h)),
               "driver": _s(pynvml.nvmlSystemGetDriverVersion())}
        for key, call in (
                ("power_w", lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000),
                ("power_limit_w", lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000),
                ("temperature_c", lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
                ("sm_clock_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
                ("mem_clock_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)),
                ("max_sm_clock_mhz", lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM)),
                ("gpu_util_pct", lambda: pynvml.nvmlDeviceGetUtilizationRates(h).gpu),
                ("mem_util_pct", lambda: pynvml.nvmlDeviceGetUtilizationRates(h).memory),
                ("throttle_reasons", lambda: throttle_reason_names(
                    pynvml.nvmlDeviceGetCurrentClocksEventReasons(h), pynvml)),
                ("other_processes", lambda: [
                    {"pid": p.pid, "used_memory_bytes": p.usedGpuMemory}
                    for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h) if p.pid != _pid()])):
            try:
                out[key] = call()
            except Exception as e:  # a query the device or driver does not support
                out[key] = None
                out.setdefault("unsupported", []).append(f"{key}: {type(e).__name__}")
        return out
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def _s(x):
    return x.decode() if isinstance(x, bytes) else x


def _pid():
    import os
    return os.getpid()


def throttle_reason_names(mask: int, pynvml) -> list[str]:
    """Names of the set bits of an NVML clocks-event mask, idle excluded (idle is not a throttle)."""
    names = []
    for attr in dir(pynvml):
        m = re.fullmatch(r"nvmlClocksEventReason(\w+)", attr) or re.fullmatch(r"nvmlClocksThrottleReason(\w+)", attr)
        if not m or m.group(1) in ("None", "All", "GpuIdle", "Unknown"):
            continue
        bit = getattr(pynvml, attr)
        if isinstance(bit, int) and bit and mask & bit and m.group(1) not in names:
            names.append(m.group(1))
    return sorted(names)


class PowerSampler:
    """Samples NVML board power in a background thread: average power and energy of a measured span."""

    def __init__(self, index: int = 0, interval_s: float = 0.01):
        self.index, self.interval_s = index, interval_s
        self.samples: list[tuple[float, float]] = []
        self.reason = ""
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        try:
            import pynvml
            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self.index)
        except Exception as e:
            self.reason = f"NVML unavailable: {type(e).__name__}"
            return self

        def run():
            while not self._stop.is_set():
                try:
                    self.samples.append((time.perf_counter(), pynvml.nvmlDeviceGetPowerUsage(handle) / 1000))
                except Exception as e:
                    self.reason = f"power query failed: {type(e).__name__}"
                    return
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join()
        return False

    def result(self, kernel_calls: int = 1) -> dict:
        if len(self.samples) < 2:
            return {"available": False, "reason": self.reason or "too few power samples"}
        span = self.samples[-1][0] - self.samples[0][0]
        avg = sum(p for _, p in self.samples) / len(self.samples)
        return {"available": True, "avg_power_w": avg, "energy_j": avg * span, "span_s": span,
                "energy_per_call_j": avg * span / max(1, kernel_calls), "samples": len(self.samples)}


# --- Jetson ---------------------------------------------------------------------------------------

def find_jetson_gpu_devfreq(root: Path) -> Path | None:
    for d in sorted((root / "sys/class/devfreq").glob("*")):
        node = _read(d / "device/of_node/name")
        if node in ("ga10b", "gpu") or re.search(r"(ga10b|\.gpu)$", d.name):
            return d
    for old in ("sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu",
                "sys/devices/17000000.ga10b/devfreq/17000000.ga10b"):
        if (root / old).is_dir():
            return root / old
    return None


def ina3221_rails(root: Path) -> dict:
    """{rail label: {"voltage_mv", "current_ma", "power_mw"}} from every INA3221 hwmon."""
    rails = {}
    for name_file in sorted((root / "sys/bus/i2c/devices").glob("*/name")):
        if _read(name_file) != "ina3221":
            continue
        for hwmon in sorted(name_file.parent.glob("hwmon/hwmon*")):
            for label_file in sorted(hwmon.glob("in*_label")):
                n = re.fullmatch(r"in(\d+)_label", label_file.name).group(1)
                mv, ma = _num(hwmon / f"in{n}_input"), _num(hwmon / f"curr{n}_input")
                rails[_read(label_file)] = {"voltage_mv": mv, "current_ma": ma,
                                            "power_mw": mv * ma / 1000 if mv is not None and ma is not None else None}
    return rails


def parse_nvpmodel(text: str) -> dict:
    """``nvpmodel -q`` output -> {"mode": NAME, "id": N}."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    ids = re.findall(r"^\s*(\d+)\s*$", text, re.M)
    return {"mode": m.group(1) if m else None, "id": int(ids[-1]) if ids else None}


def jetson_snapshot(root: str | Path = "/", nvpmodel_output: str | None = None) -> dict:
    root = Path(root)
    gpu = find_jetson_gpu_devfreq(root)
    if gpu is None:
        return {"available": False, "reason": "no Jetson GPU devfreq node under /sys/class/devfreq"}
    out = {"available": True, "gpu_devfreq": str(gpu.relative_to(root))}
    for key in ("cur_freq", "min_freq", "max_freq"):
        hz = _num(gpu / key)
        out[f"gpu_{key.replace('_freq', '')}_mhz"] = hz / 1e6 if hz is not None else None
    avail = _read(gpu / "available_frequencies")
    out["gpu_available_mhz"] = [int(x) / 1e6 for x in avail.split()] if avail else None
    load = _num(gpu / "device/load")
    load = load if load is not None else _num(root / "sys/devices/gpu.0/load")
    out["gpu_load_pct"] = load / 10 if load is not None else None
    emc = _num(root / "sys/kernel/nvpmodel_emc_cap/emc_iso_cap") or _num(root / "sys/kernel/nvpmodel_clk_cap/emc")
    out["emc_cap_mhz"] = emc / 1e6 if emc else None
    rate = _num(root / "sys/kernel/debug/bpmp/debug/clk/emc/rate")
    out["emc_rate_mhz"] = rate / 1e6 if rate else None
    out["rails"] = ina3221_rails(root)
    total = out["rails"].get("VDD_IN", {}).get("power_mw")
    out["board_power_w"] = total / 1000 if total is not None else None
    if nvpmodel_output is None:
        try:
            nvpmodel_output = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            nvpmodel_output = ""
    out["power_mode"] = parse_nvpmodel(nvpmodel_output)
    return out


# --- CPU ------------------------------------------------------------------------------------------

def _proc_stat_times(root: Path):
    line = (_read(root / "proc/stat") or "").splitlines()[:1]
    if not line or not line[0].startswith("cpu "):
        return None
    vals = [int(x) for x in line[0].split()[1:]]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)
    return sum(vals), idle


def cpu_busy_fraction(root: str | Path = "/", interval_s: float = 0.1) -> float | None:
    """Share of all CPU time that was busy over a short interval (our process sleeps meanwhile)."""
    root = Path(root)
    a = _proc_stat_times(root)
    time.sleep(interval_s)
    b = _proc_stat_times(root)
    if a is None or b is None or b[0] == a[0]:
        return None
    return 1 - (b[1] - a[1]) / (b[0] - a[0])


def cpu_snapshot(root: str | Path = "/", busy_interval_s: float = 0.1) -> dict:
    root = Path(root)
    freqs, governors = [], set()
    for cpu in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*")):
        khz = _num(cpu / "cpufreq/scaling_cur_freq")
        if khz:
            freqs.append(khz / 1000)
        gov = _read(cpu / "cpufreq/scaling_governor")
        if gov:
            governors.add(gov)
    load = (_read(root / "proc/loadavg") or "").split()
    return {"available": True, "freq_mhz": freqs or None, "governor": sorted(governors) or None,
            "loadavg_1m": float(load[0]) if load else None,
            "busy_fraction": cpu_busy_fraction(root, busy_interval_s) if busy_interval_s else None}


def snapshot(kind: str = "cpu", root: str | Path = "/", busy_interval_s: float = 0.1) -> dict:
    """Telemetry for a device kind ("cpu", "cuda", "jetson") plus the host CPU, with contention flags."""
    snap = {"cpu": cpu_snapshot(root, busy_interval_s)}
    if kind == "cuda":
        snap["nvml"] = nvml_snapshot()
    if kind == "jetson":
        snap["jetson"] = jetson_snapshot(root)
    snap["contention"] = contention(snap)
    return snap


def contention(snap: dict) -> list[str]:
    flags = []
    nv = snap.get("nvml") or {}
    if nv.get("available"):
        if nv.get("other_processes"):
            flags.append(f"other GPU processes: {', '.join(str(p['pid']) for p in nv['other_processes'])}")
        if nv.get("throttle_reasons"):
            flags.append(f"GPU clocks throttled: {', '.join(nv['throttle_reasons'])}")
    busy = (snap.get("cpu") or {}).get("busy_fraction")
    if busy is not None and busy > BUSY_CPU_FRACTION:
        flags.append(f"busy CPU: {busy:.0%} of CPU time used by others before the measurement")
    js = snap.get("jetson") or {}
    if js.get("available") and js.get("gpu_cur_mhz") and js.get("gpu_max_mhz") and \
            js["gpu_cur_mhz"] < 0.9 * js["gpu_max_mhz"] and (js.get("gpu_load_pct") or 0) > 50:
        flags.append(f"Jetson GPU at {js['gpu_cur_mhz']:g} of {js['gpu_max_mhz']:g} MHz under load")
    return flags
