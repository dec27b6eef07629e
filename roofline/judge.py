"""The rules that decide a measured case: prediction, measurement(s), tolerance, evidence -> verdict.

Pure (no torch, no pytest): the suite's test bodies read build -> measure -> judge -> assert, and every
branch here is unit-tested with fake measurements (tests/test_judge.py). Checks and when they bind:

1. physics: a measurement may not beat its roof by more than the noise measured around it: the
   timer's own spread (median vs p20 of the samples) plus the roof's (0 for a datasheet roof; for a
   calibrated one, the spread between the calibration's looks at it) plus ``RESOLUTION``. Always
   enforced where a roof's noise is known. A calibrated memory roof drifts with other tenants'
   traffic, invisible to a VM: a beat re-measures that roof now and holds the case to the better one.
2. correctness: the kernel's output matches its reference (tolerance per format). Always enforced.
3. stored bytes: the operands really take the bits per element the byte model charges (an INT4 weight
   kept unpacked in 16 bits, or a format mis-counted, fails here whatever its speed). Always enforced.
4. efficiency: against a floor where evidence exists for the device family (tolerances.toml, sourced),
   else against this device's own recorded baseline less the regression band; on a device with
   neither, the run records the baseline and says so (reported, not enforced). A case under its bar
   while contention was seen is measured once more before it is judged.
5. ratio between precisions: enforced only where the family's paths are expected to reach their roofs
   (``ratio_enforced`` in the table); elsewhere reported.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

RESOLUTION = 0.02  # timer resolution and clock jitter: a beat smaller than this is not evidence
BYTES_TOLERANCE = (0.97, 1.10)  # stored vs charged bits/element (per-row scales of small shapes)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    enforced: bool
    reason: str

    def __str__(self) -> str:
        state = "ok" if self.ok else ("FAILED" if self.enforced else "not met (reported only)")
        return f"{self.name}: {state}: {self.reason}"


@dataclass(frozen=True)
class Verdict:
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks if c.enforced)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.enforced and not c.ok]

    def message(self) -> str:
        lines = [str(c) for c in (self.failures or self.checks)]
        return "; ".join(lines + list(self.notes))

    def to_dict(self) -> dict:
        return {"passed": self.passed, "checks": [c.__dict__ for c in self.checks], "notes": list(self.notes)}


@dataclass(frozen=True)
class Observation:
    """One measurement as the judge sees it."""
    median_s: float
    p20_s: float
    predicted_s: float          # the roof it is held against (physics)
    contention: tuple[str, ...] = ()
    expected_s: float | None = None  # the prediction efficiency is measured against, when not the roof itself

    @property
    def efficiency(self) -> float:
        return (self.expected_s or self.predicted_s) / self.median_s

    @property
    def roof_fraction(self) -> float:
        return self.predicted_s / self.median_s

    @property
    def timer_noise(self) -> float:
        return max(0.0, (self.median_s - self.p20_s) / self.median_s)


@dataclass(frozen=True)
class Evidence:
    """What the efficiency of a case is held to on this device."""
    floor: float | None = None
    floor_source: str = ""
    baseline: float | None = None
    baseline_source: str = ""
    regression_band: float = 0.5

    @property
    def bar(self) -> tuple[float, str] | None:
        if self.floor is not None:
            return self.floor, f"floor {self.floor:.0%} {self.floor_source}"
        if self.baseline is not None:
            bar = self.baseline * (1 - self.regression_band)
            return bar, (f"this device's baseline {self.baseline:.0%} less the {self.regression_band:.0%} regression "
                         f"band = {bar:.0%} ({self.baseline_source})")
        return None


def physics(obs: Observation, roof_noise: float | None, roof_label: str) -> Check:
    if roof_noise is None:
        return Check("physics", obs.roof_fraction <= 1 + RESOLUTION, False,
                     f"{roof_label} is not a settled ceiling: {obs.roof_fraction:.0%} of it, reported, not enforced")
    allowed = obs.timer_noise + roof_noise + RESOLUTION
    ok = obs.median_s >= obs.predicted_s * (1 - allowed)
    return Check("physics", ok, True, f"measured {obs.median_s * 1e6:.4g} us vs {roof_label} {obs.predicted_s * 1e6:.4g} "
                 f"us ({obs.roof_fraction:.1%} of it; allowed beat {allowed:.1%} = timer {obs.timer_noise:.1%} + "
                 f"roof {roof_noise:.1%} + resolution {RESOLUTION:.0%})")


def correctness(error: float | None, why_not: str = "", checked: bool = True) -> Check:
    if not checked:  # e.g. a simulated device whose kernel cannot run on the CPU: said, never claimed
        return Check("correctness", True, False, f"not checked: {why_not}")
    if error is None:
        return Check("correctness", False, True, why_not or "no result to check")
    return Check("correctness", True, True, f"max relative error {error:.3g} within the format's tolerance")


def stored_bytes(stored_bits: float | None, charged_bits: float, fmt: str) -> Check:
    if stored_bits is None:
        return Check("stored bytes", True, False, "no weight operand to weigh")
    ratio = stored_bits / charged_bits
    ok = BYTES_TOLERANCE[0] <= ratio <= BYTES_TOLERANCE[1]
    return Check("stored bytes", ok, True, f"{fmt} weights store {stored_bits:.3g} bits/element, the byte model "
                 f"charges {charged_bits:.3g} ({ratio:.2f}x; allowed {BYTES_TOLERANCE[0]}-{BYTES_TOLERANCE[1]}x)")


def efficiency(obs: Observation, evidence: Evidence) -> Check:
    bar = evidence.bar
    if bar is None:
        return Check("efficiency", True, False, f"{obs.efficiency:.1%} of the roof; no floor for this device family "
                     "and no baseline yet: this run records the baseline, later runs are held to it")
    value, source = bar
    return Check("efficiency", obs.efficiency >= value, True, f"{obs.efficiency:.1%} of the roof vs {source}")


def ratio(measured: float, predicted: float, band_low: float, band_high: float, enforced: bool,
          why_not: str = "") -> Check:
    ok = predicted / band_low <= measured <= predicted * band_high
    reason = (f"measured speedup {measured:.2f}x vs predicted {predicted:.2f}x (allowed x1/{band_low:g} to "
              f"x{band_high:g})")
    return Check("ratio", ok, enforced, reason + ("" if enforced else f"; reported only: {why_not}"))


def judge_measurement(measure: Callable[[], Observation], *, error: float | None, error_note: str = "",
                      error_checked: bool = True,
                      stored_bits: float | None = None, charged_bits: float = 0.0, fmt: str = "",
                      roof_noise: float | None = 0.0, roof_label: str = "roof", evidence: Evidence = Evidence(),
                      roof_now: Callable[[], float] | None = None, check_efficiency: bool = True
                      ) -> tuple[Verdict, Observation]:
    """Measure (again where the rules say so) and judge. ``roof_now`` re-measures a drifting roof and returns
    the factor by which it is faster now than in the profile (>1: the roof was understated)."""
    notes = []
    obs = measure()
    bar = evidence.bar
    if check_efficiency and bar is not None and obs.efficiency < bar[0] and obs.contention:
        notes.append(f"re-measured after contention: {', '.join(obs.contention)}")
        obs = measure()
    phys = physics(obs, roof_noise, roof_label)
    if not phys.ok and phys.enforced and roof_now is not None:
        factor = roof_now()
        if factor > 1:
            notes.append(f"roof re-measured now: {factor:.2f}x the profile's")
            # the roof moved; a separate expectation (a software compute time) did not
            expected = None if obs.expected_s in (None, obs.predicted_s) else obs.expected_s
            obs = replace(obs, predicted_s=obs.predicted_s / factor, expected_s=expected)
            phys = physics(obs, roof_noise, roof_label + " (re-measured now)")
    checks = [phys, correctness(error, error_note, error_checked)]
    if charged_bits:
        checks.append(stored_bytes(stored_bits, charged_bits, fmt))
    if check_efficiency:
        checks.append(efficiency(obs, evidence))
    return Verdict(tuple(checks), tuple(notes)), obs


@dataclass
class BaselineBook:
    """This device's recorded efficiencies, per case (the evidence for a device with no sourced floors)."""
    entries: dict = field(default_factory=dict)
    recorded: list = field(default_factory=list)  # case ids first recorded in this run

    def get(self, case_id: str, calibration: str | None = None) -> float | None:
        """The recorded efficiency, if it was measured against the same calibration (efficiency is relative
        to a roof: a re-calibrated device starts its baseline again)."""
        e = self.entries.get(case_id)
        if e is None or (calibration is not None and e.get("calibration", calibration) != calibration):
            return None
        return float(e["efficiency"])

    def record(self, case_id: str, efficiency_value: float, when: str, context: dict) -> None:
        if case_id not in self.recorded:
            self.entries[case_id] = {"efficiency": efficiency_value, "recorded": when, **context}
            self.recorded.append(case_id)
