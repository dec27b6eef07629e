"""Telemetry of the timed region itself: clocks, throttling, temperature, load and energy *during* it.

A snapshot taken before a measurement says nothing about a power cap that bites half-way through, and
board power sampled every few ms says little on Ampere and newer, where ``nvmlDeviceGetPowerUsage`` is
a 1 s average (NVML docs): a 0.2 s run sampled that way mixes idle and load. So:

1. ``start()`` / ``stop()`` bracket exactly the timed calls (the timer calls them after warmup).
2. Energy: NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ since the driver
   loaded; Volta and newer) read at start and stop. A Jetson has no such counter: its INA3221 board
   input rail (VDD_IN) is sampled and integrated. Where neither exists, energy is None and
   ``energy_source`` says why; per-call energy divides the region's energy by the timed calls only.
   The region includes what the timer does between calls (rotating cold operands), and says so.
3. A background thread samples the SM clock, throttle reasons, temperature and load every
   ``interval_s``; a clock drop (``CLOCK_DROP_FRACTION``) or a disturbing throttle reason becomes a flag. The
   board's own settings (its power limit, clocks a user set: ``telemetry.CLOCK_SETTING_REASONS``) are a note
   (``settings``), and so is a drop whose low samples the power limit alone explains: they hold every run alike.
4. Cheap and never raises: a query the device refuses is dropped after its first refusal; anything
   that fails becomes a note. On the CPU it reads at start and stop only: the cores' frequency, the cgroup quota's
   stops (``cgroup.throttled``) and the CPU pressure (PSI ``some``): a stop or a wait is contention, or a standing
   setting where torch's own threads overrun the quota or the CPUs.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from roofline.hardware import shares_board, vgpu_type

from . import jetson as _jetson
from . import nvml as _nvml
from .cgroup import cpu_pressure_file, overrun, pressure_some_s, throttled, usable_cpus

# A clock that falls more than this below a level it held earlier in the same region is reported: boost
# clocks wander by a few bins under steady load; a fall past 5% is a power, thermal or other cap acting.
CLOCK_DROP_FRACTION = 0.05
# A CPU region in which some task waited for a CPU longer than this share of it ran beside other work (PSI "some"):
# on this project's 2-core VMs a quiet 2-thread GEMM loop read 0.2-0.5%, the same beside one busy process 43-45%
CPU_WAIT_FRACTION = 0.10
CPU_WAIT_MIN_S = 0.002  # and at least this long: one daemon's wake-up is a large share of a 2 ms region


@dataclass
class Sample:
    t_s: float
    clock_mhz: float | None = None
    temperature_c: float | None = None
    load_pct: float | None = None
    throttle: list = field(default_factory=list)
    power_w: float | None = None  # Jetson VDD_IN only: NVML's power reading is not sampled (1 s average)


def _largest_drop(clocks: list[float]) -> tuple[float, float] | None:
    """(from, to) of the largest fall of a clock below an earlier value, or None if it never fell."""
    best, high = None, None
    for c in clocks:
        high = c if high is None else max(high, c)
        if c < high and (best is None or high - c > best[0] - best[1]):
            best = (high, c)
    return best


# The one setting that lowers a clock part-way through a region: the board reaching its power limit (a dense GEMM
# settles below boost in every run). Applications or display clocks are fixed ceilings, which explain no fall.
DROP_SETTINGS = frozenset({"SwPowerCap"})


def region_flags(samples: list[Sample], clock_name: str = "SM clock") -> list[str]:
    """Contention seen during the region: a disturbing throttle reason, or a clock drop its low samples do not
    owe to the power limit alone."""
    from .telemetry import disturbing
    flags = []
    bad = disturbing({r for s in samples for r in s.throttle})
    drop = _largest_drop([s.clock_mhz for s in samples if s.clock_mhz is not None])
    if drop and drop[1] < drop[0] * (1 - CLOCK_DROP_FRACTION):
        low = [set(s.throttle) for s in samples if s.clock_mhz is not None and s.clock_mhz <= drop[1]]
        if bad or not all(r & DROP_SETTINGS for r in low):
            flags.append(f"{clock_name} dropped from {drop[0]:g} to {drop[1]:g} MHz during the timed region")
    if bad:
        flags.append(f"throttled during the timed region: {', '.join(bad)}")
    return flags


def integrate_power(samples: list[Sample]) -> float | None:
    """Joules under the sampled power curve (trapezoids), None with fewer than two readings."""
    pts = [(s.t_s, s.power_w) for s in samples if s.power_w is not None]
    if len(pts) < 2:
        return None
    return sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(pts, pts[1:]))


def _span(values):
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (None, None)


class RegionMonitor:
    """Clocks, throttling, temperature, load and energy of the timed region of one measurement."""

    def __init__(self, info, interval_s: float = 0.05):
        self.info, self.interval_s = info, interval_s
        self.kind = getattr(info, "kind", "cpu")
        self.root = Path(getattr(info, "sysfs_root", "/") or "/")
        self.samples: list[Sample] = []
        self.notes: list[str] = []
        self.matched_by = None
        self._t0 = self._t1 = None
        self._energy = [None, None]  # NVML counter at start and stop, mJ
        self._energy_why = None
        self._cpu_mhz = [None, None]
        self._throttled = [None, None]  # the binding cgroup's (periods, seconds) throttled at start and stop
        self._pressure = [None, None]  # PSI "some" seconds at start and stop (tasks waiting for a CPU)
        self._pressure_file = None
        self._stop = threading.Event()
        self._thread = None
        self._session = self._pynvml = self._handle = None
        self._board, self._mig = None, False  # the board's handle (a MIG slice's: its parent's) for its readings
        self._refused: set[str] = set()
        self._gpu_dir = self._rail_files = None

    # --- the timer's two calls ---------------------------------------------------------------------
    def start(self):
        try:
            if self.kind == "cuda":
                self._open_nvml()
            if self.kind == "jetson":
                self._gpu_dir, self._rail_files = _jetson.find_gpu_devfreq(self.root), _jetson.vdd_in_files(self.root)
            if self.kind == "cpu":
                self._cpu_mhz[0] = self._cpu_now()
                self._throttled[0] = self._throttled_now()
                self._pressure_file = cpu_pressure_file(self.root)
            elif self.kind == "jetson" or self._handle is not None:
                self.samples.append(self._sample(time.perf_counter()))
                self._thread = threading.Thread(target=self._run, daemon=True, name="RegionMonitor")
                self._thread.start()
            self._energy[0] = self._energy_now()
            if self.kind == "cpu":  # last before the region opens, first after it closes: its window is the region's
                self._pressure[0] = pressure_some_s(self._pressure_file)
            self._t0 = time.perf_counter()
        except Exception as e:
            self.notes.append(f"start: {_nvml.error_text(e)}")

    def stop(self):
        try:
            self._energy[1] = self._energy_now()
            self._t1 = time.perf_counter()
            if self.kind == "cpu":
                self._pressure[1] = pressure_some_s(self._pressure_file)
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
                self.samples.append(self._sample(self._t1))
            if self.kind == "cpu":
                self._cpu_mhz[1] = self._cpu_now()
                self._throttled[1] = self._throttled_now()
        except Exception as e:
            self.notes.append(f"stop: {_nvml.error_text(e)}")
        finally:
            self._close_nvml()

    # --- what is read ------------------------------------------------------------------------------
    def _open_nvml(self):
        try:
            self._session = _nvml.session()
            self._pynvml = self._session.__enter__()
            t = _nvml.open_target(self._pynvml, getattr(self.info, "uuid", None),
                                  getattr(self.info, "pci_bus_id", None), getattr(self.info, "name", None))
            self._handle, self._board, self._mig, self.matched_by = t.handle, t.board, t.mig, t.matched_by
            self.notes += t.notes
            if self._mig:  # not supported on a MIG-enabled GPU (nvml.h L7096): not asked, not noted each run
                self._refused.add("utilization")
        except Exception as e:
            self._energy_why = (f"NVML: {e}" if isinstance(e, LookupError)
                                else f"NVML unavailable ({_nvml.error_text(e)})")
            self._close_nvml()

    def _close_nvml(self):
        if self._session is not None:
            self._session.__exit__(None, None, None)
        self._session = None

    def _ask(self, name, call):
        """One NVML query of the board's state; a query refused once is not asked again (keeps sampling cheap)."""
        if self._board is None or name in self._refused:
            return None
        try:
            return call()
        except Exception as e:
            self._refused.add(name)
            self.notes.append(f"{name}: {_nvml.error_text(e)}")
            return None

    def _energy_now(self):
        if self.kind != "cuda" or self._board is None:
            return None
        return self._ask("energy", lambda: self._pynvml.nvmlDeviceGetTotalEnergyConsumption(self._board))

    def _sample(self, t: float) -> Sample:
        if self.kind == "jetson":
            mhz, load = _jetson.gpu_clock_and_load(self.root, self._gpu_dir)
            return Sample(t, mhz, _jetson.gpu_temperature_c(self.root), load, [],
                          _jetson.board_power_w(self.root, self._rail_files) if self._rail_files else None)
        from .telemetry import throttle_reason_names
        p, h = self._pynvml, self._board
        mask = self._ask("throttle", lambda: p.nvmlDeviceGetCurrentClocksEventReasons(h))
        return Sample(t, self._ask("sm_clock", lambda: p.nvmlDeviceGetClockInfo(h, p.NVML_CLOCK_SM)),
                      self._ask("temperature", lambda: p.nvmlDeviceGetTemperature(h, p.NVML_TEMPERATURE_GPU)),
                      self._ask("utilization", lambda: p.nvmlDeviceGetUtilizationRates(h).gpu),
                      throttle_reason_names(mask, p) if mask else [])

    def _run(self):
        while not self._stop.wait(self.interval_s):
            try:
                self.samples.append(self._sample(time.perf_counter()))
            except Exception as e:
                self.notes.append(f"sample: {_nvml.error_text(e)}")
                return

    def _cpu_now(self):
        from .telemetry import cpu_freqs_mhz
        freqs = cpu_freqs_mhz(self.root)
        return sum(freqs) / len(freqs) if freqs else None

    def _throttled_now(self):
        stat = getattr(getattr(self.info, "cpu", None), "quota_stat", "")
        return throttled(stat) if stat else None

    def _quota_stops(self) -> tuple[list[str], list[str]]:
        """(flags, settings) for stops by the cgroup's CPU quota during the timed calls, which lasted up to a period
        longer for them. With torch's threads within the quota, a stop is other work in the group: contention. With
        more threads than it has CPUs, every region stops alike: a standing setting (in the profile's key, and warned
        at calibration), said on the record, as a board's power limit is."""
        a, b = self._throttled
        if a is None or b is None or b[0] <= a[0]:
            return [], []
        import torch
        quota, threads = self.info.cpu.quota_cpus, torch.get_num_threads()
        stopped = f"{b[0] - a[0]} period(s), {(b[1] - a[1]) * 1e3:.1f} ms stopped"
        over = overrun(quota, threads)
        if over:
            return [], [f"stopped by the cgroup's CPU quota during the timed region ({stopped}): a standing setting, "
                        f"not contention: {over}"]
        return [f"throttled by the cgroup's CPU quota during the timed region: {stopped}, with torch's {threads} "
                f"thread{'s' if threads != 1 else ''} within its {quota:g} CPUs (other work in the group)"], []

    def _waited(self) -> float | None:
        """The share of the timed region in which some task waited for a CPU (PSI), or None without PSI."""
        a, b = self._pressure
        if a is None or b is None or self._t0 is None or self._t1 is None or self._t1 <= self._t0:
            return None
        return max(0.0, b - a) / (self._t1 - self._t0)

    def _pressure_notes(self) -> tuple[list[str], list[str]]:
        """(flags, settings) for tasks waiting for a CPU during the timed calls (PSI): other work the snapshot before
        them cannot see when it starts while they run. Where torch's own threads outnumber the CPUs they may use (a
        cgroup quota they overrun, or more threads than the affinity's CPUs), they wait on each other in every
        region: a standing setting (PSI counts a task the quota throttles as waiting, Linux 5.7+), said, not
        contention."""
        waited = self._waited()
        if waited is None or waited <= CPU_WAIT_FRACTION or \
                waited * (self._t1 - self._t0) <= CPU_WAIT_MIN_S:
            return [], []
        said = f"tasks waited for a CPU {waited:.0%} of the timed region (PSI some, {self._pressure_file})"
        own = self._own_overrun()
        if own:
            return [], [f"{said}: a standing setting, not contention: {own}"]
        return [f"CPU pressure during the timed region: {said}"], []

    def _own_overrun(self) -> str | None:
        """Why torch's own threads wait on each other here (None where they fit the CPUs and the quota)."""
        import torch
        threads, cpu = torch.get_num_threads(), getattr(self.info, "cpu", None)
        over = overrun(getattr(cpu, "quota_cpus", None), threads)
        if over:
            return over
        usable = usable_cpus(self.root, getattr(cpu, "threads", None))
        return (f"torch runs {threads} threads on {usable} CPUs; OMP_NUM_THREADS={usable} fits them"
                if usable and threads > usable else None)

    # --- the record --------------------------------------------------------------------------------
    def _energy_j(self) -> tuple[float | None, str]:
        if self._t0 is None or self._t1 is None:
            never = "started" if self._t0 is None else "stopped"
            return None, f"none: the region was never {never} (no timed loop ran through it)"
        span_ms = (self._t1 - self._t0) * 1e3 if self._t0 is not None and self._t1 is not None else 0.0
        if self.kind == "cuda":
            e0, e1 = self._energy
            if self._mig:
                used = (f"the board used {(e1 - e0) / 1e3:.4g} J over the {span_ms:.1f} ms region: this slice's "
                        f"calls, other instances' work and the board's idle power" if e0 is not None and e1 is not None
                        else "no board reading either")
                return None, (f"none: a MIG slice: NVML's energy counter is the board's, which every instance "
                              f"shares ({used})")
            if e0 is not None and e1 is not None and vgpu_type(getattr(self.info, "name", None)) is not None:
                # NVIDIA's vGPU guide lists no energy among a guest's metrics: a counter a guest reads is not shown to
                # be its own, and where the board is shared with other VMs it would charge their work to these calls
                return None, (f"none: a vGPU: the energy counter a guest reads ({(e1 - e0) / 1e3:.4g} J over the "
                              f"{span_ms:.1f} ms region) is not documented as its own, and may be the board's")
            if e0 is not None and e1 is not None:
                if e1 > e0:
                    return (e1 - e0) / 1e3, "nvml total energy counter"
                return None, f"none: the NVML energy counter did not advance over the {span_ms:.1f} ms region"
            why = self._energy_why or next((n for n in self.notes if n.startswith("energy")), "no reading")
            return None, f"none: nvmlDeviceGetTotalEnergyConsumption unavailable ({why})"
        if self.kind == "jetson":
            joules = integrate_power(self.samples)
            if joules is not None:
                return joules, "jetson INA3221 VDD_IN (board input, sampled and integrated)"
            return None, f"none: no INA3221 VDD_IN rail readable under {self.root}/sys/bus/i2c/devices"
        return None, "none: no energy counter on the host CPU"

    def result(self, calls: int) -> dict:
        from .telemetry import settings_note
        try:
            energy, source = self._energy_j()
            clock_name = "GPU clock" if self.kind == "jetson" else "SM clock"
            clocks = _span(s.clock_mhz for s in self.samples)
            temps = _span(s.temperature_c for s in self.samples)
            loads = _span(s.load_pct for s in self.samples)
            quota_flags, quota_settings = self._quota_stops()
            pressure_flags, pressure_settings = self._pressure_notes()
            held = settings_note({r for s in self.samples for r in s.throttle}, clocks,
                                 shares_board(getattr(self.info, "name", None)))
            out = {"samples": len(self.samples),
                   "flags": region_flags(self.samples, clock_name) + quota_flags + pressure_flags,
                   "energy_j": energy, "energy_per_call_j": energy / calls if energy is not None and calls else None,
                   "energy_source": source, "calls": calls,
                   "duration_s": self._t1 - self._t0 if self._t0 is not None and self._t1 is not None else None,
                   "sm_clock_mhz_min": clocks[0], "sm_clock_mhz_max": clocks[1],
                   "temperature_c_min": temps[0], "temperature_c_max": temps[1],
                   "load_pct_min": loads[0], "load_pct_max": loads[1],
                   "throttle_reasons": sorted({r for s in self.samples for r in s.throttle}),
                   # the board's or host's standing settings that held this region back (not contention)
                   "settings": ([held] if held else []) + quota_settings + pressure_settings,
                   "matched_by": self.matched_by, "notes": list(self.notes)}
            if energy is not None:
                out["energy_note"] = "the timed loop, including the timer's work between calls"
            if self._mig:
                e0, e1 = self._energy
                out["board_energy_j"] = (e1 - e0) / 1e3 if e0 is not None and e1 is not None and e1 > e0 else None
                out["mig"] = _nvml.MIG_READINGS
            if self.kind == "cpu":
                out.update(cpu_mhz_start=self._cpu_mhz[0], cpu_mhz_stop=self._cpu_mhz[1], cpu_wait_fraction=self._waited())
            return out
        except Exception as e:  # a record, never a crash
            return {"samples": len(self.samples), "flags": [], "energy_j": None, "energy_per_call_j": None,
                    "energy_source": f"none: {_nvml.error_text(e)}", "notes": list(self.notes)}
