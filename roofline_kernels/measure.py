"""A measured number with its context: device, clocks, cold/hot, spread, and the prediction it faces.

``measure_kernel`` times a ``Kernel``, prices the same ``OpCost`` with ``roofline.predict`` on the
hardware entry in use (datasheet or calibrated roof, scaled to a Jetson's current power mode), takes a
telemetry snapshot before and a ``RegionMonitor`` record during the timed calls (clocks, throttling,
energy), and says whether the cold samples were really cold (rotation span vs the caches).
Efficiency is ``predicted_time / measured_median``: 1.0 is the roof; above 1 means the measurement
beat the roof it is held to, which is flagged (``beats_roof``), never celebrated: past a physical ceiling
(``beats_ceiling``) a bug to explain that fails the physics check; past a calibrated roof, a calibration that
fell short (the efficiency sweep raises such a roof, ``efficiency.raise_roofs``), reported.
An emulated kernel (FP8 on a CPU) has no compute roof: it is held against the memory roof only.
On a simulated device the timing comes from ``timer`` (synthesised), and every record says SIMULATED.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass, field

from roofline import Hardware, get_format, get_hardware, predict
from roofline.clocks import (POWER_MODES, find_power_mode, mig_profile, mig_slice, resolve, scale_clocks,
                             unknown_power_mode)
from roofline.judge import RESOLUTION, Observation, physics
from roofline.predict import UnsupportedPathError, roofline_time

from . import telemetry
from .region import RegionMonitor
from .device import DeviceInfo, host_cpu_hardware
from .kernel import Kernel
from .timer import BudgetExceeded, Timing, bench

ROTATION_CACHE_MULTIPLE = 2  # cold rotations span at least this many times the caches they must defeat
ROTATION_MEMORY_FRACTION = 0.25  # ... and at most this share of the memory available now


def hardware_for(info: DeviceInfo, calibration=None, power_mode: str | None = None,
                 clocks: dict | None = None) -> Hardware:
    """The registry entry to predict against: the host CPU gets derived peaks; a Jetson is scaled to the power
    mode it runs in now (its MAXN roof would flatter every lower mode's case); a profile rides along.

    ``power_mode`` and ``clocks`` (``gpu_clock_mhz``, ``mem_clock_mhz``, ``active_sms``) are what the user states
    of the device measured (``measure --power-mode/--gpu-clock-mhz/...``). Each applies where it describes this
    device, and is refused with the reason where it cannot (ValueError): a measurement times the device as it
    runs, so an option can say how it runs, never change it."""
    hw = host_cpu_hardware(info.cpu) if info.hardware_key == "cpu" else get_hardware(info.hardware_key)
    if info.kind == "cuda" and info.sm_count and mig_profile(info.name) and hw.kind == "gpu":
        hw = mig_slice(hw, info.name, info.sm_count)  # a MIG slice: its SMs and memory slices, not the board's
    mode = _mode_to_apply(hw, info, power_mode)
    if mode is None and hw.key in POWER_MODES and info.kind == "jetson":
        mode = mode_from_caps(hw, info)  # no nvpmodel (a container): the caps the mode set say which it is
        if mode is None and any(jetson_caps(info).values()):
            hw = at_measured_caps(hw, "unreported", info, why="no nvpmodel to ask, and its caps match no mode of "
                                                              "the table")
    if mode and hw.key in POWER_MODES and not find_power_mode(hw.key, mode):
        hw, mode = at_measured_caps(hw, mode, info), None
    clocks = {k: v for k, v in (clocks or {}).items() if v is not None}
    if clocks and hw.kind == "cpu":
        named = ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in clocks.items())
        raise ValueError(f"{named}: {hw.key} is a CPU; these options scale a GPU's roof by its clocks and SMs, "
                         "and a CPU's roof comes from its ISA and calibration")
    # the one path from a key and its options to an entry (roofline.clocks.resolve), as the theory's commands take
    hw = resolve(hw, mode if hw.key in POWER_MODES else None, **clocks)
    if calibration is None:
        return hw
    return hw.with_calibration(calibration)  # a CPU's measured software paths join its native formats there


def _mode_to_apply(hw: Hardware, info: DeviceInfo, stated: str | None) -> str | None:
    """The nvpmodel mode the roof is scaled to: the one the board reports, or the one stated where it reports none."""
    detected = (info.power_mode or {}).get("mode")
    if stated is None:
        return detected
    if hw.key not in POWER_MODES:
        raise ValueError(f"--power-mode {stated!r}: {hw.key} has no nvpmodel power modes (a Jetson's); boards "
                         f"with modes: {', '.join(POWER_MODES)}")
    found = find_power_mode(hw.key, stated)
    if found is None:
        raise unknown_power_mode(hw.key, stated)
    if detected is not None and (find_power_mode(hw.key, detected) or (detected,))[0] != found[0]:
        raise ValueError(f"--power-mode {stated!r}: the board runs in {detected} now (nvpmodel -q), and a "
                         f"measurement times it as it runs; switch first (sudo nvpmodel -m {found[1][0]}) or leave "
                         f"--power-mode out")
    return found[0]


def jetson_caps(info: DeviceInfo) -> dict:
    from . import jetson
    return jetson.mode_caps(info.sysfs_root)


def mode_from_caps(hw: Hardware, info: DeviceInfo) -> str | None:
    """The power mode a Jetson runs in, read from the caps it set (GPU devfreq ``max_freq``, the EMC cap) where no
    ``nvpmodel`` answers (a container has none): the one mode of the board's table that sets both, or None. Without
    it a container's board got its MAXN roofs in every mode (an AGX in its default MODE_30W held to FP16 42.6 where
    its mode gives about 10)."""
    caps = jetson_caps(info)
    gpu, emc = caps["gpu_max_mhz"], caps["emc_cap_mhz"]
    if not gpu:
        return None
    top = hw.mem_clock.value if hw.mem_clock is not None else None

    def uncapped(mhz):  # no cap, or a cap at the board's top clock (the Orin Nano's 15W lists 2133 and writes 0)
        return mhz is None or (top is not None and mhz >= 0.99 * top)

    def emc_fits(spec_emc):
        if not caps.get("emc_cap_known", True):  # no cap file: the EMC says nothing, so it tells no mode apart
            return True
        if uncapped(spec_emc):
            return uncapped(emc)
        return emc is not None and abs(emc - spec_emc) <= 0.01 * spec_emc
    found = [name for name, (_, mhz, _, spec_emc) in POWER_MODES[hw.key].items()
             if abs(gpu - mhz) <= 0.01 * mhz and emc_fits(spec_emc)]
    return found[0] if len(found) == 1 else None


def at_measured_caps(hw: Hardware, mode: str, info: DeviceInfo, why: str = "in no power-mode table") -> Hardware:
    """A Jetson in an nvpmodel mode no table lists (a custom mode in /etc/nvpmodel.conf, an AGX Orin 32GB's
    MODE_40W), or whose mode nothing reports and whose caps match none: its roofs at the caps the board reports now
    (GPU devfreq max_freq, the EMC cap, the SMs CUDA sees), named as such, instead of an error that stopped every
    measured case."""
    caps = jetson_caps(info)
    gpu, emc = caps["gpu_max_mhz"], caps["emc_cap_mhz"]
    sms = info.sm_count if info.sm_count and hw.sm_count and info.sm_count < hw.sm_count else None
    seen = ", ".join(x for x in (f"GPU {gpu:g} MHz" if gpu else "", f"EMC {emc:g} MHz" if emc else "",
                                 f"{sms} SMs" if sms else "") if x) or "none readable: the board's nominal roofs"
    label = f"nvpmodel {mode}"  # the key reads as a table mode's does; the mode itself is Hardware.power_mode
    scaled = scale_clocks(hw, gpu_clock_mhz=gpu, active_sms=sms,
                          mem_clock_mhz=emc if hw.mem_clock is not None else None, label=label)
    return dataclasses.replace(scaled, power_mode=mode,
                               name=f"{hw.name}, nvpmodel {mode}: {why}, run at the caps measured now ({seen})")


def ceiling_is_physical(info: DeviceInfo, compute_class: str | None) -> bool:
    """Whether the compute peak of this class is a hardware ceiling here. On a CPU only the classes its units
    run natively (from its flags) are; a class calibration measured on a software path (bf16 without
    AVX512-BF16, int8 without VNNI) is one kernel's speed at some shapes, which another kernel of the same
    class may beat (seen on a Zen 3: an int8 GEMV at 1.5x the int8 cube rate). Such a case is held to
    the memory roof, which bytes cannot beat on any host."""
    if info.kind != "cpu" or compute_class is None:
        return True
    return compute_class in {get_format(f).compute_class for f in host_cpu_hardware(info.cpu).native}


def cache_bytes(info: DeviceInfo) -> int:
    """The cache a cold measurement must defeat: the GPU's L2, or the CPU's last two levels together
    (AMD's L3 is a victim cache: lines evicted from L2 land there, so their capacities add)."""
    if info.kind != "cpu":
        # a GPU whose L2 size the driver does not report: assume more than any shipping GPU's (RTX 5090: 96 MB)
        return info.l2_bytes or UNKNOWN_GPU_L2_BYTES
    caches = info.cpu.caches
    # summed: exact for a victim L3, conservative (a larger rotation) for an inclusive one
    return info.cpu.llc_bytes + (caches.get("L2", 0) if len(caches) > 2 else 0)


UNKNOWN_GPU_L2_BYTES = 128 * 2**20


def available_memory_bytes(info: DeviceInfo) -> int:
    """Memory free for measurement buffers now: MemAvailable on the host, free device memory on a GPU."""
    if info.torch_device == "cuda":
        import torch
        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def cold_span_bytes(info: DeviceInfo) -> int:
    """The span a cold case's rotation covers (``cold_rotation``'s target): what its bytes really stream from."""
    return ROTATION_CACHE_MULTIPLE * cache_bytes(info)


SHORT_MARK = "SHORT of target"  # a cold note's words where memory kept the rotation short of its span (partly cached)


def rotation_short(m) -> bool:
    """Whether a measurement's cold rotation fell short of its span (``cold_rotation`` said so in its note)."""
    return SHORT_MARK in (getattr(m, "cold_note", "") or "")


def cold_rotation(kernel: Kernel, info: DeviceInfo):
    """(callables, bytes spanned, note): copies of the kernel's operands spanning 2x the caches, bounded by
    a quarter of the memory available; the note says when the bound kept the span short of the target."""
    target = cold_span_bytes(info)
    budget = int(ROTATION_MEMORY_FRACTION * available_memory_bytes(info))
    fns, spanned = kernel.rotation(target, budget)
    note = (f"cold by rotation: {len(fns)} copies spanning {spanned / 2**20:.0f} MiB (target {target / 2**20:.0f} "
            f"MiB = {ROTATION_CACHE_MULTIPLE}x caches)")
    if spanned < target:
        note += f"; {SHORT_MARK} (memory budget {budget / 2**20:.0f} MiB): samples may be partly cached"
    return fns, spanned, note


@dataclass
class Measurement:
    op: str
    precision: str
    shape: dict
    path: str
    emulated: bool
    hardware: str
    device_name: str
    timing: Timing
    flops: float
    bytes: float
    peaks: str
    predicted_time_s: float  # the full roof, or the memory roof alone (no native math, or no physical ceiling)
    prediction: dict | None
    prediction_note: str
    telemetry: dict = field(default_factory=dict)
    cold_note: str = ""
    simulated: str | None = None  # the registry key of a simulated device: the timing was synthesised
    memory_roof_only: bool = False  # held against bytes / bandwidth alone (see predicted_time_s)
    expected_time_s: float | None = None  # the roof time over the efficiency this device is expected to reach
    expected_efficiency: float | None = None
    expected_source: str = "none"  # "profile" (this device's sweep), "prior" (published), "none"
    expected_note: str = ""
    expected_uncertainty: float | None = None  # relative: the model's error near this shape and the runs' noise
    ceiling_time_s: float | None = None  # what the kernel truly cannot beat (roofline_kernels.ceiling), if known
    ceiling_note: str = ""

    @property
    def median_s(self) -> float:
        return self.timing.median_s

    @property
    def achieved_gbs(self) -> float:
        return self.bytes / self.timing.median_s / 1e9

    @property
    def achieved_tflops(self) -> float:
        return self.flops / self.timing.median_s / 1e12

    @property
    def efficiency(self) -> float:
        return self.predicted_time_s / self.timing.median_s

    @property
    def beats_roof(self) -> bool:
        """Beyond the roof it is held to (calibrated on a CPU: an expectation; the calibration ran slow)."""
        return self.efficiency > 1 + RESOLUTION

    @property
    def beats_ceiling(self) -> bool:
        """Beyond what it truly cannot beat, by more than the timer's jitter allows (roofline.judge.physics, the one
        rule): a bug to explain."""
        if self.ceiling_time_s is None:
            return False
        return not physics(Observation(self.timing.median_s, self.timing.p20_s, self.ceiling_time_s,
                                       count=self.timing.count), 0.0, "ceiling").ok

    @property
    def contention(self) -> list[str]:
        """Flags from before the timed calls and from during them (throttling, clock drops)."""
        return list(self.telemetry.get("contention", [])) + list(self.telemetry.get("region", {}).get("flags", []))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(median_s=self.timing.median_s, p20_s=self.timing.p20_s, p80_s=self.timing.p80_s,
                 count=self.timing.count, mode=self.timing.mode, achieved_gbs=self.achieved_gbs,
                 achieved_tflops=self.achieved_tflops, efficiency=self.efficiency, beats_roof=self.beats_roof,
                 beats_ceiling=self.beats_ceiling, contention=self.contention, SIMULATED=bool(self.simulated))
        return d


def predict_kernel(kernel: Kernel, hw: Hardware, peaks: str):
    """(predicted time, prediction dict or None, note) for a kernel on a hardware entry.

    A path the hardware has no math for is held against the memory roof only, not an error (a calibrated
    profile missing a peak is handled in ``roofline.predict``: the datasheet peak stands in, said).
    """
    try:
        p = predict(kernel.cost, hw, peaks)
        note = p.method + (" (kernel emulated)" if kernel.emulated else "")
        return p.time_s, p.to_dict(), note
    except UnsupportedPathError as e:
        t_mem, _, _ = roofline_time(0.0, kernel.cost.bytes, 1.0, hw.bandwidth_gbs(peaks))
        return float(t_mem), None, f"no native math path ({e}); held against the memory roof only"


def measure_kernel(kernel: Kernel, info: DeviceInfo, hw: Hardware, mode: str = "cold", peaks: str = "calibrated",
                   warmup_ms: float = 25.0, rep_ms: float = 100.0, with_telemetry: bool = True,
                   cuda_graph: bool = False, max_wall_s: float | None = None, timer=None,
                   warm: bool = False, model=None, ceiling: Hardware | None = None,
                   min_reps: int = 10) -> Measurement:
    """Time ``kernel`` and hold it against its prediction. ``timer`` replaces ``bench`` (a simulated device's
    synthesised timing); ``max_wall_s`` is the per-case budget (``BudgetExceeded`` when it cannot fit);
    ``model`` (``roofline.efficiency.EfficiencyModel``) gives the expected time beside the bound; ``ceiling``
    (``roofline_kernels.ceiling.ceiling_hardware``) prices what the kernel truly cannot beat."""
    snap = telemetry.snapshot(info.kind, busy_interval_s=0.05, info=info) if with_telemetry else {}
    region = RegionMonitor(info) if with_telemetry else None
    predicted, pred, note = predict_kernel(kernel, hw, peaks)
    memory_only = pred is None
    if pred is not None and not ceiling_is_physical(info, pred["compute_class"]):
        memory_only = True
        # a calibrated software speed is no ceiling (another kernel of the class may beat it): bytes are
        predicted = pred["t_memory_s"]
        note += (f"; the {pred['compute_class']} peak here is one software kernel's speed (no {pred['compute_class']}"
                 " units on this CPU), not a ceiling: held against the memory roof alone")
    cold_note = ""
    if timer is not None:  # synthesised: the region monitor still runs, over the device's (fake) telemetry
        if region is not None:
            region.start()
        timing = timer(kernel, hw, peaks, mode)
        if region is not None:
            region.stop()
    else:
        rotation, spanned = None, 0
        if mode == "cold":
            rotation, spanned, cold_note = cold_rotation(kernel, info)
        # a path that launches several kernels per call (torchao's tensor subclasses) is replayed from a CUDA graph:
        # timed per call with events it measures the host's dispatch of each launch, not the kernels
        graph = cuda_graph or (info.torch_device == "cuda" and kernel.launches > 1)
        args = dict(device=info.torch_device, mode=mode, warmup_ms=warmup_ms, rep_ms=rep_ms, rotation=rotation,
                    rotation_bytes=spanned, max_wall_s=max_wall_s, region=region, warm=warm, min_reps=min_reps,
                    warm_call_s=kernel.checked_call_s if warm else None)
        try:
            timing = bench(kernel.fn, cuda_graph=graph, **args)
        except BudgetExceeded:
            raise
        except Exception as e:  # noqa: BLE001 - a path CUDA graphs cannot capture: timed eagerly, and said so
            if not graph or cuda_graph:
                raise
            timing = bench(kernel.fn, cuda_graph=False, **args)
            cold_note = "; ".join(x for x in (cold_note, (
                f"LAUNCH-BOUND: {kernel.launches} launches per call, timed per call because CUDA graph capture failed "
                f"({type(e).__name__}: {str(e)[:120]}): the time includes their host dispatch")) if x)
    if region is not None:
        snap["region"] = region.result(timing.count)
    exp = expected_of(kernel, hw, peaks, pred, memory_only, model, mode)
    ceiling_s, ceiling_note = (predict_kernel(kernel, ceiling, "datasheet")[::2] if ceiling is not None
                               else (None, "no ceiling known here"))
    return Measurement(op=kernel.op, precision=kernel.precision, shape=dict(kernel.cost.shape), path=kernel.path,
                       emulated=kernel.emulated, hardware=hw.key, device_name=info.name, timing=timing,
                       flops=kernel.cost.flops, bytes=kernel.cost.bytes, peaks=peaks, predicted_time_s=predicted,
                       prediction=pred, prediction_note=note, telemetry=snap, cold_note=cold_note,
                       simulated=info.simulated, memory_roof_only=memory_only,
                       expected_time_s=exp.time_s(predicted), expected_efficiency=exp.efficiency,
                       expected_source=exp.source, expected_note=exp.note,
                       expected_uncertainty=exp.uncertainty, ceiling_time_s=ceiling_s,
                       ceiling_note=ceiling_note)


def expected_of(kernel: Kernel, hw: Hardware, peaks: str, pred: dict | None, memory_only: bool, model=None,
                mode: str = "cold"):
    """What this kernel is expected to reach of the roof it is held to (``roofline.efficiency``'s rule)."""
    from roofline.efficiency import NONE, Expected, expected_efficiency
    if kernel.emulated:  # the sweep leaves it out and ``efficiency.learn`` refuses it: say so, not "no model"
        return Expected(None, "none", f"an emulated kernel ({kernel.path}) is not modelled: the bound alone")
    if pred is None:
        return NONE
    return expected_efficiency(kernel.op, kernel.precision, kernel.cost.shape, hw, peaks, pred["bound"],
                               kernel.cost.weight_format, kernel.cost.act_format, model, memory_only, mode)
