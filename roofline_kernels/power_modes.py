"""Running measurements in a Jetson's power modes, one after another, and always going back.

1. Reading the mode needs no privilege (``nvpmodel -q``); changing it needs root: ``sudo -n nvpmodel -m ID``
   (``-n``: never prompt, a password prompt would hang the run), or ``nvpmodel -m ID`` when already root.
   Mode ids are the board's own (/etc/nvpmodel.conf), else those of roofline.clocks.
2. Nothing changes without ``allow_change`` (pytest ``--allow-power-mode-change``): a request for any
   mode other than the current one raises ``PowerModeRefused`` naming the flag. The current mode needs no change.
3. After ``-m``, ``nvpmodel -q`` must report the new mode (a mode that changes the online CPUs can need a
   reboot, and nvpmodel then leaves the mode as it was); then the clocks must settle: the GPU devfreq
   ``max_freq`` at the mode's cap, the EMC cap at the mode's where it has one, and the GPU's current clock
   unchanged over ``stable_polls`` reads. A timeout names what was read against what was expected.
4. ``PowerModes`` is a context manager: it records the mode on entry and restores it on exit whatever
   happened (a failure, KeyboardInterrupt). ``restore`` is idempotent, so the pytest plugin also calls it
   from its session end and its config cleanup: a run stopped anywhere ends in the original mode.
5. ``idle_power_w`` averages the settled board's VDD_IN for a moment: the energy calibration's static power.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from roofline.clocks import POWER_MODES, find_power_mode, unknown_power_mode

from . import jetson as _jetson

NVPMODEL_TIMEOUT_S = 60  # a mode change can take seconds (CPU hotplug)
SUDOERS_HINT = ("allow it without a password (sudoers: `<user> ALL=(root) NOPASSWD: /usr/sbin/nvpmodel`) "
                "or run as root")


class PowerModeError(RuntimeError):
    """A power mode could not be read, changed, settled or restored."""


class PowerModeRefused(PowerModeError):
    """A change was asked for without permission to make it."""


@dataclass
class Switch:
    """One mode the board was put in: how long it took to settle, what was read, its idle draw."""
    mode: str
    id: int
    changed: bool
    settle_s: float
    evidence: dict = field(default_factory=dict)
    idle_w: float | None = None

    def to_dict(self) -> dict:
        return {"mode": self.mode, "id": self.id, "changed": self.changed, "settle_s": self.settle_s,
                "evidence": self.evidence, "idle_w": self.idle_w}


def conf_ids(text: str) -> dict[str, int]:
    """``< POWER_MODEL ID=2 NAME=MAXN_SUPER >`` lines -> {name: id} (either attribute order)."""
    out = {}
    for line in re.findall(r"<\s*POWER_MODEL\b[^>]*>", text or ""):
        i, n = re.search(r"ID\s*=\s*(\d+)", line), re.search(r"NAME\s*=\s*([^\s>]+)", line)
        if i and n:
            out[n.group(1)] = int(i.group(1))
    return out


class PowerModes:
    def __init__(self, key: str, root: str | os.PathLike = "/", allow_change: bool = False, nvpmodel: str = "nvpmodel",
                 sudo: tuple = ("sudo", "-n"), settle_timeout_s: float = 30.0, poll_s: float = 0.25,
                 stable_polls: int = 3, idle_s: float = 1.0, run=subprocess.run, clock=time.monotonic,
                 sleep=time.sleep, is_root: bool | None = None):
        if key not in POWER_MODES:
            raise ValueError(f"no power modes known for {key}; boards with modes: {', '.join(POWER_MODES)}")
        self.key, self.root, self.allow_change = key, Path(root), allow_change
        self.nvpmodel, self.settle_timeout_s, self.poll_s = nvpmodel, settle_timeout_s, poll_s
        self.stable_polls, self.idle_s = stable_polls, idle_s
        self._run, self._clock, self._sleep = run, clock, sleep
        root_user = (os.geteuid() == 0) if is_root is None else is_root
        self.sudo = () if root_user else tuple(sudo)
        self.original: dict | None = None
        self.switches: list[Switch] = []
        self.restored: str | None = None  # what restore() did, once it ran

    # --- reading and resolving ---------------------------------------------------------------------
    def _nvpmodel(self, *args, privileged=False) -> subprocess.CompletedProcess:
        cmd = [*(self.sudo if privileged else ()), self.nvpmodel, *args]
        try:
            return self._run(cmd, capture_output=True, text=True, timeout=NVPMODEL_TIMEOUT_S,
                             stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise PowerModeError(f"`{' '.join(cmd)}`: {cmd[0]} not found on PATH") from None
        except subprocess.TimeoutExpired:
            raise PowerModeError(f"`{' '.join(cmd)}` did not return within {NVPMODEL_TIMEOUT_S} s") from None

    def query(self) -> dict:
        """{"mode": NAME, "id": N} from ``nvpmodel -q``."""
        proc = self._nvpmodel("-q")
        mode = _jetson.parse_nvpmodel(proc.stdout)
        if proc.returncode != 0 or mode["mode"] is None:
            raise PowerModeError(f"`{self.nvpmodel} -q` did not report a mode (exit {proc.returncode}): "
                                 f"{(proc.stderr or proc.stdout).strip()[:200]}")
        return mode

    def resolve(self, mode) -> tuple[str, int]:
        """(name, id) of a mode given by name or id; the id is the board's own where /etc/nvpmodel.conf says."""
        found = find_power_mode(self.key, mode)
        if found is None:
            raise unknown_power_mode(self.key, mode)
        name, spec = found
        ids = conf_ids(_jetson.read_text(self.root / "etc/nvpmodel.conf") or "")
        return name, ids.get(name, spec[0])

    def check_allowed(self, modes) -> None:
        """Refuse, before anything runs, a list of modes that needs a change without permission for one."""
        now = self.query()
        others = [m for m in (self.resolve(x)[0] for x in modes) if m != now["mode"]]
        if others and not self.allow_change:
            raise PowerModeRefused(
                f"--power-modes {','.join(str(m) for m in modes)} would change the power mode from {now['mode']} to "
                f"{', '.join(dict.fromkeys(others))}: that needs root and changes the clocks for everything on the "
                f"board; pass --allow-power-mode-change to let the run do it (`sudo -n {self.nvpmodel} -m ID`, the "
                f"original mode restored at the end)")

    # --- changing -----------------------------------------------------------------------------------
    def switch(self, mode) -> Switch:
        name, mode_id = self.resolve(mode)
        now = self.query()
        if self.original is None:
            self.original = now
        t0 = self._clock()
        changed = now["mode"] != name
        if changed:
            if not self.allow_change:
                raise PowerModeRefused(f"changing the power mode from {now['mode']} to {name} needs "
                                       "--allow-power-mode-change")
            self.restored = None  # a restore is owed again
            self._set(name, mode_id)
        evidence = self.settle(name)
        rec = Switch(name, mode_id, changed, self._clock() - t0, evidence, self.idle_power_w())
        self.switches.append(rec)
        return rec

    def _set(self, name: str, mode_id: int) -> None:
        proc = self._nvpmodel("-m", str(mode_id), privileged=True)
        cmd = " ".join([*self.sudo, self.nvpmodel, "-m", str(mode_id)])
        if proc.returncode != 0:
            why = (proc.stderr or proc.stdout).strip()[:300]
            hint = f"; {SUDOERS_HINT}" if "password" in why or "sudo" in why else ""
            raise PowerModeError(f"`{cmd}` failed (exit {proc.returncode}): {why}{hint}")
        now = self.query()
        if now["mode"] != name:
            raise PowerModeError(f"`{cmd}` returned but the board still reports {now['mode']}, not {name} (a mode that "
                                 f"changes the online CPUs can need a reboot); output: {proc.stdout.strip()[:200]}")

    def expected(self, name: str) -> dict:
        """The caps the mode sets: GPU max MHz (the highest available frequency under the cap), EMC cap MHz."""
        _, (_, gpu, _, emc) = find_power_mode(self.key, name)
        freqs = _jetson.gpu_available_mhz(self.root) or []
        under = [f for f in freqs if f <= gpu + 0.5]
        return {"gpu_max_mhz": max(under) if under else gpu, "emc_cap_mhz": emc}

    def read_caps(self) -> dict:
        caps = _jetson.mode_caps(self.root)  # the one reading of the caps (0 or -1: no EMC cap)
        cur, _ = _jetson.gpu_clock_and_load(self.root)
        return {"gpu_max_mhz": caps["gpu_max_mhz"], "emc_cap_mhz": caps["emc_cap_mhz"], "gpu_cur_mhz": cur}

    def settle(self, name: str) -> dict:
        """Wait until the caps are the mode's and the GPU clock holds still; the last reading, or PowerModeError."""
        want = self.expected(name)
        deadline, last, streak = self._clock() + self.settle_timeout_s, None, 0
        while True:
            got = self.read_caps()
            caps_ok = got["gpu_max_mhz"] is not None and abs(got["gpu_max_mhz"] - want["gpu_max_mhz"]) <= 1 and (
                want["emc_cap_mhz"] is None or got["emc_cap_mhz"] is None
                or abs(got["emc_cap_mhz"] - want["emc_cap_mhz"]) <= 0.01 * want["emc_cap_mhz"])
            streak = streak + 1 if caps_ok and last is not None and got["gpu_cur_mhz"] == last["gpu_cur_mhz"] else (
                1 if caps_ok else 0)
            last = got
            if streak >= self.stable_polls:
                return {"read": got, "expected": want}
            if self._clock() >= deadline:
                raise PowerModeError(
                    f"{self.key} did not settle in {name} within {self.settle_timeout_s:g} s: read GPU max "
                    f"{got['gpu_max_mhz']} MHz, EMC cap {got['emc_cap_mhz']} MHz, GPU clock {got['gpu_cur_mhz']} MHz; "
                    f"expected GPU max {want['gpu_max_mhz']:g} MHz" + (
                        f", EMC cap {want['emc_cap_mhz']:g} MHz" if want["emc_cap_mhz"] else "") +
                    f" and the clock steady over {self.stable_polls} reads")
            self._sleep(self.poll_s)

    def idle_power_w(self) -> float | None:
        """The board's VDD_IN averaged over ``idle_s`` (None without the rail): the mode's static draw."""
        files = _jetson.vdd_in_files(self.root)
        if files is None:
            return None
        readings, end = [], self._clock() + self.idle_s
        while True:
            w = _jetson.board_power_w(self.root, files)
            if w is not None:
                readings.append(w)
            if self._clock() >= end:
                break
            self._sleep(min(0.1, self.idle_s))
        return sum(readings) / len(readings) if readings else None

    # --- going back ---------------------------------------------------------------------------------
    def restore(self) -> str:
        """Put the board back in the mode it was in before the first switch; idempotent. Returns what it did."""
        if self.restored is not None:
            return self.restored
        if self.original is None or not any(s.changed for s in self.switches) and not self._moved():
            self.restored = "power mode never changed"
            return self.restored
        name = self.original["mode"]
        try:
            now = self.query()
            if now["mode"] != name:
                # the board's own id for the mode it started in: a custom mode in /etc/nvpmodel.conf that the
                # registry does not list must still be restorable (resolving its name would refuse it)
                mode_id = self.original.get("id")
                self._set(name, mode_id if mode_id is not None else self.resolve(name)[1])
                if find_power_mode(self.key, name) is not None:  # caps to wait for are known only for listed modes
                    self.settle(name)
            self.restored = f"power mode restored to {name} (id {self.original['id']})"
        except (PowerModeError, ValueError) as e:
            self.restored = f"FAILED to restore the power mode to {name}: {e}"
            raise PowerModeError(self.restored) from None
        return self.restored

    def _moved(self) -> bool:
        """A switch under way when something failed leaves no Switch record: ask the board."""
        try:
            return self.query()["mode"] != self.original["mode"]
        except PowerModeError:
            return True

    def __enter__(self) -> "PowerModes":
        self.original = self.original or self.query()
        return self

    def __exit__(self, *exc) -> bool:
        self.restore()
        return False
