"""A measured number with its context: device, clocks, cold/hot, spread, and the prediction it faces.

``measure_kernel`` times a ``Kernel``, prices the same ``OpCost`` with ``roofline.predict`` on the
hardware entry in use (datasheet or calibrated roof), and attaches a telemetry snapshot.
Efficiency is ``predicted_time / measured_median``: 1.0 is the roof; above 1 means the measurement
beat the roof, which is flagged (``beats_roof``) as a bug to explain, never celebrated.
An emulated kernel (FP8 on a CPU) has no compute roof: it is held against the memory roof only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from roofline import Hardware, get_hardware, predict
from roofline.predict import UnsupportedPathError, roofline_time

from . import telemetry
from .device import DeviceInfo, host_cpu_hardware
from .ops import Kernel
from .timer import Timing, bench

BEATS_ROOF_EPSILON = 0.02  # timer resolution and clock jitter; more than this is a bug to explain


def hardware_for(info: DeviceInfo, calibration=None) -> Hardware:
    """The registry entry to predict against: the host CPU gets derived peaks; a profile rides along."""
    hw = host_cpu_hardware(info.cpu) if info.hardware_key == "cpu" else get_hardware(info.hardware_key)
    return hw.with_calibration(calibration) if calibration is not None else hw


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
    predicted_time_s: float  # the full roof, or the memory roof alone for a path with no native math
    prediction: dict | None
    prediction_note: str
    telemetry: dict = field(default_factory=dict)

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
        return self.efficiency > 1 + BEATS_ROOF_EPSILON

    @property
    def contention(self) -> list[str]:
        return list(self.telemetry.get("contention", []))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(median_s=self.timing.median_s, p20_s=self.timing.p20_s, p80_s=self.timing.p80_s,
                 count=self.timing.count, mode=self.timing.mode, achieved_gbs=self.achieved_gbs,
                 achieved_tflops=self.achieved_tflops, efficiency=self.efficiency, beats_roof=self.beats_roof,
                 contention=self.contention)
        return d


def predict_kernel(kernel: Kernel, hw: Hardware, peaks: str):
    """(predicted time, prediction dict or None, note) for a kernel on a hardware entry."""
    try:
        p = predict(kernel.cost, hw, peaks)
        note = p.method + (" (kernel emulated)" if kernel.emulated else "")
        return p.time_s, p.to_dict(), note
    except UnsupportedPathError as e:
        t_mem, _, _ = roofline_time(0.0, kernel.cost.bytes, 1.0, hw.bandwidth_gbs(peaks))
        return float(t_mem), None, f"no native math path ({e}); held against the memory roof only"


def measure_kernel(kernel: Kernel, info: DeviceInfo, hw: Hardware, mode: str = "cold", peaks: str = "calibrated",
                   warmup_ms: float = 25.0, rep_ms: float = 100.0, with_telemetry: bool = True,
                   cuda_graph: bool = False) -> Measurement:
    snap = telemetry.snapshot(info.kind, busy_interval_s=0.05) if with_telemetry else {}
    if info.kind == "cuda" and with_telemetry:
        with telemetry.PowerSampler() as sampler:
            timing = bench(kernel.fn, device=kernel.device, mode=mode, warmup_ms=warmup_ms, rep_ms=rep_ms,
                           flush_bytes=info.flush_bytes, cuda_graph=cuda_graph)
        snap["power"] = sampler.result(timing.count)
    else:
        timing = bench(kernel.fn, device=kernel.device, mode=mode, warmup_ms=warmup_ms, rep_ms=rep_ms,
                       flush_bytes=info.flush_bytes, cuda_graph=cuda_graph)
    predicted, pred, note = predict_kernel(kernel, hw, peaks)
    return Measurement(op=kernel.op, precision=kernel.precision, shape=dict(kernel.cost.shape), path=kernel.path,
                       emulated=kernel.emulated, hardware=hw.key, device_name=info.name, timing=timing,
                       flops=kernel.cost.flops, bytes=kernel.cost.bytes, peaks=peaks, predicted_time_s=predicted,
                       prediction=pred, prediction_note=note, telemetry=snap)
