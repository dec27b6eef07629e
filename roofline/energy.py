"""Energy of an operator or a model step: bytes and FLOPs at per-device energy costs, plus static power.

``E = bytes x e_dram + sum(flops x e_flop[compute class]) + static_w x time``

Assumptions:
1. Dynamic energy follows the work the roofline already counts: each kernel's compulsory DRAM bytes at
   pJ/byte, and its FLOPs at the pJ/FLOP of the class its math runs in (``predict.compute_path``). On-chip
   traffic (register file, shared memory, L2) is folded into pJ/FLOP.
2. Static power is what the board burns while the step runs, whatever it does: leakage, clocks, idle CPU,
   the rest of the board. On a Jetson energy is read on VDD_IN (the board's input), so ``static_w`` is the
   board's idle input power in that mode; NVML's counter covers the GPU board only.
3. Time is the roofline time unless a measured one is given: a slow kernel burns more static energy,
   never more dynamic energy.
4. The defaults are one set of dynamic costs per device: DVFS lowers the voltage with the clock and
   dynamic energy per operation falls roughly with its square, so a lower power mode's dynamic energy is
   over-predicted. A calibration per mode (``fit_energy``, from measured rails) has no such error.
5. Sources of the defaults (every one unverified for every device; prefer a calibration):
   - pJ/FLOP: Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm at
     0.9 V: the arithmetic alone (FP32 multiply 3.7 + add 0.9 pJ, FP16 1.1 + 0.4, INT8 multiply 0.2 with
     an INT32 add 0.1). Not scaled to newer processes (no sourced factor), operand delivery not counted
     (a 32-bit register-file read is 1 pJ in the same table).
   - DRAM pJ/byte: HBM and GDDR6X from Micron's ultra-bandwidth memory comparison (average device power
     6.0 pJ/bit HBM2E, 7.25 GDDR6X, 7.5 GDDR6; micron.com/products/ultra-bandwidth-solutions). LPDDR5 and
     LPDDR5X (Jetson Orin, GB10): no sourced pJ/bit was found, so the figure is an estimate with its range
     beside it, and every prediction on those devices prints the power that range spans
     (``EnergyCosts.dram_range_pj_per_byte``). The estimate: a 32 Gb LPDDR4 at 3.2 Gb/s/pin simulated at
     13-14 pJ/bit (DramDSE, in H. Ha's Stanford thesis, as tabulated by Dongyunkam/DRAM_info), less the 21%
     read power Samsung's 7.5 Gb/s LPDDR5 saves over LPDDR4X ("A 7.5 Gb/s/pin 8-Gb LPDDR5 SDRAM with
     various high-speed and low-power techniques", abstract): ~10.7 pJ/bit, 86 pJ/byte. The range spans the
     DRAM figures with a source here, HBM2E's 48 pJ/byte to the DDR3-class 160: the spread of what is known,
     not a bound on LPDDR5. Elsewhere (the host CPU, custom hardware) Horowitz 2014's 640 pJ per 32-bit
     DDR3-class access, which newer DRAM beats: an over-estimate.
   - static_w: no device's idle power in any mode has a source. For the Orin Nano module (p3767-0003) one
     published reading bounds it from below: VDD_IN 2.18 W at idle with a stripped custom nvpmodel config
     (NVIDIA developer forum thread 348662); a stock mode idles higher. Elsewhere: unknown, and the
     prediction says its energy is the dynamic part only.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import os
from dataclasses import dataclass, field

import numpy as np

from .hardware import Spec, base_key, get_hardware

PJ = 1e-12
HOROWITZ = "Horowitz, ISSCC 2014 (45 nm, 0.9 V)"
_ALU = "the arithmetic alone at 45 nm, not scaled to this process; operand delivery not counted"
_MICRON = ("Micron ultra-bandwidth solutions memory comparison (average device power per bit: GDDR6 7.5, GDDR6X 7.25, "
           "HBM2E 6.0 pJ/bit), micron.com/products/ultra-bandwidth-solutions")


def _flop(pj: float, how: str) -> Spec:
    return Spec(pj, HOROWITZ, f"{how}; {_ALU}", derived=True, unverified=True)


DEFAULT_PJ_PER_FLOP: dict[str, Spec] = {
    "fp32": _flop(2.3, "FMA = FP32 multiply 3.7 + add 0.9 pJ per 2 FLOPs"),
    "tf32": _flop(1.0, "FP16-width multiply 1.1 + FP32 add 0.9 pJ per 2 FLOPs (TF32 keeps FP16's mantissa)"),
    "fp16": _flop(0.75, "FMA = FP16 multiply 1.1 + add 0.4 pJ per 2 FLOPs"),
    "bf16": _flop(0.75, "as FP16 (no BF16 figure; its narrower multiplier costs less: an over-estimate)"),
    "fp8": _flop(0.75, "as FP16 (no FP8 figure: an over-estimate)"),
    "fp4": _flop(0.75, "as FP16 (no FP4 figure: an over-estimate)"),
    "int8": _flop(0.15, "INT8 multiply 0.2 + INT32 accumulate 0.1 pJ per 2 ops"),
    "int4": _flop(0.15, "as INT8 (no INT4 figure: an over-estimate)"),
}
DDR3_PJ_PER_BYTE = Spec(160.0, HOROWITZ, "640 pJ per 32-bit DDR3-class access; no figure for this device's DRAM "
                        "(LPDDR5 moves a byte for less: an over-estimate)", derived=True, unverified=True)
_HBM = Spec(48.0, _MICRON, "HBM2E 6.0 pJ/bit; this device's HBM generation may differ", derived=True, unverified=True)
_GDDR6X = Spec(58.0, _MICRON, "GDDR6X 7.25 pJ/bit", derived=True, unverified=True)
_LPDDR5_SOURCE = ("estimate: LPDDR4 13-14 pJ/bit simulated (DramDSE, H. Ha's Stanford thesis, as tabulated by "
                  "Dongyunkam/DRAM_info) less the 21% read power Samsung's 7.5 Gb/s LPDDR5 saves over LPDDR4X (JSSC "
                  "paper abstract); no sourced LPDDR5/LPDDR5X pJ/bit found")
_LPDDR5 = Spec(86.0, _LPDDR5_SOURCE, "LPDDR5 ~10.7 pJ/bit, an estimate: range 48-160 pJ/byte (HBM2E 6.0 pJ/bit to "
               "DDR3-class 20 pJ/bit, the DRAM figures with a source)", derived=True, unverified=True)
_LPDDR5X = dataclasses.replace(_LPDDR5, note="LPDDR5's estimate standing in for LPDDR5X (vendors claim ~20% less, "
                               "inside the range): range 48-160 pJ/byte")
LPDDR_RANGE_PJ_PER_BYTE = (48.0, 160.0)  # HBM2E (Micron) .. DDR3-class (Horowitz): the spread of the sourced figures
_JETSONS = ("jetson_orin_nano", "jetson_orin_nano_super", "jetson_agx_orin", "jetson_orin_nx_16gb",
            "jetson_orin_nx_8gb", "jetson_orin_nx_16gb_super", "jetson_orin_nx_8gb_super")
DRAM_PJ_PER_BYTE: dict[str, Spec] = {
    **{k: _HBM for k in ("a100", "h100_sxm", "h100_pcie", "h100_nvl", "h200", "b200")},
    "rtx4090": _GDDR6X,
    "rtx5090": dataclasses.replace(_GDDR6X, note="GDDR6X's 7.25 pJ/bit standing in for GDDR7"),
    **{k: _LPDDR5 for k in _JETSONS},
    "gb10": _LPDDR5X,
}
# a DRAM figure that is an estimate carries the range it may lie in; every prediction prints the power it spans
DRAM_RANGE_PJ_PER_BYTE: dict[str, tuple[float, float]] = {k: LPDDR_RANGE_PJ_PER_BYTE for k in (*_JETSONS, "gb10")}
_ORIN_NANO_IDLE = Spec(2.18, "NVIDIA developer forum thread 348662 (Orin Nano 8GB, JetPack 6.2, VDD_IN at idle)",
                       "a LOWER BOUND: a stripped custom nvpmodel config (2 CPU cores, low clocks, PCIe and display "
                       "off); every stock mode idles higher", unverified=True)
STATIC_W: dict[str, Spec] = {
    "jetson_orin_nano": _ORIN_NANO_IDLE,
    "jetson_orin_nano_super": dataclasses.replace(_ORIN_NANO_IDLE, derived=True,
                                                  note=_ORIN_NANO_IDLE.note + "; the Super runs the same module"),
}


@dataclass(frozen=True)
class EnergyCosts:
    """The energy costs of one device (in one power mode), each with its source and flags."""
    hardware: str
    dram_pj_per_byte: Spec | None
    pj_per_flop: dict
    static_w: Spec | None
    basis: str  # "defaults (sourced, unverified)" or "calibrated: ..."
    mode: str | None = None
    dram_range_pj_per_byte: tuple | None = None  # (low, high) where the DRAM figure is an estimate

    def to_dict(self) -> dict:
        def spec(s):
            return None if s is None else {"value": s.value, "source": s.source, "note": s.note, "flags": s.flags}
        return {"hardware": self.hardware, "mode": self.mode, "basis": self.basis,
                "dram_pj_per_byte": spec(self.dram_pj_per_byte), "static_w": spec(self.static_w),
                "dram_pj_per_byte_range": None if self.dram_range_pj_per_byte is None else list(
                    self.dram_range_pj_per_byte),
                "pj_per_flop": {c: spec(s) for c, s in self.pj_per_flop.items()}}


def default_costs(hardware) -> EnergyCosts:
    hw = get_hardware(hardware)
    key = hw.base_key
    return EnergyCosts(key, DRAM_PJ_PER_BYTE.get(key, DDR3_PJ_PER_BYTE), dict(DEFAULT_PJ_PER_FLOP),
                       STATIC_W.get(key), "defaults (sourced, unverified for this device)", hw.power_mode,
                       DRAM_RANGE_PJ_PER_BYTE.get(key))


def energy_costs(hardware, profile: dict | None = None) -> EnergyCosts:
    """This entry's costs: its power mode's calibration from ``profile`` ({mode or None: EnergyCosts}) where
    there is one, else the sourced defaults."""
    hw = get_hardware(hardware)
    if profile:
        found = profile.get(hw.power_mode)
        if found is not None and found.hardware == hw.base_key:
            return found
    return default_costs(hw)


@dataclass(frozen=True)
class EnergyPrediction:
    energy_j: float  # dynamic + static (dynamic only where static power is unknown: see notes)
    dram_j: float
    compute_j: float
    static_j: float | None
    time_s: float
    tokens: float | None = None
    budget_w: float | None = None
    basis: str = ""
    notes: tuple = field(default=())
    energy_range_j: tuple | None = None  # (low, high) over the DRAM figure's range, where it is an estimate

    @property
    def power_w(self) -> float:
        return self.energy_j / self.time_s

    @property
    def power_range_w(self) -> tuple | None:
        return None if self.energy_range_j is None else tuple(e / self.time_s for e in self.energy_range_j)

    @property
    def tokens_per_j(self) -> float | None:
        return None if self.tokens is None else self.tokens / self.energy_j

    @property
    def tokens_per_s(self) -> float | None:
        return None if self.tokens is None else self.tokens / self.time_s

    @property
    def over_budget(self) -> bool:  # a power priced to its budget (schedule's throttle) sits on it, not over
        return self.budget_w is not None and self.power_w > self.budget_w * (1 + 1e-9)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(power_w=self.power_w, tokens_per_j=self.tokens_per_j, tokens_per_s=self.tokens_per_s,
                 over_budget=self.over_budget, notes=list(self.notes), power_range_w=self.power_range_w,
                 energy_range_j=None if self.energy_range_j is None else list(self.energy_range_j))
        return d


def _kernels(prediction):
    flat = getattr(prediction, "flat", None)
    return list(flat()) if flat is not None else [(prediction, 1)]


def predict_energy(prediction, costs: EnergyCosts, tokens: float | None = None, time_s: float | None = None,
                   budget_w: float | None = None) -> EnergyPrediction:
    """Energy of a ``Prediction`` or ``CompositePrediction`` at its roofline time (or ``time_s``, measured)."""
    t = prediction.time_s if time_s is None else time_s
    if not (t > 0 and np.isfinite(t)):
        raise ValueError(f"time_s={t!r} must be a positive number")
    notes = []
    e_byte = costs.dram_pj_per_byte.value * PJ if costs.dram_pj_per_byte else 0.0
    if costs.dram_pj_per_byte is None:
        notes.append(f"no DRAM pJ/byte for {costs.hardware}: DRAM energy not counted")
    dram = compute = 0.0
    missing = set()
    for p, mult in _kernels(prediction):
        dram += mult * p.bytes * e_byte
        spec = costs.pj_per_flop.get(p.compute_class)
        if spec is None:
            missing.add(p.compute_class)
        else:
            compute += mult * p.flops * spec.value * PJ
    if missing:
        notes.append(f"no pJ/FLOP for {', '.join(sorted(missing))}: those FLOPs not counted")
    static = costs.static_w.value * t if costs.static_w else None
    if costs.static_w is None:
        notes.append(f"static power unknown for {costs.hardware}: energy is the dynamic part only (a lower "
                     "bound); calibrate from measured rails")
    elif "LOWER BOUND" in costs.static_w.note:
        notes.append(f"static power {costs.static_w.value:g} W is a lower bound ({costs.static_w.source})")
    if any(s is not None and s.unverified for s in (costs.dram_pj_per_byte, costs.static_w,
                                                    *costs.pj_per_flop.values())):
        notes.append(f"{costs.basis}: order-of-magnitude costs, not this board's")
    energy = dram + compute + (static or 0.0)
    span = None
    if costs.dram_range_pj_per_byte is not None and costs.dram_pj_per_byte is not None:
        lo, hi = costs.dram_range_pj_per_byte
        per = dram / costs.dram_pj_per_byte.value if costs.dram_pj_per_byte.value else 0.0
        span = (energy - dram + per * lo, energy - dram + per * hi)
        notes.append(f"DRAM {costs.dram_pj_per_byte.value:g} pJ/byte is an estimate, range {lo:g}-{hi:g}: "
                     f"{span[0] / t:.3g}-{span[1] / t:.3g} W, {energy / t:.3g} W at the estimate")
    return EnergyPrediction(energy, dram, compute, static, float(t), tokens, budget_w, costs.basis, tuple(notes), span)


# --- calibration from measured energy --------------------------------------------------------------

@dataclass(frozen=True)
class EnergySample:
    """One measured case: its energy (rail or counter) over a call, the call's time, and its work."""
    energy_j: float
    time_s: float
    bytes: float
    flops: float
    compute_class: str
    name: str = ""


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares by trying every subset of columns (a handful of unknowns: exact)."""
    best, best_res = np.zeros(a.shape[1]), float(np.sum(b ** 2))
    for r in range(1, a.shape[1] + 1):
        for cols in itertools.combinations(range(a.shape[1]), r):
            x, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
            if np.all(x >= 0):
                res = float(np.sum((a[:, cols] @ x - b) ** 2))
                if res < best_res:
                    best, best_res = np.zeros(a.shape[1]), res
                    best[list(cols)] = x
    return best


def fit_energy(samples: list[EnergySample], defaults: EnergyCosts, idle_w: float | None = None,
               source: str = "measured") -> EnergyCosts:
    """Costs fitted to measured energy: static power from the mode's idle draw where it was read (else fitted
    as one more unknown), pJ/byte and pJ/FLOP of each class seen by non-negative least squares on each
    sample's relative error. A class no sample ran keeps its default."""
    samples = [s for s in samples if s.energy_j > 0 and s.time_s > 0]
    if not samples:
        raise ValueError("no measured energy to fit: every sample lacks a positive energy_j and time_s")
    classes = sorted({s.compute_class for s in samples if s.flops > 0})
    names = ["dram"] + classes + ([] if idle_w is not None else ["static"])
    rows, rhs = [], []
    for s in samples:
        row = [s.bytes * PJ] + [s.flops * PJ if s.compute_class == c else 0.0 for c in classes]
        row += [] if idle_w is not None else [s.time_s]
        rows.append([v / s.energy_j for v in row])
        rhs.append((s.energy_j - (idle_w or 0.0) * s.time_s) / s.energy_j)
    a, b = np.array(rows), np.array(rhs)
    scale = np.where(np.abs(a).max(axis=0) > 0, np.abs(a).max(axis=0), 1.0)
    x = _nnls(a / scale, b) / scale
    residual = float(np.sqrt(np.mean((a @ x - b) ** 2)))
    how = f"{source}; {len(samples)} cases, rms relative error {residual:.1%}"
    fitted = dict(zip(names, x))
    static = Spec(idle_w, source, "idle draw read after the mode settled") if idle_w is not None else \
        Spec(float(fitted["static"]), source, f"fitted: {how}", derived=True)
    flops = dict(defaults.pj_per_flop)
    flops.update({c: Spec(float(fitted[c]), source, f"fitted: {how}", derived=True) for c in classes})
    return EnergyCosts(defaults.hardware, Spec(float(fitted["dram"]), source, f"fitted: {how}", derived=True), flops,
                       static, f"calibrated: {how}", defaults.mode)


def _spec_from(d: dict | None, where: str) -> Spec | None:
    if d is None:
        return None
    try:
        value = float(d["value"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"energy profile {where}: needs a numeric 'value'") from None
    if not (value >= 0 and np.isfinite(value)):
        raise ValueError(f"energy profile {where}: value {value!r} must be a non-negative number")
    flags = str(d.get("flags", ""))
    return Spec(value, str(d.get("source", "energy profile")), str(d.get("note", "")), "derived" in flags,
                "unverified" in flags)


def costs_from_dict(d: dict, where: str = "<dict>") -> EnergyCosts:
    try:
        span = d.get("dram_pj_per_byte_range")
        return EnergyCosts(str(d["hardware"]), _spec_from(d.get("dram_pj_per_byte"), f"{where} dram_pj_per_byte"),
                           {str(c): _spec_from(s, f"{where} pj_per_flop.{c}") for c, s in d["pj_per_flop"].items()},
                           _spec_from(d.get("static_w"), f"{where} static_w"), str(d.get("basis", "energy profile")),
                           d.get("mode"), None if span is None else (float(span[0]), float(span[1])))
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"energy profile {where} is malformed ({e!r}); each mode needs 'hardware' and "
                         "'pj_per_flop' {class: {value, source}}") from None


def load_energy_profile(path: str | os.PathLike) -> dict:
    """{mode name or None: EnergyCosts} from a profile the power-mode sweep wrote (``"modes": {mode: costs}``)."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read energy profile {os.fspath(path)!r}: {e}") from None
    modes = data.get("modes") if isinstance(data, dict) else None
    if not isinstance(modes, dict) or not modes:
        raise ValueError(f"energy profile {os.fspath(path)!r} has no 'modes' {{mode: costs}}")
    return {(None if m in ("", "none") else m): costs_from_dict(c, f"{os.fspath(path)} mode {m}")
            for m, c in modes.items()}
