"""Empirical roofline (after LBNL's ERT and mamf-finder): the ceilings this device really reaches.

1. Bandwidth: read (sum, amax), copy and triad kernels over working sets from inside L1 to well
   beyond the last-level cache, hot (the working set decides which level serves it). Bytes
   counted: read N, copy 2N, triad 3N (write-allocate traffic not counted, as STREAM does). The
   DRAM ceiling is the best kernel's median over working sets >= 8x the LLC: contention from other
   tenants only ever slows a kernel, and torch's stream kernels differ by up to 30% on the same data
   (seen here: sum 36, amax 48 GB/s), so the best observed is the estimate of the ceiling, as in
   ERT. Per-cache-level figures come from working sets at half of each level.
2. Compute: per precision, the best of a sweep of large GEMMs built by ``kernels.ops`` (so FLOPs come
   from ``roofline``); emulated paths are skipped (their speed is not a ceiling of the hardware).
3. A roof measured while something else loads the machine is a wrong roof (seen: a profile taken
   beside another job put fp32 at half its peak, and every later case "beat" it). So calibration
   waits for a quiet machine, takes each peak as the best of two passes, records any contention
   seen before or after it, and a cached profile that recorded contention is measured again.
4. The profile (JSON) is what ``roofline`` loads beside the datasheet peaks; it is cached per device
   fingerprint so a test session calibrates once, and written atomically.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

from roofline import Calibration, get_format
from roofline.atomic import write_json_atomic

from . import telemetry
from .device import DeviceInfo
from .ops import UnsupportedKernel, make_gemm
from .timer import bench

# arrays each kernel touches once (read: a; copy: a -> b; triad: b, c -> a): bytes = arrays x n x 4
STREAM_ARRAYS = {"read": 1, "amax": 1, "copy": 2, "triad": 3}
COMPUTE_PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8_e4m3", "int8")
QUIET_ATTEMPTS, QUIET_WAIT_S = 8, 1.0
COMPUTE_PASSES = 2
CALIBRATION_METHOD = 5  # part of the cache key: profiles measured by an older method are not reused
FULL_SHAPES = (1024, 2048, 4096)
QUICK_SHAPES = (1024, 2048)  # as large as the biggest CPU case: smaller cubes understate the peak


def _stream_kernel(kind: str, n: int, device: str):
    import torch
    a = torch.rand(n, device=device)
    b = torch.rand(n, device=device)
    c = torch.rand(n, device=device)
    if kind == "read":
        return lambda: a.sum()
    if kind == "amax":
        return lambda: a.amax()
    if kind == "copy":
        return lambda: b.copy_(a)
    return lambda: torch.add(b, c, alpha=3.0, out=a)


def stream_bandwidth(kind: str, nbytes: int, device: str = "cpu", rep_ms: float = 50.0) -> float:
    """GB/s of one stream kernel with an ``nbytes`` working set (per array: nbytes / arrays)."""
    n = max(1024, nbytes // (4 * STREAM_ARRAYS[kind]))
    fn = _stream_kernel(kind, n, device)
    t = bench(fn, device=device, mode="hot", warmup_ms=5, rep_ms=rep_ms, min_reps=5)
    return STREAM_ARRAYS[kind] * 4 * n / t.median_s / 1e9


def bandwidth_sweep(info: DeviceInfo, quick: bool = False, progress: Callable[[str], None] = lambda s: None) -> dict:
    device = info.torch_device
    levels = dict(info.cpu.caches) if device == "cpu" else ({"L2": info.l2_bytes} if info.l2_bytes else {})
    llc = max(levels.values()) if levels else 32 * 2**20
    sizes = sorted({max(16 * 2**10, v // 2) for v in levels.values()} | {8 * llc, 16 * llc})
    rep = 20.0 if quick else 60.0
    sweep = []
    for size in sizes:
        row = {"working_set_bytes": size}
        for kind in STREAM_ARRAYS:
            row[f"{kind}_gbs"] = stream_bandwidth(kind, size, device, rep)
        progress(f"bandwidth {size / 2**20:.3g} MiB: " + ", ".join(f"{k} {row[f'{k}_gbs']:.1f}"
                                                                 for k in STREAM_ARRAYS) + " GB/s")
        sweep.append(row)
    best = lambda row: max(row[f"{k}_gbs"] for k in STREAM_ARRAYS)  # noqa: E731
    dram = max(best(r) for r in sweep if r["working_set_bytes"] >= 8 * llc)
    cache_bw = {}
    for name, size in levels.items():
        rows = [r for r in sweep if r["working_set_bytes"] == max(16 * 2**10, size // 2)]
        if rows:
            cache_bw[name] = best(rows[0])
    return {"dram_gbs": dram, "cache_gbs": cache_bw, "sweep": sweep}


def dram_bandwidth_now(info: DeviceInfo, rep_ms: float = 30.0) -> float:
    """The best stream kernel's GB/s at 8x the LLC, measured now (a drifting roof is re-measured, not assumed)."""
    llc = info.cpu.llc_bytes if info.torch_device == "cpu" else (info.l2_bytes or 32 * 2**20)
    return max(stream_bandwidth(kind, 8 * llc, info.torch_device, rep_ms) for kind in STREAM_ARRAYS)


def compute_peaks(info: DeviceInfo, quick: bool = False, progress: Callable[[str], None] = lambda s: None):
    import torch
    peaks, skipped, sweep = {}, {}, []
    shapes = QUICK_SHAPES if quick else FULL_SHAPES
    # whole passes over every precision in turn, so one burst of load cannot hit both of a precision's runs
    for _ in range(COMPUTE_PASSES):
        for prec in COMPUTE_PRECISIONS:
            if prec in skipped:
                continue
            best = _gemm_pass(prec, shapes, info, quick, skipped, sweep, torch)
            if best is not None:
                cls = get_format(prec).compute_class
                peaks[cls] = max(peaks.get(cls, 0.0), best)
    for cls, v in peaks.items():
        progress(f"compute {cls}: {v:.3g} TFLOP/s (best of {COMPUTE_PASSES} passes over "
                 f"{', '.join(map(str, shapes))} cubes)")
    return peaks, skipped, sweep


def _gemm_pass(prec, shapes, info, quick, skipped, sweep, torch) -> float | None:
    """Best TFLOP/s of one pass over the GEMM cubes, or None (recorded in ``skipped``) without a kernel."""
    if prec == "tf32":
        if info.torch_device != "cuda":
            skipped[prec] = "TF32 is a CUDA tensor-core mode"
            return None
        torch.backends.cuda.matmul.allow_tf32 = True
    best = 0.0
    try:
        for s in shapes:
            k = make_gemm(s, s, s, "fp32" if prec == "tf32" else prec, device=info.torch_device)
            if k.emulated:
                raise UnsupportedKernel(prec, info.torch_device, f"emulated ({k.path}): not a hardware ceiling")
            t = bench(k.fn, device=info.torch_device, mode="hot", warmup_ms=10, rep_ms=40 if quick else 150,
                      min_reps=3)
            tflops = k.cost.flops / t.median_s / 1e12
            sweep.append({"precision": prec, "shape": s, "tflops": tflops, "median_s": t.median_s})
            best = max(best, tflops)
    except UnsupportedKernel as e:
        skipped[prec] = e.why
        return None
    finally:
        if prec == "tf32":
            torch.backends.cuda.matmul.allow_tf32 = False
    return best


def fingerprint(info: DeviceInfo) -> str:
    key = json.dumps([CALIBRATION_METHOD, info.hardware_key, info.name, info.cpu.model, info.cpu.threads, info.sm_count,
                      info.versions.get("torch"), _threads()], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _threads() -> int:
    import torch
    return torch.get_num_threads()


def wait_for_quiet(info: DeviceInfo, progress: Callable[[str], None] = lambda s: None) -> list[str]:
    """Contention flags still present after waiting up to QUIET_ATTEMPTS x QUIET_WAIT_S (empty: quiet)."""
    flags: list[str] = []
    for attempt in range(QUIET_ATTEMPTS):
        flags = telemetry.snapshot(info.kind, busy_interval_s=0.2)["contention"]
        if not flags:
            return []
        progress(f"waiting for a quiet machine before calibrating: {', '.join(flags)}")
        time.sleep(QUIET_WAIT_S)
    return flags


def calibrate(info: DeviceInfo, quick: bool = False, progress: Callable[[str], None] = lambda s: None) -> Calibration:
    before = wait_for_quiet(info, progress)
    bw = bandwidth_sweep(info, quick, progress)
    peaks, skipped, compute_sweep = compute_peaks(info, quick, progress)
    # other tenants' memory traffic is invisible to this VM's load figures: a second look, seconds later
    dram_again = dram_bandwidth_now(info)
    progress(f"DRAM bandwidth again after the compute passes: {dram_again:.1f} GB/s (first: {bw['dram_gbs']:.1f})")
    bw["dram_gbs"] = max(bw["dram_gbs"], dram_again)
    after = telemetry.snapshot(info.kind, busy_interval_s=0.2)["contention"]
    contention = [f"before: {f}" for f in before] + [f"after: {f}" for f in after]
    if contention:
        progress(f"calibrated under contention ({'; '.join(contention)}): this profile will not be reused")
    return Calibration(
        hardware=info.hardware_key, peaks_tflops=peaks, bandwidth_gbs=bw["dram_gbs"], cache_bandwidth_gbs=bw["cache_gbs"],
        device={k: v for k, v in info.to_dict().items() if k != "versions"}, versions=info.versions,
        timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        details={"quick": quick, "threads": _threads(), "fingerprint": fingerprint(info), "skipped": skipped,
                 "contention": contention,
                 "bandwidth_sweep": bw["sweep"], "compute_sweep": compute_sweep})


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "roofline"


def profile_path(info: DeviceInfo, cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or default_cache_dir()) / f"calibration-{info.hardware_key}-{fingerprint(info)}.json"


def save(cal: Calibration, path: str | os.PathLike) -> Path:
    write_json_atomic(path, cal.to_dict())
    return Path(path)


def load_or_calibrate(info: DeviceInfo, cache_dir=None, quick: bool = False, refresh: bool = False,
                      progress: Callable[[str], None] = lambda s: None) -> Calibration:
    """The cached profile for this device if there is one (a full one satisfies a quick request), else measure."""
    from roofline import load_calibration
    path = profile_path(info, cache_dir)
    if path.exists() and not refresh:
        try:
            cal = load_calibration(path)
            if cal.details.get("contention"):
                progress(f"cached profile {path} was measured under contention; measuring again")
            elif quick or not cal.details.get("quick", False):
                return cal
        except ValueError:
            pass  # a damaged cache is measured again, not trusted
    progress(f"calibrating {info.hardware_key} ({'quick' if quick else 'full'}); profile -> {path}")
    cal = calibrate(info, quick, progress)
    save(cal, path)
    return Calibration.from_dict(cal.to_dict(), path=str(path))
