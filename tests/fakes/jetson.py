"""A fake Jetson: the files roofline_kernels/jetson.py reads, an ``nvpmodel`` that answers ``-q`` (and, switchable, ``-m ID``),
and a ``sudo`` that lets it run or refuses as ``sudo -n`` does without a password.

Layouts follow ../shared/reference/hardware.md ("sysfs"): the GPU devfreq node (JetPack 6 names it
17000000.gpu, JetPack 5 17000000.ga10b), its load, the EMC cap, INA3221 rails (Orin Nano / NX module:
in1 VDD_IN, in2 VDD_CPU_GPU_CV, in3 VDD_SOC; the AGX Orin has no VDD_IN rail but VDD_GPU_SOC,
VDD_CPU_CV and VIN_SYS_5V0), plus /etc/nv_tegra_release, /etc/nvpmodel.conf, the device-tree model
(absent with ``docker=True``: a container masks /proc/device-tree), /proc/meminfo and the driver
version. Clocks follow the board's power-mode table (roofline/clocks.py); rail and temperature values
are fixtures, not measurements. ``install_switchable_nvpmodel`` rewrites every file that changes with the
mode (``mode_files``) when asked ``-m ID``, keeps the mode where the real tool does (/var/lib/nvpmodel/status,
"pmode:0001"), and logs each call; ``behaviour`` plants what a real board can do: ignore the request
(a mode needing a reboot stays as it was), fail, or change the mode without the clocks following.
"""
from __future__ import annotations

import os
import shlex
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


LAYOUTS = {"jp6": ("17000000.gpu", "gpu"), "jp5": ("17000000.ga10b", "ga10b")}  # devfreq node, of_node name
STATUS_FILE = "var/lib/nvpmodel/status"  # where nvpmodel keeps the current mode ("pmode:0001 fmode:quiet")
NVPMODEL_LOG = "var/log/fake-nvpmodel.log"  # every call of the switchable fake, one line each


def _mode(key: str, mode) -> tuple:
    found = find_power_mode(key, mode or DEFAULT_POWER_MODE[key])
    if found is None:
        raise ValueError(f"unknown power mode {mode!r} for {key}; known: {', '.join(POWER_MODES[key])}")
    return found


def mode_rails(key: str, mode=None):
    """INA3221 readings in a mode: fixtures, not measurements. A module board's currents scale from
    MODULE_RAILS (the full-clock mode) by half plus half the mode's share of the board's GPU throughput, so
    a lower mode draws less; the AGX's rails stay AGX_RAILS."""
    if "agx" in key:
        return AGX_RAILS
    _, (_, gpu_mhz, sms, _) = _mode(key, mode)
    hw = REGISTRY[key]
    share = gpu_mhz / hw.gpu_clock.value * (sms or hw.sm_count) / hw.sm_count
    return tuple((label, mv, round(ma * (0.5 + 0.5 * share))) for label, mv, ma in MODULE_RAILS)


def mode_files(key: str, mode=None, layout: str = "jp6", gpu_cur_mhz: float | None = None, rails=None) -> dict:
    """{path under the root: contents} of every file that changes with the power mode: the GPU devfreq caps
    and clock, the EMC cap, the INA3221 rails. ``make_jetson_tree`` and the switchable ``nvpmodel`` both
    write these, so a tree made in a mode and a tree switched to it are the same."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    _, (_, gpu_mhz, _, emc_mhz) = _mode(key, mode)
    gpu = f"sys/class/devfreq/{LAYOUTS[layout][0]}"
    # an uncapped mode's config writes EMC MAX_FREQ 0 (nvpmodel_p3701_0000.conf MAXN/30W/50W, p3767_0000 MAXN/15W/25W,
    # p3767_0003 15W, whose table lists the board's full 2133): the cap file reads 0, "no cap", not a clock
    files = {f"{gpu}/cur_freq": f"{int((gpu_cur_mhz or gpu_mhz) * 1e6)}\n", f"{gpu}/max_freq": f"{int(gpu_mhz * 1e6)}\n",
             "sys/kernel/nvpmodel_emc_cap/emc_iso_cap":
                 f"{int((emc_mhz if emc_mhz and emc_mhz < REGISTRY[key].mem_clock.value else 0) * 1e6)}\n"}
    files.update(rail_files(rails if rails is not None else mode_rails(key, mode)))
    return files


def make_jetson_tree(root: Path, key: str, mode: str | None = None, docker: bool = False, layout: str = "jp6",
                     rails=None, load_permille: int = 734, gpu_cur_mhz: float | None = None,
                     conf: bool | None = None) -> Path:
    """Write a Jetson ``key``'s files under ``root``, running power ``mode`` (default: the board's default).

    ``conf`` writes /etc/nvpmodel.conf (default: not in a container)."""
    root = Path(root)
    if REGISTRY[key].kind != "jetson":
        jetsons = ", ".join(k for k, h in REGISTRY.items() if h.kind == "jetson")
        raise ValueError(f"{key} is not a Jetson entry; Jetsons: {jetsons}")
    files = mode_files(key, mode, layout, gpu_cur_mhz, rails)
    dev = SIMULATED[key]
    if not docker:
        write(root, "proc/device-tree/model", dev.device_tree_model + "\x00")
    if conf if conf is not None else not docker:
        write(root, "etc/nvpmodel.conf", nvpmodel_conf(key))
    write(root, "etc/nv_tegra_release", dev.tegra_release + "\n")
    write(root, "proc/meminfo", f"MemTotal:       {dev.memory_bytes // 1024} kB\n")
    write(root, "proc/driver/nvidia/version", f"NVRM version: {JETSON_DRIVER}\n")
    gpu = f"sys/class/devfreq/{LAYOUTS[layout][0]}"
    write(root, f"{gpu}/device/of_node/name", LAYOUTS[layout][1] + "\x00")
    write(root, f"{gpu}/min_freq", f"{LOWEST_GPU_MHZ * 1000000}\n")
    write(root, f"{gpu}/available_frequencies", " ".join(str(int(f * 1e6)) for f in gpu_frequencies_mhz(key)) + "\n")
    write(root, f"{gpu}/device/load", f"{load_permille}\n")
    write(root, "sys/devices/virtual/thermal/thermal_zone1/type", "gpu-thermal\n")
    write(root, "sys/devices/virtual/thermal/thermal_zone1/temp", "48500\n")
    for rel, text in files.items():
        write(root, rel, text)
    return root


RAILS_HWMON = "sys/bus/i2c/devices/1-0040/hwmon/hwmon3"


def rail_files(rails, hwmon: str = RAILS_HWMON) -> dict:
    files = {"sys/bus/i2c/devices/1-0040/name": "ina3221\n"}
    for n, (label, mv, ma) in enumerate(rails, start=1):
        files.update({f"{hwmon}/in{n}_label": label + "\n", f"{hwmon}/in{n}_input": f"{mv}\n",
                      f"{hwmon}/curr{n}_input": f"{ma}\n"})
    return files


def write_rails(root: Path, rails, hwmon: str = RAILS_HWMON) -> None:
    """INA3221 rails [(label, mV, mA)] (write again to change the readings mid-run)."""
    for rel, text in rail_files(rails, hwmon).items():
        write(root, rel, text)


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


NVPMODEL_BEHAVIOURS = ("ok", "ignore", "fail", "no-settle")


def install_switchable_nvpmodel(bin_dir: Path, root: Path, key: str, mode=None, layout: str = "jp6",
                                behaviour: str = "ok", custom: dict[int, str] | None = None) -> Path:
    """An ``nvpmodel`` for board ``key`` whose tree is under ``root``: ``-q`` prints the mode in the status file,
    ``-m ID`` switches it and rewrites the mode's files (``mode_files``). ``behaviour``: ``ok``; ``ignore``
    (exit 0, nothing changes); ``fail`` (NVPM ERROR, exit 1); ``no-settle`` (the mode changes, the clocks do not).
    ``custom``: {id: name} of modes a user added to /etc/nvpmodel.conf that no registry lists (no files change)."""
    if behaviour not in NVPMODEL_BEHAVIOURS:
        raise ValueError(f"unknown behaviour {behaviour!r}; known: {', '.join(NVPMODEL_BEHAVIOURS)}")
    root, bin_dir = Path(root), Path(bin_dir)
    name, (mode_id, *_) = _mode(key, mode)
    write(root, STATUS_FILE, f"pmode:{mode_id:04d} fmode:quiet\n")
    write(root, NVPMODEL_LOG, "")
    q = shlex.quote
    names = "\n".join([f"    {spec[0]}) echo {q(n)} ;;" for n, spec in POWER_MODES[key].items()]
                      + [f"    {i}) echo {q(n)} ;;" for i, n in (custom or {}).items()])
    branches = [f"    {i})\n      ;;" for i in (custom or {})]
    for n, spec in POWER_MODES[key].items():
        writes = "" if behaviour == "no-settle" else "\n".join(
            f"      printf %s {q(text)} > {q(str(root / rel))}" for rel, text in mode_files(key, n, layout).items())
        branches.append(f"    {spec[0]})\n{writes}\n      ;;")
    set_mode = {
        "ok": "switch_to", "no-settle": "switch_to", "ignore": "exit 0",
        "fail": 'echo "NVPM ERROR: failed to set power mode $2" >&2; exit 1',
    }[behaviour]
    script = bin_dir / "nvpmodel"
    write(bin_dir, "nvpmodel", f"""#!/bin/sh
STATUS={q(str(root / STATUS_FILE))}
echo "$*" >> {q(str(root / NVPMODEL_LOG))}
name_of() {{
  case "$1" in
{names}
    *) echo UNKNOWN ;;
  esac
}}
switch_to() {{
  case "$ID" in
{chr(10).join(branches)}
    *) echo "NVPM ERROR: Invalid power mode $ID" >&2; exit 1 ;;
  esac
  printf 'pmode:%04d fmode:quiet\\n' "$ID" > "$STATUS"
}}
case "$1" in
  -q|--query)
    id=$(sed -n 's/^pmode:0*\\([0-9][0-9]*\\).*/\\1/p' "$STATUS")
    echo "NV Power Mode: $(name_of "$id")"
    echo "$id"
    ;;
  -m)
    ID="$2"
    [ -n "$ID" ] || {{ echo "nvpmodel: -m needs a mode id" >&2; exit 2; }}
    {set_mode}
    ;;
  *)
    echo "fake nvpmodel: only -q and -m ID are supported" >&2
    exit 2
    ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def install_fake_sudo(bin_dir: Path, allow: bool = True) -> Path:
    """A ``sudo`` that runs its command (``-n`` accepted), or, ``allow=False``, refuses as ``sudo -n`` does
    when a password would be needed."""
    body = ('[ "$1" = "-n" ] && shift\nexec "$@"\n' if allow else
            'echo "sudo: a password is required" >&2\nexit 1\n')
    script = write(Path(bin_dir), "sudo", "#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def nvpmodel_calls(root: Path) -> list[str]:
    """The arguments of every call the switchable fake saw, oldest first."""
    p = Path(root) / NVPMODEL_LOG
    return p.read_text().splitlines() if p.exists() else []
