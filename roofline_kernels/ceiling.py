"""The ceilings the physics check holds a measurement to: numbers that truly bound it.

1. A GPU: its datasheet entry (scaled to a Jetson's power mode by ``measure.hardware_for``).
2. A CPU: compute ceilings derived from the ISA and clocks (``roofline.cpu_ceiling``, derivation in each
   Spec's note) and, for memory (no datasheet exists), the best bandwidth this device has shown across its
   history, counting the bytes each stream kernel really moves (write-allocate included: a fp32 GEMV read 25.7
   GB/s where the best STREAM-counted look was 22.0): every calibration offers its DRAM look (>= 1 GiB) and a
   look over the span cold cases rotate through (2x the caches, where a replacement policy may keep a share cached: a healthy int8 GEMV read its
   112 MiB rotation 4% faster than the best 1 GiB look), the ceiling only rises (monotone), and a case that
   beats it reads its own cold span again on the spot before it fails.
   One calibration is never a ceiling: measured in seconds on a shared host, it drifts 34-60 GB/s between
   two calibrations minutes apart, and a healthy kernel "beat" a compute peak calibrated while the host ran
   slow at 172%. Calibrated roofs stay what efficiency and expected time are measured against.

The DRAM history lives in the profile store, keyed by what bounds bandwidth (the device, its CPU model and
thread count), not by software versions: a torch upgrade does not make memory faster. Written atomically.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
from pathlib import Path

from roofline import Hardware, Spec
from roofline.atomic import locked, write_json_atomic
from roofline.formats import FORMATS

from .device import DeviceInfo, cpu_ceilings_of

DRAM_LOOKS_KEPT = 50
DRAM_SOURCE = "best cold-read bandwidth this device has shown (roofline_kernels/ceiling.py)"


def dram_history_path(info: DeviceInfo, store: str | os.PathLike) -> Path:
    ident = json.dumps({"hardware": info.hardware_key, "cpu": info.cpu.model, "threads": info.cpu.threads,
                        "name": info.name}, sort_keys=True)
    return Path(store) / f"dram-ceiling-{info.hardware_key}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}.json"


def load_dram_history(info: DeviceInfo, store) -> dict:
    try:
        data = json.loads(dram_history_path(info, store).read_text())
        return {"best_gbs": float(data["best_gbs"]), "best_when": str(data.get("best_when", "")),
                "best_how": str(data.get("best_how", "")), "looks": list(data.get("looks", [])),
                "quiet_looks": int(data.get("quiet_looks", 0))}
    except (OSError, ValueError, KeyError, TypeError):
        return {"best_gbs": 0.0, "best_when": "", "best_how": "", "looks": [], "quiet_looks": 0}


def offer_dram(info: DeviceInfo, store, gbs: float, how: str, contention: bool = False) -> dict:
    """Record one DRAM look; the ceiling rises when the look beats it. Returns the history after the look.
    A look under contention counts for the value (a neighbour only lowers a look) but does not settle it."""
    if not (gbs > 0 and gbs < float("inf")):
        raise ValueError(f"a DRAM look must be a positive number of GB/s; got {gbs!r}")
    with locked(dram_history_path(info, store)):  # a look another session adds meanwhile is kept
        hist = load_dram_history(info, store)
        when = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        hist["looks"] = (hist["looks"] + [{"gbs": gbs, "when": when, "how": how,
                                           "contention": contention}])[-DRAM_LOOKS_KEPT:]
        hist["quiet_looks"] += 0 if contention else 1
        if gbs > hist["best_gbs"]:
            hist.update(best_gbs=gbs, best_when=when, best_how=how)
        write_json_atomic(dram_history_path(info, store), hist)
    return hist


def remeasure_span(info: DeviceInfo, rotation_bytes: int | None) -> int | None:
    """The span a case that beat the DRAM ceiling is re-read over: its own cold span, or None where that fell short
    of the full target (``measure.cold_span_bytes``): then no re-read raises the ceiling. A rotation memory kept
    short is partly cached, and a look over it read cache speed (here 16.5 MiB: 223 GB/s against DRAM's 43-57) and
    raised the ceiling, which only ever rises; a look over the full target would not fit the memory that kept it
    short."""
    from .measure import cold_span_bytes
    return int(rotation_bytes) if rotation_bytes and rotation_bytes >= cold_span_bytes(info) else None


def dram_settled(info: DeviceInfo, store) -> bool:
    """Whether the best DRAM shown is a ceiling yet: at least one look was taken on a quiet machine. Until then
    it may be a neighbour's figure (seen: a first calibration under load at 13.8 GB/s, a healthy int8 GEMV at 18.5,
    the next quiet calibration at 24.1), so physics against it is reported, not enforced."""
    return load_dram_history(info, store)["quiet_looks"] > 0


def ceiling_hardware(info: DeviceInfo, hw: Hardware, store=None) -> Hardware | None:
    """The entry whose 'datasheet' prediction is the physics ceiling: the registry's on a GPU; on a CPU every
    compute class at its ISA-derived ceiling beside the best DRAM shown (None before any DRAM look)."""
    if info.kind != "cpu":
        return hw if hw.bandwidth is not None else None
    hist = load_dram_history(info, store) if store is not None else {"best_gbs": 0.0}
    ceilings = cpu_ceilings_of(info.cpu, _threads())
    if not hist["best_gbs"] or not ceilings:
        return None
    n = len(hist.get("looks", []))
    bandwidth = Spec(hist["best_gbs"], DRAM_SOURCE, f"best of {n} look(s), {hist['best_when']}: {hist['best_how']}",
                     derived=True)
    peaks = {c.compute_class: Spec(c.tflops, "ISA ceiling (roofline/cpu_ceiling.py)", c.how, derived=True)
             for c in ceilings.values()}
    # every format whose compute class has a ceiling has a bound, native units or not
    native = frozenset(name for name, f in FORMATS.items() if f.compute_class in peaks)
    return dataclasses.replace(hw, bandwidth=bandwidth, peaks=peaks, native=native, calibration=None,
                               source="ceilings: ISA-derived compute, best DRAM shown")


def _threads() -> int:
    import torch
    return torch.get_num_threads()
