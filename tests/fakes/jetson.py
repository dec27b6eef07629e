"""A fake Jetson: the files kernels/jetson.py reads, and an ``nvpmodel`` that answers ``-q``.

Layouts follow ../shared/reference/hardware.md ("sysfs"): the GPU devfreq node (JetPack 6 names it
17000000.gpu, JetPack 5 17000000.ga10b), its load, the EMC cap, INA3221 rails (Orin Nano / NX module:
in1 VDD_IN, in2 VDD_CPU_GPU_CV, in3 VDD_SOC; the AGX Orin has no VDD_IN rail but VDD_GPU_SOC,
VDD_CPU_CV and VIN_SYS_5V0), plus /etc/nv_tegra_release, /etc/nvpmodel.conf, the device-tree model
(absent with ``docker=True``: a container masks /proc/device-tree), /proc/meminfo and the driver
version. Clocks follow the board's power-mode table (roofline/clocks.py); rail and temperature values
are fixtures, not measurements.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

from roofline import REGISTRY
from roofline.clocks import DEFAULT_POWER_MODE, POWER_MODES, find_power_mode

from .devices import JETSON_DRIVER, SIMULATED
from .host import write

MODULE_RAILS = (("VDD_IN", 5072, 1480), ("VDD_CPU_GPU_CV", 5072, 560), ("VDD_SOC", 5072, 384))
AGX_RAILS = (("VDD_GPU_SOC", 5080, 1200), ("VDD_CPU_CV", 5080, 400), ("VIN_SYS_5V0", 5000, 900))
LOWEST_GPU_MHZ = 306  # the bottom of the Orin GPU's frequency table in these fakes


def nvpmodel_conf(key: str) -> str:
    """The POWER_MODEL and PM_CONFIG headers of the board's nvpmodel config (its settings left out)."""
    modes = POWER_MODES[key]
    lines = [f"< POWER_MODEL ID={spec[0]} NAME={name} >" for name, spec in modes.items()]
    return "\n".join(lines + [f"< PM_CONFIG DEFAULT={modes[DEFAULT_POWER_MODE[key]][0]} >"]) + "\n"


def gpu_frequencies_mhz(key: str) -> list[float]:
    """Every GPU frequency in the fake table: the lowest, each mode's cap, the board maximum."""
    board_max = REGISTRY[key].gpu_clock.value
    return sorted({LOWEST_GPU_MHZ, board_max, *(spec[1] for spec in POWER_MODES[key].values())})


def make_jetson_tree(root: Path, key: str, mode: str | None = None, docker: bool = False, layout: str = "jp6",
                     rails=None, load_permille: int = 734, gpu_cur_mhz: float | None = None,
                     conf: bool | None = None) -> Path:
    """Write a Jetson ``key``'s files under ``root``, running power ``mode`` (default: the board's default).

    ``conf`` writes /etc/nvpmodel.conf (default: not in a container)."""
    root = Path(root)
    if REGISTRY[key].kind != "jetson":
        jetsons = ", ".join(k for k, h in REGISTRY.items() if h.kind == "jetson")
        raise ValueError(f"{key} is not a Jetson entry; Jetsons: {jetsons}")
    found = find_power_mode(key, mode or DEFAULT_POWER_MODE[key])
    if found is None:
        raise ValueError(f"unknown power mode {mode!r} for {key}; known: {', '.join(POWER_MODES[key])}")
    name, (_, gpu_mhz, _, emc_mhz) = found
    dev = SIMULATED[key]
    if not docker:
        write(root, "proc/device-tree/model", dev.device_tree_model + "\x00")
    if conf if conf is not None else not docker:
        write(root, "etc/nvpmodel.conf", nvpmodel_conf(key))
    write(root, "etc/nv_tegra_release", dev.tegra_release + "\n")
    write(root, "proc/meminfo", f"MemTotal:       {dev.memory_bytes // 1024} kB\n")
    write(root, "proc/driver/nvidia/version", f"NVRM version: {JETSON_DRIVER}\n")
    node = {"jp6": ("17000000.gpu", "gpu"), "jp5": ("17000000.ga10b", "ga10b")}.get(layout)
    if node is None:
        raise ValueError(f"unknown layout {layout!r}; known: jp6, jp5")
    gpu = f"sys/class/devfreq/{node[0]}"
    write(root, f"{gpu}/device/of_node/name", node[1] + "\x00")
    write(root, f"{gpu}/cur_freq", f"{int((gpu_cur_mhz or gpu_mhz) * 1e6)}\n")
    write(root, f"{gpu}/min_freq", f"{LOWEST_GPU_MHZ * 1000000}\n")
    write(root, f"{gpu}/max_freq", f"{int(gpu_mhz * 1e6)}\n")
    write(root, f"{gpu}/available_frequencies", " ".join(str(int(f * 1e6)) for f in gpu_frequencies_mhz(key)) + "\n")
    write(root, f"{gpu}/device/load", f"{load_permille}\n")
    emc = emc_mhz or REGISTRY[key].mem_clock.value
    write(root, "sys/kernel/nvpmodel_emc_cap/emc_iso_cap", f"{int(emc * 1e6)}\n")
    write(root, "sys/devices/virtual/thermal/thermal_zone1/type", "gpu-thermal\n")
    write(root, "sys/devices/virtual/thermal/thermal_zone1/temp", "48500\n")
    write_rails(root, rails if rails is not None else (AGX_RAILS if "agx" in key else MODULE_RAILS))
    return root


def write_rails(root: Path, rails, hwmon: str = "sys/bus/i2c/devices/1-0040/hwmon/hwmon3") -> None:
    """INA3221 rails [(label, mV, mA)] (write again to change the readings mid-run)."""
    write(root, "sys/bus/i2c/devices/1-0040/name", "ina3221\n")
    for n, (label, mv, ma) in enumerate(rails, start=1):
        write(root, f"{hwmon}/in{n}_label", label + "\n")
        write(root, f"{hwmon}/in{n}_input", f"{mv}\n")
        write(root, f"{hwmon}/curr{n}_input", f"{ma}\n")


def install_fake_nvpmodel(bin_dir: Path, mode_name: str, mode_id: int, warn: bool = False) -> Path:
    """An executable ``nvpmodel`` whose ``-q`` prints what the real one prints (the caller puts bin_dir on PATH).

    The real tool prints ``NV Power Mode: <NAME>`` and the id on the next line, sometimes after a
    ``NVPM WARN`` line (jetson-stats' nvpmodel emulator, tests/nvpmodel)."""
    bin_dir = Path(bin_dir)
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "nvpmodel"
    warn_line = 'echo "NVPM WARN: fan mode is not set!"\n    ' if warn else ""
    script.write_text(f"""#!/bin/sh
case "$1" in
  -q|--query)
    {warn_line}echo "NV Power Mode: {mode_name}"
    echo "{mode_id}"
    ;;
  *)
    echo "fake nvpmodel: only -q is supported" >&2
    exit 2
    ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def path_with(bin_dir: Path) -> str:
    """PATH with ``bin_dir`` first (for ``mp.setenv("PATH", path_with(bin_dir))``)."""
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
