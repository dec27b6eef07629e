"""The CPU bandwidth limit a Linux cgroup puts on this process, and how often it throttled it.

A container or CI runner is often given fewer CPUs' worth of time than it sees: a Kubernetes pod with a 2-CPU limit on
a 64-core node sees 64 CPUs, and torch starts a thread per core. The kernel then stops every thread of the group for
the rest of each period once the group's quota is spent, and a timed call that meets the stop lasts a period longer.
A profile calibrated under one quota does not hold under another, and a timing that met the stop says nothing of the
kernel. Read here, under a filesystem root (fake trees in tests):

- the quota: cgroup v2 ``cpu.max`` ("$MAX $PERIOD", ``max`` for no limit) and cgroup v1 ``cpu.cfs_quota_us`` /
  ``cpu.cfs_period_us`` (-1 for no limit): Linux Documentation/admin-guide/cgroup-v2.rst ("cpu.max") and
  Documentation/scheduler/sched-bwc.rst. Every cgroup from the process's own up to the root limits it, so the
  smallest quota over that path binds.
- the throttling: ``cpu.stat``'s ``nr_throttled`` (periods in which the group was throttled), and ``throttled_usec``
  (v2) or ``throttled_time`` (v1, ns), read from the cgroup whose quota binds.
- the CPU pressure: PSI's ``some`` line (``total=`` microseconds in which at least one task waited for a CPU;
  Documentation/accounting/psi.rst), of the process's own cgroup v2 (``cpu.pressure``) where it has one, else the
  system's (``/proc/pressure/cpu``).

The process's cgroup comes from ``/proc/self/cgroup``. Inside a container the path it names may be the host's, which
the container's mount does not have: the mount's own root is then the process's cgroup (as runtimes mount it).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .jetson import read_text

V1_MOUNTS = ("cpu,cpuacct", "cpu", "cpuacct,cpu")


@dataclass(frozen=True)
class Quota:
    cpus: float  # CPUs' worth of time per period
    source: str  # the file and its words
    stat: str    # the cpu.stat of the cgroup whose quota binds


def _read(path: Path) -> str:
    return read_text(path) or ""


def own_cpus(root: str | Path = "/") -> set[int] | None:
    """The CPUs this process may run on (its affinity: a cpuset, ``taskset``, ``docker --cpuset-cpus``) on the real
    host: every thread's, together (OpenMP may bind torch's threads elsewhere than the main thread, OMP_PROC_BIND,
    and their time is taken out of these CPUs' busy share); None under a fake root or without affinity."""
    if str(root) != "/" or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = set(os.sched_getaffinity(0))
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except (OSError, ValueError):
        return cpus
    for tid in tids:
        try:
            cpus |= os.sched_getaffinity(tid)
        except OSError:  # a thread that ended meanwhile
            pass
    return cpus


def usable_cpus(root: str | Path, threads: int) -> int:
    """How many CPUs this process may run on (``own_cpus``), the fake tree's CPU count (``threads``) under a fake root.
    A quota binds below it; torch's threads past it wait on each other."""
    mine = own_cpus(root)
    return len(mine) if mine is not None else threads


def _ancestry(base: Path, rel: str) -> list[Path]:
    """The process's cgroup directory under ``base`` and each parent up to ``base``; where the named path is not
    under this mount (a container's mount is its own cgroup), from its nearest directory that is."""
    own = base / rel.strip("/") if rel.strip("/") else base
    while own != base and not os.path.isdir(own):  # os.path: False on EACCES, where Path.is_dir raises (3.10-3.13)
        own = own.parent
    if not os.path.isdir(own):
        return []
    dirs = [own]
    while dirs[-1] != base and base in dirs[-1].parents:
        dirs.append(dirs[-1].parent)
    return dirs


def _v2(d: Path) -> tuple[float, str] | None:
    words = _read(d / "cpu.max").split()
    if len(words) != 2 or words[0] == "max":
        return None
    try:
        quota, period = int(words[0]), int(words[1])
    except ValueError:
        return None
    return (quota / period, f"cgroup v2 {d / 'cpu.max'}: {' '.join(words)}") if quota > 0 and period > 0 else None


def _v1(d: Path) -> tuple[float, str] | None:
    try:
        quota, period = int(_read(d / "cpu.cfs_quota_us")), int(_read(d / "cpu.cfs_period_us"))
    except ValueError:
        return None
    if quota <= 0 or period <= 0:  # -1: no limit
        return None
    return quota / period, f"cgroup v1 {d / 'cpu.cfs_quota_us'}: {quota} per {period} us"


def cpu_quota(root: str | Path = "/", cpus: int | None = None) -> Quota | None:
    """The binding CPU quota of this process's cgroups, or None: no limit, none readable, or one no smaller than the
    ``cpus`` it may run on (``docker --cpus=$(nproc)`` slows nothing, and keys nothing)."""
    try:
        quota = _smallest_quota(Path(root))
    except OSError:  # a cgroup tree this user may not read says nothing either way
        return None
    return quota if quota and (cpus is None or quota.cpus < cpus) else None


def overrun(quota: float | None, threads: int) -> str | None:
    """What a quota smaller than torch's threads does (None where the threads fit it): the one sentence the
    calibration's warning and a timed region's note both say."""
    if not quota or threads <= quota:
        return None
    if quota < 1:
        return (f"torch runs {threads} thread{'s' if threads != 1 else ''} under a cgroup CPU quota of {quota:g} CPUs, "
                "less than one: even one thread stops for it")
    return (f"torch runs {threads} threads under a cgroup CPU quota of {quota:g} CPUs; "
            f"OMP_NUM_THREADS={int(quota)} fits it")


def _smallest_quota(root: Path) -> Quota | None:
    fs = root / "sys/fs/cgroup"
    found: list[tuple[float, str, Path]] = []
    for hid, controllers, rel in _cgroup_lines(root):
        if hid == "0" and controllers == "":  # the v2 hierarchy: at the root, or at unified/ on a hybrid host
            base = _v2_base(root)
            read = _v2
        elif "cpu" in controllers.split(","):
            base = next((fs / m for m in V1_MOUNTS if os.path.isdir(fs / m)), fs / "cpu")
            read = _v1
        else:
            continue
        for d in _ancestry(base, rel):
            got = read(d)
            if got:
                found.append((got[0], got[1], d / "cpu.stat"))
    if not found:
        return None
    cpus, source, stat = min(found, key=lambda f: f[0])
    return Quota(round(cpus, 3), source, str(stat))


def throttled(stat: str | Path) -> tuple[int, float] | None:
    """(periods throttled, seconds throttled) so far from a cgroup's ``cpu.stat``; None if unreadable."""
    fields = {}
    for line in _read(Path(stat)).splitlines():
        words = line.split()
        if len(words) == 2 and words[1].lstrip("-").isdigit():
            fields[words[0]] = int(words[1])
    if "nr_throttled" not in fields:
        return None
    seconds = fields["throttled_usec"] / 1e6 if "throttled_usec" in fields else fields.get("throttled_time", 0) / 1e9
    return fields["nr_throttled"], seconds


def cpu_pressure_file(root: str | Path = "/") -> Path | None:
    """The PSI file that says whether this process's tasks waited for a CPU: its cgroup v2's ``cpu.pressure`` (in a
    container with its own cgroup namespace, ``0::/`` names the mount's root, which is the container's cgroup: not
    the host's ``/proc/pressure/cpu``, which other pods' waits fill), else the system's; None where the kernel keeps
    no PSI (before 4.20, or psi=0)."""
    root = Path(root)
    for hid, controllers, rel in _cgroup_lines(root):
        if hid == "0" and controllers == "":
            for d in _ancestry(_v2_base(root), rel)[:1]:
                if os.path.exists(d / "cpu.pressure"):
                    return d / "cpu.pressure"
    system = root / "proc/pressure/cpu"
    return system if os.path.exists(system) else None


def _cgroup_lines(root: Path) -> list[tuple[str, str, str]]:
    """(hierarchy id, controllers, path) of each line of ``/proc/self/cgroup``."""
    return [tuple(parts) for parts in (line.split(":", 2) for line in _read(root / "proc/self/cgroup").splitlines())
            if len(parts) == 3]


def _v2_base(root: Path) -> Path:
    """The cgroup v2 mount: ``/sys/fs/cgroup`` itself, or ``unified/`` under it on a hybrid host."""
    fs = root / "sys/fs/cgroup"
    return fs if os.path.exists(fs / "cgroup.controllers") else fs / "unified"


def pressure_some_s(path: str | Path | None) -> float | None:
    """Seconds so far in which some task (of the file's cgroup, or of the system) waited for a CPU: PSI ``some``'s
    ``total``; None if unreadable."""
    for line in _read(Path(path)).splitlines() if path else ():
        if line.startswith("some "):
            for word in line.split():
                if word.startswith("total=") and word[6:].isdigit():
                    return int(word[6:]) / 1e6
    return None
