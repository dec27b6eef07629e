"""What the machine was doing while we measured: clocks, power, load, throttling, other users.

Sources: NVML via ``nvidia-ml-py`` (module ``pynvml``; roofline_kernels/nvml.py picks the handle of the GPU torch
measures), Jetson sysfs (roofline_kernels/jetson.py, under a root that tests point at fake trees), and Linux CPU
sysfs/procfs. Every source degrades to ``{"available": False, "reason": ...}``, never an exception.

- ``snapshot``: one look before a measurement (with ``info``: the device's own root and NVML handle).
- ``RegionMonitor`` (roofline_kernels/region.py, built on this module): samples *during* the timed region and measures its energy.
- ``contention``: the flags a report shows next to a measured number.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

from . import nvml as _nvml
from .cgroup import own_cpus
from .jetson import jetson_snapshot, read_int, read_text

BUSY_CPU_FRACTION = 0.25  # other processes using more than this share of the CPUs flag contention

# Clocks-event reasons that are the board's own standing settings, not a disturbance of one measurement: its enforced
# power limit (SwPowerCap: a dense GEMM on a data-centre board runs at it, every run alike; the limit itself is in the
# calibration's fingerprint), applications clocks a user set (ApplicationsClocksSetting, alias UserDefinedClocks:
# ``-ac``; nvml.h documents the bit for applications clocks only, and NVML 13's header marks it "No longer used";
# whether ``-lgc`` raises it is documented nowhere) and the display clock. Counted as contention, they kept every such
# case out of its history, so its regression check never ran. NVIDIA's validation suite fails a run on HW slowdown, SW
# and HW thermal slowdown and the power brake alone (DCGM, nvvs/src/DcgmRecorder.cpp,
# DcgmRecorder::CheckForClocksEvent's ``failureMask``). Those, sync boost (other GPUs' load sets it) and any reason not
# named here stay contention. The record keeps every reason.
CLOCK_SETTING_REASONS = frozenset({"SwPowerCap", "ApplicationsClocksSetting", "UserDefinedClocks",
                                   "DisplayClockSetting"})


def disturbing(reasons) -> list[str]:
    """The clocks-event reasons that make a measurement unrepresentative (contention): all but the board's settings."""
    return sorted(r for r in reasons if r not in CLOCK_SETTING_REASONS)


def settings_note(reasons, clock_span=None, shared: bool = False) -> str | None:
    """What held the clocks by the board's own settings (not contention), with the clocks seen; None if nothing.
    ``shared``: the device shares its board (``roofline.hardware.shares_board``), whose power limit other tenants'
    load may have reached: said so, since this device's own load may not have reached it (the run is kept)."""
    held = sorted(r for r in reasons if r in CLOCK_SETTING_REASONS)
    if not held:
        return None
    seen = f" (SM {clock_span[0]:g}-{clock_span[1]:g} MHz)" if clock_span and None not in clock_span else ""
    note = f"clocks held by the board's settings: {', '.join(held)}{seen}; a standing condition, not contention"
    if shared and "SwPowerCap" in held:
        note += ("; the power limit is the whole board's, which every tenant on it draws on: other instances' or "
                 "VMs' load may have brought it on, which this device cannot see")
    return note


# --- NVML -----------------------------------------------------------------------------------------

def throttle_reason_names(mask: int, pynvml) -> list[str]:
    """Names of the set bits of an NVML clocks-event mask, idle excluded (idle is not a throttle): one name a bit,
    the first in sorted order of the names pynvml gives it (0x2 is both ApplicationsClocksSetting and its alias
    UserDefinedClocks, and was reported twice)."""
    by_bit: dict[int, str] = {}
    for attr in sorted(dir(pynvml)):
        m = re.fullmatch(r"nvmlClocksEventReason(\w+)", attr) or re.fullmatch(r"nvmlClocksThrottleReason(\w+)", attr)
        if not m or m.group(1) in ("None", "All", "GpuIdle", "Unknown"):
            continue
        bit = getattr(pynvml, attr)
        if isinstance(bit, int) and bit and bit & (bit - 1) == 0 and mask & bit:
            by_bit[bit] = min(by_bit.get(bit, m.group(1)), m.group(1))
    return sorted(by_bit.values())


def nvml_queries(pynvml, h) -> dict:
    """name -> zero-argument query of the handle's state (each may raise NOT_SUPPORTED)."""
    return {
        "power_w": lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000,
        "energy_mj": lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h),
        "power_limit_w": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000,
        "temperature_c": lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU),
        "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        "mem_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
        "max_sm_clock_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
        # applications clocks (``nvidia-smi -ac``) and their default: a board set below its default runs every roof
        # slower under the same max clock (locked clocks, ``-lgc``, have no NVML getter)
        "app_sm_clock_mhz": lambda: pynvml.nvmlDeviceGetApplicationsClock(h, pynvml.NVML_CLOCK_SM),
        "default_app_sm_clock_mhz": lambda: pynvml.nvmlDeviceGetDefaultApplicationsClock(h, pynvml.NVML_CLOCK_SM),
        "gpu_util_pct": lambda: pynvml.nvmlDeviceGetUtilizationRates(h).gpu,
        "mem_util_pct": lambda: pynvml.nvmlDeviceGetUtilizationRates(h).memory,
        "throttle_reasons": lambda: throttle_reason_names(pynvml.nvmlDeviceGetCurrentClocksEventReasons(h), pynvml),
    }


def run_queries(queries: dict, out: dict, names=None) -> dict:
    """Fill ``out`` with each query's value, or None and a note in ``out["unsupported"]``."""
    for key in names or queries:
        try:
            out[key] = queries[key]()
        except Exception as e:  # a query the device or driver does not support
            out[key] = None
            out.setdefault("unsupported", []).append(f"{key}: {type(e).__name__}")
    return out


def nvml_snapshot(index: int = 0, uuid: str | None = None, pci_bus_id: str | None = None,
                  root: str | Path = "/", name: str | None = None) -> dict:
    """The measured GPU's state (matched by UUID / PCI bus id; index ``index`` only when neither is known; ``name``:
    its CUDA name, which says whether it is a MIG slice).

    ``power_w`` is NVML's board power: a 1 s average on Ampere (except GA100) and newer (NVML docs), so
    it describes the last second, not a measurement; RegionMonitor uses the energy counter instead."""
    try:
        with _nvml.session() as pynvml:
            return _describe(pynvml, uuid, pci_bus_id, index, root, name)
    except Exception as e:  # no library, no driver, no GPU
        return {"available": False, "reason": f"NVML unavailable: {type(e).__name__}: {e}"}


MIG_UNASKED = ("gpu_util_pct", "mem_util_pct")  # "not currently supported" on a MIG-enabled GPU (nvml.h L7096)


def _describe(pynvml, uuid, pci_bus_id, index, root, name=None) -> dict:
    try:
        t = _nvml.open_target(pynvml, uuid, pci_bus_id, name, index)
    except Exception as e:
        return {"available": False, "reason": str(e) if isinstance(e, LookupError) else _nvml.error_text(e)}
    h = t.handle
    out = {"available": True, "matched_by": t.matched_by}
    if t.mig:
        out["mig"] = _nvml.MIG_READINGS
    if t.notes:
        out["notes"] = list(t.notes)
    run_queries({"name": lambda: _nvml.as_str(pynvml.nvmlDeviceGetName(h)),
                 "uuid": lambda: _nvml.as_str(pynvml.nvmlDeviceGetUUID(h)),
                 "driver": lambda: _nvml.as_str(pynvml.nvmlSystemGetDriverVersion())}, out)
    queries = nvml_queries(pynvml, t.board)
    if t.board is None:  # a MIG instance whose board NVML withheld: none of the board's state (t.notes says why)
        out.update(dict.fromkeys(queries))
        queries = {}
    for key in MIG_UNASKED if t.mig else ():
        queries.pop(key, None)
        out[key] = None
    run_queries(queries, out)
    if not t.processes:
        out.update(other_process_count=None, other_processes=None)
        return out
    try:
        procs = _nvml.running_processes(pynvml, h)
        count, named, note = _nvml.other_gpu_processes(procs, _nvml.own_pid(), root)
        out.update(gpu_processes=procs, other_process_count=count, other_processes=named, processes_note=note)
    except Exception as e:
        out.update(other_process_count=None, other_processes=None)
        out.setdefault("unsupported", []).append(f"other_processes: {type(e).__name__}")
    return out


# --- CPU ------------------------------------------------------------------------------------------

def _stat(root: Path) -> dict[str, tuple[int, int]]:
    """{"cpu": (total, idle), "cpu0": ..., ...} jiffies from one read of /proc/stat. The first eight fields are the
    whole: guest and guest_nice are already inside user and nice (proc(5)), so summing them counted a KVM host's guest
    time twice. Idle is idle + iowait."""
    out = {}
    for line in (read_text(root / "proc/stat") or "").splitlines():
        words = line.split()
        if not words or not words[0].startswith("cpu"):
            continue
        try:
            vals = [int(x) for x in words[1:9]]
        except ValueError:
            continue
        if len(vals) >= 4:
            out[words[0]] = (sum(vals), vals[3] + (vals[4] if len(vals) > 4 else 0))
    return out


def _own_jiffies(root: Path) -> int | None:
    """This process's CPU time (utime + stime, every thread) in /proc/stat's jiffies (proc(5), /proc/[pid]/stat fields
    14-15); None where it cannot be read (a fake root has no /proc/self)."""
    text = read_text(root / "proc/self/stat") or ""
    fields = text[text.rfind(")") + 1:].split()  # after "pid (comm)": the comm may hold spaces
    try:
        return int(fields[11]) + int(fields[12])
    except (IndexError, ValueError):
        return None


MIN_BUSY_TICKS = 20  # the busy look spans at least this many jiffies of the CPUs it reads (one tick of 20 is 5%)


def busy_fractions(root: str | Path = "/", interval_s: float = 0.1, cpus: set[int] | None = None
                   ) -> tuple[float | None, float | None, str | None]:
    """(others' busy share of ``cpus``, of the whole host, why ``cpus`` were not read) over ``interval_s``, from one
    read of /proc/stat before and one after. ``cpus``: the CPUs this process may run on. The host-wide figure alone
    diluted load on a pinned process's own few CPUs below the flag (a pod pinned to 2 of 64 CPUs, both taken by
    others, read 3% busy); it is kept beside, for load elsewhere still shares the memory and the last-level cache.
    This process's own CPU time over the interval (torch's threads still spinning after the warmup) is not others'
    and is taken out. A look over a few CPUs is stretched to ``MIN_BUSY_TICKS`` jiffies of them (at 100 Hz, 50 ms of
    one CPU is 5 ticks, and 2 of them crossed the flag)."""
    root = Path(root)
    names = [f"cpu{c}" for c in sorted(cpus)] if cpus else []
    first, own0 = _stat(root), _own_jiffies(root)
    missing = [n for n in names if n not in first]
    why = f"CPU {missing[0][3:]} of this process's is not in /proc/stat" if missing else None
    if names and not missing:
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        interval_s = max(interval_s, MIN_BUSY_TICKS / (tick * len(names)))
    time.sleep(interval_s)
    second, own1 = _stat(root), _own_jiffies(root)
    mine = own1 - own0 if own0 is not None and own1 is not None else 0

    def share(over):
        if not over or any(n not in first or n not in second for n in over):
            return None
        total = sum(second[n][0] - first[n][0] for n in over)
        idle = sum(second[n][1] - first[n][1] for n in over)
        return None if total <= 0 else min(1.0, max(0.0, (total - idle - mine) / total))
    host = share(["cpu"])
    return (share(names) if names and not missing else host), host, why


def _cpus_word(cpu_list: str) -> str:
    return "CPU" if cpu_list.isdigit() else "CPUs"


def _cpu_list(cpus) -> str:
    """{0, 1, 2, 5} -> "0-2,5" (the kernel's cpulist form)."""
    runs, out = [], []
    for c in sorted(cpus):
        if runs and c == runs[-1][1] + 1:
            runs[-1][1] = c
        else:
            runs.append([c, c])
    for a, b in runs:
        out.append(f"{a}" if a == b else f"{a}-{b}")
    return ",".join(out)


def cpu_freqs_mhz(root: str | Path = "/") -> list[float]:
    freqs = []
    for cpu in sorted(Path(root, "sys/devices/system/cpu").glob("cpu[0-9]*")):
        khz = read_int(cpu / "cpufreq/scaling_cur_freq")
        if khz:
            freqs.append(khz / 1000)
    return freqs


def cpu_snapshot(root: str | Path = "/", busy_interval_s: float = 0.1, cpus: set[int] | None = None) -> dict:
    """``cpus``: the CPUs to read the busy share over (default: this process's affinity on the real host; where that
    is every CPU /proc/stat lists, the host's line)."""
    root = Path(root)
    governors = {g for cpu in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*"))
                 if (g := read_text(cpu / "cpufreq/scaling_governor"))}
    load = (read_text(root / "proc/loadavg") or "").split()
    cpus = own_cpus(root) if cpus is None else set(cpus)
    if cpus is not None and {f"cpu{c}" for c in cpus} >= {n for n in _stat(root) if n != "cpu"}:
        cpus = None  # all of them: the host's line, as before
    busy, host, why = busy_fractions(root, busy_interval_s, cpus) if busy_interval_s else (None, None, None)
    out = {"available": True, "freq_mhz": cpu_freqs_mhz(root) or None, "governor": sorted(governors) or None,
           "loadavg_1m": float(load[0]) if load else None, "busy_fraction": busy,
           "busy_cpus": f"all ({why})" if why else "all" if cpus is None else _cpu_list(cpus)}
    if cpus is not None and not why:
        out["host_busy_fraction"] = host
    return out


# --- together -------------------------------------------------------------------------------------

def snapshot(kind: str = "cpu", root: str | Path = "/", busy_interval_s: float = 0.1, info=None) -> dict:
    """Telemetry for a device kind ("cpu", "cuda", "jetson") plus the host CPU, with contention flags.

    With ``info`` (a DeviceInfo), the files are read under the root its detection read, and NVML is asked
    about the GPU it detected (by UUID / PCI bus id), not about NVML's index 0."""
    if info is not None:
        root = info.sysfs_root
    snap = {"cpu": cpu_snapshot(root, busy_interval_s)}
    if kind == "cuda":
        snap["nvml"] = nvml_snapshot(uuid=getattr(info, "uuid", None), pci_bus_id=getattr(info, "pci_bus_id", None),
                                     name=getattr(info, "name", None),
                                     root=root)
    if kind == "jetson":
        snap["jetson"] = jetson_snapshot(root)
    snap["contention"] = contention(snap)
    return snap


def contention(snap: dict) -> list[str]:
    flags = []
    nv = snap.get("nvml") or {}
    if nv.get("available"):
        count, named = nv.get("other_process_count"), nv.get("other_processes") or []
        if count is None and named:  # a snapshot from before other_process_count existed
            count = len(named)
        if count:
            who = ", ".join(str(p["pid"]) for p in named) if named else nv.get("processes_note") or "unnamed"
            flags.append(f"other GPU processes: {count} ({who})")
        bad = disturbing(nv.get("throttle_reasons") or [])
        if bad:
            flags.append(f"GPU clocks throttled: {', '.join(bad)}")
    cpu = snap.get("cpu") or {}
    busy, host, on = cpu.get("busy_fraction"), cpu.get("host_busy_fraction"), cpu.get("busy_cpus") or "all"
    pinned = host is not None and not on.startswith("all")
    if busy is not None and busy > BUSY_CPU_FRACTION:
        flags.append(f"busy CPU: others used {busy:.0%} of this process's {_cpus_word(on)} {on} before the measurement"
                     if pinned else f"busy CPU: {busy:.0%} of CPU time used by others before the measurement")
    elif pinned and host > BUSY_CPU_FRACTION:  # the host's other CPUs: they share its memory and cache
        flags.append(f"busy CPU: others used {host:.0%} of the host's CPU time before the measurement (this "
                     f"process's {_cpus_word(on)} {on} below the flag), sharing its memory and cache")
    js = snap.get("jetson") or {}
    if js.get("available") and js.get("gpu_cur_mhz") and js.get("gpu_max_mhz") and \
            js["gpu_cur_mhz"] < 0.9 * js["gpu_max_mhz"] and (js.get("gpu_load_pct") or 0) > 50:
        flags.append(f"Jetson GPU at {js['gpu_cur_mhz']:g} of {js['gpu_max_mhz']:g} MHz under load")
    return flags

