"""The device under test, resolved once: a ``Target`` (issue 20: one path from a hardware key to a verdict).

``resolve_target`` turns what a command was given (``--hardware`` or detection, ``--hardware-file``,
``--power-mode``, stated clocks, ``--calibration`` or the profile store, ``--peaks``) into the device info, the
entry its predictions are held against (``measure.hardware_for``, which goes through ``roofline.clocks.resolve``),
which roof applies, the physics ceiling, and the efficiency model behind expected times. ``measure``, the spot
check and ``quantize`` take it from here instead of each rebuilding it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from roofline import Hardware, load_calibration, load_hardware_file
from roofline.efficiency import model_of

from .device import DeviceInfo

CLOCK_OPTIONS = ("gpu_clock_mhz", "mem_clock_mhz", "active_sms")


@dataclass(frozen=True)
class Target:
    info: DeviceInfo
    hardware: Hardware  # with its calibration, in the power mode and at the clocks it runs at
    peaks: str  # which roof predictions use: "datasheet" or "calibrated"
    ceiling: Hardware | None = None  # what physics holds a measurement to (its "datasheet" prediction), if known
    model: object | None = None  # roofline.efficiency model: expected times, where a sweep exists
    clocks_stated: bool = False  # the user stated clocks: the roof is scaled, and the model learns nothing here

    @property
    def calibration(self):
        return self.hardware.calibration

    @property
    def learns(self) -> bool:
        """Whether a measurement here joins the efficiency model: a real device's, at the clocks it runs at."""
        return self.calibration is not None and not self.clocks_stated and not self.info.simulated


def stated_clocks(clocks: dict | None, peaks: str | None) -> dict:
    """The clocks stated (None dropped). They scale the datasheet roof: ``peaks="calibrated"`` beside them is refused."""
    clocks = {k: v for k, v in (clocks or {}).items() if v is not None}
    unknown = set(clocks) - set(CLOCK_OPTIONS)
    if unknown:
        raise ValueError(f"unknown clock option(s) {', '.join(sorted(unknown))}; allowed: {', '.join(CLOCK_OPTIONS)}")
    if clocks and peaks == "calibrated":
        raise ValueError(f"{', '.join('--' + k.replace('_', '-') for k in clocks)}: these options scale the "
                         "datasheet roof, and a calibrated roof was measured at the clocks the device ran at then: use "
                         "--peaks datasheet (the default with these options)")
    return clocks


def resolve_target(hardware: str | None = None, *, hardware_file=None, power_mode: str | None = None,
                   clocks: dict | None = None, calibration=None, peaks: str | None = None, store=None,
                   progress: Callable[[str], None] = lambda s: None, check=None) -> Target:
    """The device detected (or named by ``hardware``, a ``hardware_file``'s entry included), scaled to the power mode
    and clocks stated, with its calibration (``calibration``: a path or a profile; else the store's, measured
    quickly where the roof needs one). Stated clocks scale the datasheet roof: they refuse ``peaks="calibrated"``.
    ``check(info, hw)``: what refuses the request on this device (ValueError), asked before any calibration is
    loaded or measured."""
    from .calibrate import load_or_calibrate, store_dir
    from .ceiling import ceiling_hardware
    from .device import detect
    from .measure import hardware_for
    if hardware_file:
        load_hardware_file(hardware_file)
    clocks = stated_clocks(clocks, peaks)
    info = detect(hardware)
    cal = load_calibration(calibration) if isinstance(calibration, str) else calibration
    hw = hardware_for(info, cal, power_mode=power_mode, clocks=clocks)
    if check is not None:
        check(info, hw)
    if cal is None and peaks != "datasheet" and (peaks == "calibrated" or hw.bandwidth is None):
        cal = load_or_calibrate(info, store, quick=True, progress=progress, hw=hardware_for(info))
        hw = hardware_for(info, cal, power_mode=power_mode, clocks=clocks)
    # what physics holds it to: the device as it runs, not as stated (a wrong statement shows beyond the roof)
    ceiling = ceiling_hardware(info, hardware_for(info, cal), store_dir(store))
    return Target(info, hw, peaks or ("datasheet" if clocks or cal is None else "calibrated"), ceiling,
                  None if clocks else model_of(cal), bool(clocks))


def simulated_target(sim, hardware: str | None = None, *, hardware_file=None, power_mode: str | None = None,
                     clocks: dict | None = None, peaks: str | None = None) -> Target:
    """The same on a simulated device (tests/simulation.py): its detection over the fakes, its synthesised
    calibration, its datasheet as the ceiling; no store is touched and nothing is learnt."""
    from .measure import hardware_for
    if hardware_file:
        load_hardware_file(hardware_file)
    clocks = stated_clocks(clocks, peaks)
    info = sim.detect(hardware)
    cal = sim.calibration(info, hardware_for(info))
    hw = hardware_for(info, cal, power_mode=power_mode, clocks=clocks)
    return Target(info, hw, peaks or ("datasheet" if clocks else "calibrated"), hardware_for(info), None, bool(clocks))
