"""A Jetson's own files: GPU devfreq, INA3221 power rails, the L4T release, and ``nvpmodel``.

Paths move between L4T releases (../shared/reference/hardware.md, "sysfs"), so they are searched for
under a root that tests point at fake trees (tests/fakes/jetson.py). Every reader returns None or an
empty result for a file it cannot read, never an exception.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

NVPMODEL_TIMEOUT_S = 5


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return None


def read_int(path: Path) -> int | None:
    text = read_text(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def find_gpu_devfreq(root: Path) -> Path | None:
    """The GPU's devfreq directory: ``of_node/name`` ga10b or gpu (JetPack 5 / 6 names), or the old paths."""
    for d in sorted((root / "sys/class/devfreq").glob("*")):
        node = read_text(d / "device/of_node/name")
        if node in ("ga10b", "gpu") or re.search(r"(ga10b|\.gpu)$", d.name):
            return d
    for old in ("sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu",
                "sys/devices/17000000.ga10b/devfreq/17000000.ga10b"):
        if (root / old).is_dir():
            return root / old
    return None


def gpu_available_mhz(root: Path) -> list[float] | None:
    """Every GPU frequency the board offers (all modes): its highest is the board's GPU maximum."""
    gpu = find_gpu_devfreq(root)
    text = read_text(gpu / "available_frequencies") if gpu else None
    try:
        return sorted(int(x) / 1e6 for x in text.split()) if text else None
    except ValueError:
        return None


def mode_caps(root: Path) -> dict:
    """The caps the current nvpmodel mode set: GPU devfreq ``max_freq`` and the EMC cap, in MHz (None: unreadable)."""
    root = Path(root)
    gpu = find_gpu_devfreq(root)
    hz = read_int(gpu / "max_freq") if gpu else None
    files = (root / "sys/kernel/nvpmodel_emc_cap/emc_iso_cap", root / "sys/kernel/nvpmodel_clk_cap/emc")
    emc = read_int(files[0]) or read_int(files[1])
    # 0 or -1 (a config's "EMC MAX_FREQ 0"; the Super configs' -1, which jtop reads as no cap too) is no cap; no file
    # at all says nothing either way (emc_cap_known False)
    return {"gpu_max_mhz": hz / 1e6 if hz else None, "emc_cap_mhz": emc / 1e6 if emc and emc > 0 else None,
            "emc_cap_known": any(f.exists() for f in files)}


def gpu_clock_and_load(root: Path, gpu: Path | None = None) -> tuple[float | None, float | None]:
    """(current GPU MHz, GPU load %) now; pass ``gpu`` (find_gpu_devfreq's answer) to skip the search."""
    gpu = gpu or find_gpu_devfreq(root)
    if gpu is None:
        return None, None
    hz = read_int(gpu / "cur_freq")
    load = read_int(gpu / "device/load")
    load = load if load is not None else read_int(root / "sys/devices/gpu.0/load")
    return (hz / 1e6 if hz is not None else None), (load / 10 if load is not None else None)


def gpu_temperature_c(root: Path) -> float | None:
    """The GPU's thermal zone (its ``type`` names the GPU: GPU-therm, gpu-thermal) in degrees C."""
    for zone in sorted((root / "sys/devices/virtual/thermal").glob("thermal_zone*")):
        if re.search(r"gpu", read_text(zone / "type") or "", re.IGNORECASE):
            milli = read_int(zone / "temp")
            return milli / 1000 if milli is not None else None
    return None


def ina3221_rails(root: Path) -> dict:
    """{rail label: {"voltage_mv", "current_ma", "power_mw"}} from every INA3221 hwmon."""
    rails = {}
    for name_file in sorted((root / "sys/bus/i2c/devices").glob("*/name")):
        if read_text(name_file) != "ina3221":
            continue
        for hwmon in sorted(name_file.parent.glob("hwmon/hwmon*")):
            for label_file in sorted(hwmon.glob("in*_label")):
                n = re.fullmatch(r"in(\d+)_label", label_file.name).group(1)
                mv, ma = read_int(hwmon / f"in{n}_input"), read_int(hwmon / f"curr{n}_input")
                power = mv * ma / 1000 if mv is not None and ma is not None else None
                rails[read_text(label_file)] = {"voltage_mv": mv, "current_ma": ma, "power_mw": power}
    return rails


def vdd_in_files(root: Path) -> tuple[Path, Path] | None:
    """(millivolt file, milliamp file) of the board input rail VDD_IN, found once for a sampler."""
    for name_file in sorted((root / "sys/bus/i2c/devices").glob("*/name")):
        if read_text(name_file) != "ina3221":
            continue
        for label_file in sorted(name_file.parent.glob("hwmon/hwmon*/in*_label")):
            if read_text(label_file) == "VDD_IN":
                n = re.fullmatch(r"in(\d+)_label", label_file.name).group(1)
                return label_file.parent / f"in{n}_input", label_file.parent / f"curr{n}_input"
    return None


def board_power_w(root: Path, files: tuple[Path, Path] | None = None) -> float | None:
    """The board's input power now (the VDD_IN rail), in watts."""
    files = files or vdd_in_files(root)
    if files is None:
        return None
    mv, ma = read_int(files[0]), read_int(files[1])
    return mv * ma / 1e6 if mv is not None and ma is not None else None


def parse_nvpmodel(text: str) -> dict:
    """``nvpmodel -q`` output -> {"mode": NAME, "id": N} (it prints ``NV Power Mode: NAME`` then the id)."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    ids = re.findall(r"^\s*(\d+)\s*$", text, re.M)
    return {"mode": m.group(1) if m else None, "id": int(ids[-1]) if ids else None}


def query_nvpmodel() -> dict | None:
    """The current power mode from ``nvpmodel -q`` on PATH, or None where it cannot run or says nothing."""
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=NVPMODEL_TIMEOUT_S).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    mode = parse_nvpmodel(out)
    return mode if mode["mode"] else None


def l4t_release(root: Path) -> str | None:
    """``/etc/nv_tegra_release``'s first line -> "R36.4.3" (the BOARD field there is unreliable: jetson-stats)."""
    text = read_text(root / "etc/nv_tegra_release")
    m = re.search(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    return f"R{m.group(1)}.{m.group(2)}" if m else None


def jetson_driver_version(root: Path) -> str | None:
    """The GPU driver a Jetson runs: ``NVRM version`` in /proc/driver/nvidia/version (e.g. 540.4.0)."""
    m = re.search(r"NVRM version:.*?(\d+\.\d+(?:\.\d+)?)", read_text(root / "proc/driver/nvidia/version") or "")
    return m.group(1) if m else None


def meminfo_total_bytes(root: Path) -> int | None:
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", read_text(root / "proc/meminfo") or "", re.M)
    return int(m.group(1)) * 1024 if m else None


def jetson_snapshot(root: str | Path = "/", nvpmodel_output: str | None = None) -> dict:
    root = Path(root)
    gpu = find_gpu_devfreq(root)
    if gpu is None:
        return {"available": False, "reason": "no Jetson GPU devfreq node under /sys/class/devfreq"}
    out = {"available": True, "gpu_devfreq": str(gpu.relative_to(root))}
    for key in ("cur_freq", "min_freq", "max_freq"):
        hz = read_int(gpu / key)
        out[f"gpu_{key.replace('_freq', '')}_mhz"] = hz / 1e6 if hz is not None else None
    out["gpu_available_mhz"] = gpu_available_mhz(root)
    out["gpu_load_pct"] = gpu_clock_and_load(root)[1]
    out["emc_cap_mhz"] = mode_caps(root)["emc_cap_mhz"]  # the one reading of the caps (0 or -1: no cap)
    rate = read_int(root / "sys/kernel/debug/bpmp/debug/clk/emc/rate")
    out["emc_rate_mhz"] = rate / 1e6 if rate else None
    out["rails"] = ina3221_rails(root)
    total = out["rails"].get("VDD_IN", {}).get("power_mw")
    out["board_power_w"] = total / 1000 if total is not None else None
    if nvpmodel_output is None:
        out["power_mode"] = query_nvpmodel() or {"mode": None, "id": None}
    else:
        out["power_mode"] = parse_nvpmodel(nvpmodel_output)
    return out
