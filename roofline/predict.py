"""Roofline predictions: ``time = max(bytes / bandwidth, flops / peak)``.

1. The compute peak is that of the precision the math actually runs in (``compute_path``):
   - both operands in one format the hardware runs natively (FP8 e4m3/e5m2 may mix) -> its own peak;
   - two different OCP MX formats (MXFP6 weights x MXFP8 activations), both native -> the slower
     operand's peak: the wider one's class. Assumption, from the PTX ISA's block-scaled MMA kinds (as
     listed in LLVM's NVVMOps.td, llvm/llvm-project#170566): ``kind::mxf8f6f4`` takes A and B independently
     from E2M1/E2M3/E3M2/E4M3/E5M2 with E8M0 scales per 32 at the FP8 rate, and only ``kind::mxf4``
     (E2M1 x E2M1) runs at the FP4 rate, so MXFP4 x MXFP8 is priced at FP8. The reference's matrix
     (shared/reference/hardware.md) makes MXFP8/MXFP6 native on Blackwell only (sm_100, sm_120/121);
   - weight-only: low-bit weights with 16/32-bit float activations -> the activation format's peak
     (the kernel dequantises the weights; only the memory traffic shrinks);
   - anything else has no path on that hardware and raises ``UnsupportedPathError``: it is never
     silently priced at some other peak.
2. Elementwise ops run on vector units, priced at the FP32 peak.
3. A launch overhead, when given, is reported beside the roofline time, never inside it.
4. A composite (layer, model step) takes the sum of its kernels' roofline times.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .formats import MX_BLOCK_SCALE, get_format
from .hardware import BYTES_PER_GB, Hardware, get_hardware
from .moe import grouped_launches
from .operators import Composite, OpCost, flat_parts

FLOPS_PER_TFLOP = 1e12


class UnsupportedPathError(ValueError):
    """A (weight format, activation format) pair that has no math path on a piece of hardware."""


@dataclass(frozen=True)
class ComputePath:
    compute_class: str
    method: str


def compute_path(hardware, weight, act) -> ComputePath:
    hw = get_hardware(hardware)
    a = get_format(act)
    if weight is None:  # elementwise
        return ComputePath("fp32", "vector units (elementwise)")
    w = get_format(weight)
    same_family = w.compute_class is not None and w.compute_class == a.compute_class and (
        w.name == a.name or w.kind == a.kind == "float")
    if same_family and hw.supports_native(w) and hw.supports_native(a):
        return ComputePath(w.compute_class, f"native {w.compute_class}" + (
            "" if w.name == a.name else f" ({w.name} x {a.name})"))
    if w.name != a.name and w.block_scale == a.block_scale == MX_BLOCK_SCALE:
        not_native = [f.name for f in (w, a) if not hw.supports_native(f)]
        if not not_native:
            slower = max((w, a), key=lambda f: f.bits_per_element)
            return ComputePath(slower.compute_class, f"native mixed MX {w.name} x {a.name} (block-scaled f8f6f4 MMA "
                                                     f"at the {slower.compute_class} rate, the slower operand's)")
        raise UnsupportedPathError(
            f"mixed MX {w.name} weights x {a.name} activations run natively only where both formats are native "
            f"(Blackwell: sm_100, sm_120/121); {hw.key} ({hw.arch}) has no native {' or '.join(not_native)} "
            f"(native: {', '.join(sorted(hw.native))})")
    if a.is_16bit_or_wider_float and hw.supports_native(a) and w.bits_per_element < a.bits_per_element:
        return ComputePath(a.compute_class, f"weight-only: {w.name} weights dequantised to {a.name}")
    natives = ", ".join(sorted(hw.native))
    instead = "16-bit" if {"fp16", "bf16"} & hw.native else "fp32"
    scales = (f" ({w.name} scales are {w.block_scale or 'per tensor'}, {a.name} scales {a.block_scale or 'per tensor'}: "
              "no block-scaled MMA takes both)" if (w.block_scale or a.block_scale) and w.block_scale != a.block_scale
              else "")
    raise UnsupportedPathError(
        f"{w.name} weights x {a.name} activations have no math path on {hw.key} ({hw.arch}; native: {natives}){scales}; "
        f"what would run instead: {w.name} weight-only with {instead} activations, or a native format")


def roofline_time(flops, nbytes, peak_tflops, bandwidth_gbs):
    """The one roofline formula; returns (t_memory_s, t_compute_s, time_s). Scalars or numpy arrays."""
    t_memory = nbytes / (bandwidth_gbs * BYTES_PER_GB)
    t_compute = flops / (peak_tflops * FLOPS_PER_TFLOP)
    return t_memory, t_compute, np.maximum(t_memory, t_compute)


def critical_ai(peak_tflops, bandwidth_gbs):
    """The ridge point (FLOP/byte) where the compute and memory roofs meet."""
    return peak_tflops * FLOPS_PER_TFLOP / (bandwidth_gbs * BYTES_PER_GB)


def bound_of(t_memory, t_compute):
    return np.where(t_compute >= t_memory, "compute", "memory")


@dataclass(frozen=True)
class Prediction:
    op: str
    name: str
    hardware: str
    precision: str
    weight_format: str | None
    act_format: str
    out_format: str
    compute_class: str
    method: str
    peaks: str  # "datasheet" or "calibrated"
    peak_source: str
    flops: float
    bytes: float
    ai: float
    critical_ai: float
    peak_tflops: float
    bandwidth_gbs: float
    t_memory_s: float
    t_compute_s: float
    time_s: float
    bound: str
    attainable_tflops: float
    shape: dict = field(default_factory=dict)
    launch_overhead_s: float = 0.0
    launches: float = 1.0  # device kernel launches of this operator (``moe.grouped_launches``): what overhead is per

    @property
    def time_with_overhead_s(self) -> float:
        return self.time_s + self.launch_overhead_s

    def to_dict(self) -> dict:
        d = asdict(self)
        d["time_with_overhead_s"] = self.time_with_overhead_s
        return d


def precision_label(w, a) -> str:
    return a if w in (None, a) else f"{w}/{a}"


def predict_op(cost: OpCost, hardware, peaks: str = "datasheet", launch_overhead_s: float = 0.0) -> Prediction:
    hw = get_hardware(hardware)
    path = compute_path(hw, cost.weight_format, cost.act_format)
    if cost.compute_class is not None:  # the kernel's math runs on other units than the formats' (OpCost)
        path = ComputePath(cost.compute_class, f"{cost.compute_class} units: {cost.compute_note or 'the kernel'}")
    bw = hw.bandwidth_gbs(peaks)
    cls = path.compute_class
    peak, source = hw.peak(cls, peaks)  # a class the profile never measured: its datasheet peak, said so
    t_mem, t_comp, t = roofline_time(cost.flops, cost.bytes, peak, bw)
    launches = grouped_launches(cost, hw.arch)
    return Prediction(
        op=cost.op, name=cost.name, hardware=hw.key, precision=precision_label(cost.weight_format, cost.act_format),
        weight_format=cost.weight_format, act_format=cost.act_format, out_format=cost.out_format,
        compute_class=path.compute_class, method=path.method, peaks=peaks, peak_source=source,
        flops=cost.flops, bytes=cost.bytes, ai=cost.ai, critical_ai=critical_ai(peak, bw),
        peak_tflops=peak, bandwidth_gbs=bw, t_memory_s=float(t_mem), t_compute_s=float(t_comp), time_s=float(t),
        bound=str(bound_of(t_mem, t_comp)), attainable_tflops=cost.flops / float(t) / FLOPS_PER_TFLOP,
        shape=dict(cost.shape), launch_overhead_s=float(launch_overhead_s) * launches, launches=launches)


@dataclass(frozen=True)
class CompositePrediction:
    name: str
    hardware: str
    peaks: str
    parts: tuple  # (Prediction | CompositePrediction, ...)
    repeat: int = 1

    @property
    def kernels(self) -> int:
        """Operators, each counted once (a grouped GEMM is one, however many launches it takes)."""
        return self.repeat * sum(getattr(p, "kernels", 1) for p in self.parts)

    @property
    def launches(self) -> float:
        """Device kernel launches, what ``launch_overhead_s`` is charged per: a grouped GEMM's experts one after
        another take one each (a routing's expected number of experts touched, so possibly fractional)."""
        return self._sum("launches")

    def _sum(self, attr):
        return self.repeat * sum(getattr(p, attr) for p in self.parts)

    flops = property(lambda self: self._sum("flops"))
    bytes = property(lambda self: self._sum("bytes"))
    time_s = property(lambda self: self._sum("time_s"))
    t_memory_s = property(lambda self: self._sum("t_memory_s"))
    t_compute_s = property(lambda self: self._sum("t_compute_s"))
    launch_overhead_s = property(lambda self: self._sum("launch_overhead_s"))

    @property
    def ai(self) -> float:
        return self.flops / self.bytes

    @property
    def dominant(self) -> Prediction:
        """The kernel doing the most FLOPs: its precision and critical AI stand for the composite's."""
        return max((p for p, mult in self.flat()), key=lambda p: p.flops)

    @property
    def time_with_overhead_s(self) -> float:
        return self.time_s + self.launch_overhead_s

    @property
    def memory_bound_time_s(self) -> float:
        """Time spent in kernels whose roof is memory."""
        return self.repeat * sum(p.memory_bound_time_s if isinstance(p, CompositePrediction)
                                 else (p.time_s if p.bound == "memory" else 0.0) for p in self.parts)

    @property
    def bound(self) -> str:
        return "memory" if self.memory_bound_time_s >= self.time_s / 2 else "compute"

    def flat(self, scale: int = 1):
        """(prediction, multiplicity) for every kernel, repeats multiplied through."""
        return flat_parts(self, scale)

    def to_dict(self) -> dict:
        return {"name": self.name, "hardware": self.hardware, "peaks": self.peaks, "flops": self.flops,
                "bytes": self.bytes, "ai": self.ai, "precision": self.dominant.precision,
                "critical_ai": self.dominant.critical_ai, "time_s": self.time_s, "t_memory_s": self.t_memory_s,
                "t_compute_s": self.t_compute_s, "bound": self.bound, "kernels": self.kernels,
                "launches": self.launches,
                "launch_overhead_s": self.launch_overhead_s, "time_with_overhead_s": self.time_with_overhead_s,
                "repeat": self.repeat, "parts": [p.to_dict() for p in self.parts]}


def predict(cost, hardware, peaks: str = "datasheet", launch_overhead_s: float = 0.0):
    """Predict one kernel (``OpCost``) or a composite (layer, model step)."""
    hw = get_hardware(hardware)
    if isinstance(cost, Composite):
        return CompositePrediction(cost.name, hw.key, peaks,
                                   tuple(predict(p, hw, peaks, launch_overhead_s) for p in cost.parts), cost.repeat)
    if not isinstance(cost, OpCost):
        raise TypeError(f"predict() takes an OpCost or Composite, got {type(cost).__name__}")
    return predict_op(cost, hw, peaks, launch_overhead_s)
