"""Empirical roofline (after LBNL's ERT and mamf-finder): the ceilings this device really reaches.

1. Bandwidth: read (sum, amax), copy and triad kernels, hot, over working sets at half of each cache
   level and beyond the caches (the working set decides which level serves it). Bytes counted: read N,
   copy 2N, triad 3N (write-allocate traffic not counted, as STREAM does). Each kernel allocates only
   the arrays it touches. The DRAM working set is 8x the caches, capped at a quarter of the memory
   available now (a VM reporting a 480 MiB L3 once needed 23 GB for this); the profile says when the
   cap kept it under 2x the caches. The DRAM ceiling is the best kernel's median: contention only ever
   slows a kernel, and torch's stream kernels differ by up to 30% on the same data.
2. Compute: per precision, GEMM cubes grow (256, 512, ...) until TFLOP/s stops rising by more than
   ``PLATEAU``, or the next cube would not fit the precision's time budget (mamf-finder's search, bounded
   so a host where a path is slow, e.g. int8 ``_int_mm`` without VNNI at 6 GFLOP/s, cannot take minutes).
   A peak still rising when the budget ended is recorded as such. Every format the device runs natively
   is calibrated (FP4 on Blackwell, TF32 on CUDA); emulated paths are skipped (not a hardware ceiling).
3. A roof measured while something else loads the machine is a wrong roof: calibration waits for a quiet
   machine, takes each peak as the best of two passes, looks at DRAM twice (the spread of the two looks is
   the roof's own measured noise, which the judge allows for), and a profile that saw contention is
   measured again next time.
4. The profile (JSON) is what ``roofline`` loads beside the datasheet peaks. One store serves the CLI and
   pytest: ``$ROOFLINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/roofline``, else ``~/.cache/roofline``. It is
   keyed by a fingerprint of everything that moves a roof: device, power mode, clocks, driver, torch and
   torchao versions, threads. Written atomically.
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
from .device import DeviceInfo, host_limits
from .cgroup import overrun
from .measure import available_memory_bytes, cache_bytes, cold_span_bytes
from .ops import UnsupportedKernel, make_peak_gemm
from .timer import bench

# arrays each kernel touches once (read: a; copy: a -> b; triad: b, c -> a): bytes = arrays x n x 4
STREAM_ARRAYS = {"read": 1, "amax": 1, "copy": 2, "triad": 3}
# ... and the arrays each really moves: a store to a line not in cache reads it first (write-allocate), so copy moves
# 3 and triad 4. STREAM's count (above) is what the calibrated, STREAM-comparable figure uses; the memory CEILING
# counts the traffic: a healthy fp32 GEMV (one read stream, MKL's prefetching) read 25.7 GB/s on a VM whose best
# STREAM-counted look was 22.0 (triad, 29.3 GB/s of traffic). Over-counting a store that skips the read (non-temporal
# or full-line writes) only loosens the ceiling.
TRAFFIC_ARRAYS = {"read": 1, "amax": 1, "copy": 3, "triad": 4}
COMPUTE_PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8_e4m3", "int8", "nvfp4")
QUIET_ATTEMPTS, QUIET_WAIT_S = 8, 1.0
COMPUTE_PASSES = 2
CALIBRATION_METHOD = 9  # part of the cache key: profiles measured by an older method are not reused
CUBES = (256, 512, 1024, 2048, 4096, 8192)
PLATEAU = 0.03  # a cube this much faster than the last one is still climbing
DRAM_CACHE_MULTIPLE = 8
# ... and never under this: a VM reports the caches of its virtual topology, while its vCPUs may be served by
# more of the host's (several CCDs' L3, stacked V-Cache: up to ~1 GiB on one socket); a working set inside
# what really caches it reads fast, and the more so the more of it a neighbour left warm
DRAM_MIN_BYTES = 2**30
MEMORY_FRACTION = 0.25
# seconds per precision per pass; quick: the whole calibration stays under a minute on a 2-core host
COMPUTE_BUDGET_S = {True: 4.0, False: 20.0}
STREAM_REP_MS = {True: 20.0, False: 60.0}


def _stream_kernel(kind: str, n: int, device: str):
    import torch
    # distinct values on every page (not torch.full's one constant): a page of one repeated value is what a
    # hypervisor's same-page merging or a compressed-memory tier can serve without reading DRAM
    arrays = [torch.arange(n, dtype=torch.float32, device=device).mul_(1e-7).add_(1.0 + i)
              for i in range(STREAM_ARRAYS[kind])]
    if kind == "read":
        return lambda: arrays[0].sum()
    if kind == "amax":
        return lambda: arrays[0].amax()
    if kind == "copy":
        return lambda: arrays[1].copy_(arrays[0])
    return lambda: torch.add(arrays[1], arrays[2], alpha=3.0, out=arrays[0])


def stream_bandwidth(kind: str, nbytes: int, device: str = "cpu", rep_ms: float = 50.0) -> float:
    """GB/s of one stream kernel over an ``nbytes`` working set (all its arrays together)."""
    n = max(1024, nbytes // (4 * STREAM_ARRAYS[kind]))
    fn = _stream_kernel(kind, n, device)
    t = bench(fn, device=device, mode="hot", warmup_ms=5, rep_ms=rep_ms, min_reps=5)
    return STREAM_ARRAYS[kind] * 4 * n / t.median_s / 1e9


def dram_working_set(info: DeviceInfo) -> tuple[int, str]:
    """(bytes, note): 8x the caches and at least DRAM_MIN_BYTES, capped at a quarter of the memory available now."""
    want = max(DRAM_CACHE_MULTIPLE * cache_bytes(info), DRAM_MIN_BYTES if info.kind == "cpu" else 0)
    cap = int(MEMORY_FRACTION * available_memory_bytes(info))
    if want <= cap:
        why = (f"{DRAM_CACHE_MULTIPLE}x caches" if want == DRAM_CACHE_MULTIPLE * cache_bytes(info) else
               f"at least {DRAM_MIN_BYTES / 2**30:g} GiB: more than any host's caches a VM may hide")
        return want, f"{want / 2**20:.0f} MiB ({why})"
    note = f"{cap / 2**20:.0f} MiB (capped at {MEMORY_FRACTION:.0%} of available memory; wanted {want / 2**20:.0f})"
    if cap < 2 * cache_bytes(info):
        note += ": under 2x the caches, so the DRAM figure may include cache hits"
    return cap, note


def bandwidth_sweep(info: DeviceInfo, quick: bool = False, progress: Callable[[str], None] = lambda s: None) -> dict:
    device = info.torch_device
    levels = dict(info.cpu.caches) if device == "cpu" else ({"L2": info.l2_bytes} if info.l2_bytes else {})
    dram, dram_note = dram_working_set(info)
    sizes = sorted({max(16 * 2**10, v // 2) for v in levels.values()} | {dram})
    sweep = []
    for size in sizes:
        row = {"working_set_bytes": size}
        for kind in STREAM_ARRAYS:
            row[f"{kind}_gbs"] = stream_bandwidth(kind, size, device, STREAM_REP_MS[quick])
        progress(f"bandwidth {size / 2**20:.3g} MiB: " + ", ".join(f"{k} {row[f'{k}_gbs']:.1f}"
                                                                 for k in STREAM_ARRAYS) + " GB/s")
        sweep.append(row)
    best = lambda row: max(row[f"{k}_gbs"] for k in STREAM_ARRAYS)  # noqa: E731
    cache_bw = {}
    for name, size in levels.items():
        rows = [r for r in sweep if r["working_set_bytes"] == max(16 * 2**10, size // 2)]
        if rows:
            cache_bw[name] = best(rows[0])
    dram_row = next(r for r in sweep if r["working_set_bytes"] == dram)  # not the largest: the cap may be small
    return {"dram_gbs": best(dram_row), "cache_gbs": cache_bw, "sweep": sweep, "dram_working_set": dram_note}


def dram_bandwidth_now(info: DeviceInfo, rep_ms: float = 30.0, nbytes: int | None = None,
                       traffic: bool = False) -> float:
    """The best stream kernel's GB/s over the DRAM working set (or ``nbytes``), measured now; ``traffic``: counting
    the bytes each really moves (write-allocate included: what the memory ceiling is made of)."""
    size = nbytes or dram_working_set(info)[0]
    scale = TRAFFIC_ARRAYS if traffic else STREAM_ARRAYS
    return max(stream_bandwidth(kind, size, info.torch_device, rep_ms) * scale[kind] / STREAM_ARRAYS[kind]
               for kind in STREAM_ARRAYS)


def traffic_of(row: dict) -> float:
    """A bandwidth-sweep row's best kernel, counting the bytes each really moves."""
    return max(row[f"{k}_gbs"] * TRAFFIC_ARRAYS[k] / STREAM_ARRAYS[k] for k in STREAM_ARRAYS)


def native_precisions(info: DeviceInfo, hw=None) -> tuple[str, ...]:
    """The precisions worth a compute peak here: on a GPU the registry's native formats (FP4 on Blackwell)."""
    if info.kind == "cpu" or hw is None:
        return tuple(p for p in COMPUTE_PRECISIONS if p not in ("tf32", "nvfp4"))
    return tuple(p for p in COMPUTE_PRECISIONS if p == "tf32" or hw.supports_native(p))


def compute_peaks(info: DeviceInfo, quick: bool = False, progress: Callable[[str], None] = lambda s: None, hw=None):
    import torch
    peaks, skipped, sweep, rising, passes = {}, {}, [], {}, {}
    # whole passes over every precision in turn, so one burst of load cannot hit both of a precision's runs
    for _ in range(COMPUTE_PASSES):
        for prec in native_precisions(info, hw):
            if prec in skipped:
                continue
            result = _gemm_pass(prec, info, quick, skipped, sweep, torch)
            if result is not None:
                best, still_rising = result
                cls = get_format(prec).compute_class if prec != "tf32" else "tf32"
                passes.setdefault(cls, []).append(best)
                if best > peaks.get(cls, 0.0):
                    peaks[cls], rising[cls] = best, still_rising
    for cls, v in peaks.items():
        progress(f"compute {cls}: {v:.3g} TFLOP/s (best of {COMPUTE_PASSES} passes"
                 + ("; still rising when its time budget ended" if rising[cls] else "") + ")")
    spread = {cls: (max(v) - min(v)) / max(v) for cls, v in passes.items()}
    return peaks, skipped, sweep, rising, spread


def _gemm_pass(prec, info, quick, skipped, sweep, torch):
    """(best TFLOP/s, still rising) of one pass of growing cubes, or None (recorded in ``skipped``)."""
    if prec == "tf32":
        if info.torch_device != "cuda":
            skipped[prec] = "TF32 is a CUDA tensor-core mode"
            return None
        torch.backends.cuda.matmul.allow_tf32 = True
    best, last, still_rising = 0.0, None, True
    budget_end = time.perf_counter() + COMPUTE_BUDGET_S[quick]
    try:
        for s in CUBES:
            if last is not None:  # the next cube costs ~8x the last: stop if 5 calls of it cannot fit
                if time.perf_counter() + 5 * 8 * last > budget_end:
                    break
            k = make_peak_gemm(s, "fp32" if prec == "tf32" else prec, device=info.torch_device)  # the GEMM alone
            if k.emulated:
                raise UnsupportedKernel(prec, info.torch_device, f"emulated ({k.path}): not a hardware ceiling")
            t = bench(k.fn, device=info.torch_device, mode="hot", warmup_ms=10, rep_ms=40 if quick else 150,
                      min_reps=3)
            tflops = k.cost.flops / t.median_s / 1e12
            sweep.append({"precision": prec, "shape": s, "tflops": tflops, "median_s": t.median_s})
            last = t.median_s
            if best and tflops < best * (1 + PLATEAU):
                still_rising = False
                best = max(best, tflops)
                break
            best = max(best, tflops)
    except UnsupportedKernel as e:
        skipped[prec] = e.why
        return None
    finally:
        if prec == "tf32":
            torch.backends.cuda.matmul.allow_tf32 = False
    return best, still_rising


def fingerprint(info: DeviceInfo) -> str:
    """Everything that moves a roof: a profile measured under other conditions is not reused."""
    return hashlib.sha256(json.dumps(fingerprint_fields(info), sort_keys=True).encode()).hexdigest()[:12]


def fingerprint_fields(info: DeviceInfo) -> dict:
    return {"method": CALIBRATION_METHOD, "hardware": info.hardware_key, "name": info.name, "cpu": info.cpu.model,
            "threads": info.cpu.threads, "torch_threads": _threads(), "sm_count": info.sm_count,
            # the caches a cold span and the bandwidth sweep's levels are sized from (every instance counted)
            "caches": dict(info.cpu.caches) if info.kind == "cpu" else None,
            "power_mode": (info.power_mode or {}).get("mode"), "driver": info.driver, "cuda": info.cuda,
            **_limits(info),
            # a binding cgroup quota, boost off, a capped clock: each moves every roof of the same CPU (keys only
            # where set, so a host without them keeps its fingerprint)
            **(host_limits(info.cpu) if info.kind == "cpu" else {}),
            **{k: info.versions.get(k) for k in ("torch", "torchao")}}


def _limits(info: DeviceInfo) -> dict:
    """The clock ceiling the roof was measured under (NVML's max SM clock, a Jetson's devfreq max, the CPU's max) and,
    on an NVML GPU, the power limit it enforces: a board capped with ``nvidia-smi -pl`` runs its roofs lower under
    the same max clock, so a profile measured before the cap is not reused after it (or the reverse)."""
    if info.kind == "cpu":
        return {"max_clock_mhz": info.cpu.max_mhz}
    snap = telemetry.snapshot(info.kind, busy_interval_s=0, info=info)
    nv = snap.get("nvml") or {}
    limit = nv.get("power_limit_w")
    out = {"max_clock_mhz": nv.get("max_sm_clock_mhz") or (snap.get("jetson") or {}).get("gpu_max_mhz")}
    if limit is not None:
        out["power_limit_w"] = round(float(limit))
    app, default = nv.get("app_sm_clock_mhz"), nv.get("default_app_sm_clock_mhz")
    if app is not None and default is not None and app != default:  # -ac set: key only then (defaults keep theirs)
        out["app_sm_clock_mhz"] = int(app)
    return out


def quota_warning(info: DeviceInfo) -> str | None:
    """More torch threads than the cgroup's CPU quota has CPUs: every pass spends the quota early and stops until the
    next period, so the roofs measure the quota's stops (a CI pod with a 2-CPU limit on a 64-core node)."""
    if info.kind != "cpu":
        return None
    over = overrun(info.cpu.quota_cpus, _threads())
    return f"{over} ({info.cpu.quota_source}): every timed pass will stop for it" if over else None


def _threads() -> int:
    import torch
    return torch.get_num_threads()


def wait_for_quiet(info: DeviceInfo, progress: Callable[[str], None] = lambda s: None) -> list[str]:
    """Contention flags still present after waiting up to QUIET_ATTEMPTS x QUIET_WAIT_S (empty: quiet)."""
    flags: list[str] = []
    for attempt in range(QUIET_ATTEMPTS):
        flags = telemetry.snapshot(info.kind, busy_interval_s=0.2, info=info)["contention"]
        if not flags:
            return []
        progress(f"waiting for a quiet machine before calibrating: {', '.join(flags)}")
        time.sleep(QUIET_WAIT_S)
    return flags


def expected_seconds(info: DeviceInfo, quick: bool, hw=None) -> float:
    """An upper bound on calibration time from the budgets (said before a full calibration starts)."""
    levels = len(info.cpu.caches) if info.torch_device == "cpu" else 1
    stream = (levels + 2) * len(STREAM_ARRAYS) * 3 * STREAM_REP_MS[quick] / 1e3
    return stream + COMPUTE_PASSES * len(native_precisions(info, hw)) * COMPUTE_BUDGET_S[quick] * 1.25


def calibrate(info: DeviceInfo, quick: bool = False, progress: Callable[[str], None] = lambda s: None,
              hw=None) -> Calibration:
    """Measure this device's roofs. ``hw`` (its registry entry) picks the native formats to calibrate on a GPU."""
    started = time.perf_counter()
    progress(f"{'quick' if quick else 'full'} calibration of {info.hardware_key}: up to "
             f"~{expected_seconds(info, quick, hw):.0f} s")
    warning = quota_warning(info)
    if warning:
        progress(f"WARNING: {warning}")
    before = wait_for_quiet(info, progress)
    bw = bandwidth_sweep(info, quick, progress)
    peaks, skipped, compute_sweep, rising, peak_spread = compute_peaks(info, quick, progress, hw)
    # other tenants' memory traffic is invisible to a VM's load figures: a second look, seconds later
    dram_again = dram_bandwidth_now(info)
    progress(f"DRAM bandwidth again after the compute passes: {dram_again:.1f} GB/s (first: {bw['dram_gbs']:.1f})")
    spread = abs(dram_again - bw["dram_gbs"]) / max(dram_again, bw["dram_gbs"])
    dram_looks = [bw["dram_gbs"], dram_again]
    # the ceiling for cold cases: what a cold read shows over the span their rotations cover (2x the caches; a
    # host's replacement policy may keep part of it cached, which a 1 GiB look would not show: a healthy int8
    # GEMV read its 112 MiB rotation 4% faster than the best 1 GiB look)
    ceiling_looks = ([traffic_of(row) for row in bw["sweep"] if row["working_set_bytes"] >= cold_span_bytes(info)]
                     + [dram_bandwidth_now(info, nbytes=cold_span_bytes(info), traffic=True)]) if info.kind == "cpu" else []
    bw["dram_gbs"] = max(bw["dram_gbs"], dram_again)
    after = telemetry.snapshot(info.kind, busy_interval_s=0.2, info=info)["contention"]
    contention = [f"before: {f}" for f in before] + [f"after: {f}" for f in after]
    if contention:
        progress(f"calibrated under contention ({'; '.join(contention)}): this profile will not be reused")
    took = time.perf_counter() - started
    progress(f"calibration took {took:.1f} s")
    return Calibration(
        hardware=info.hardware_key, peaks_tflops=peaks, bandwidth_gbs=bw["dram_gbs"], cache_bandwidth_gbs=bw["cache_gbs"],
        device={k: v for k, v in info.to_dict().items() if k != "versions"}, versions=info.versions,
        timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        details={"quick": quick, "threads": _threads(), "fingerprint": fingerprint(info),
                 "fingerprint_fields": fingerprint_fields(info), "skipped": skipped, "contention": contention,
                 "dram_spread": spread, "dram_looks_gbs": dram_looks, "ceiling_looks_gbs": ceiling_looks,
                 "dram_working_set": bw["dram_working_set"],
                 "peak_still_rising": rising,
                 "peak_spread": peak_spread,
                 "seconds": took, "bandwidth_sweep": bw["sweep"], "compute_sweep": compute_sweep})


ENV_CACHE_DIR = "ROOFLINE_CACHE_DIR"


def default_cache_dir(environ=os.environ) -> Path:
    """The one profile store: ``$ROOFLINE_CACHE_DIR``, else ``$XDG_CACHE_HOME/roofline``, else ~/.cache/roofline."""
    if environ.get(ENV_CACHE_DIR):
        return Path(environ[ENV_CACHE_DIR])
    xdg = environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache") / "roofline"


def store_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The profile store's directory (``cache_dir`` or the default); one that names an existing file is refused
    here, before anything is measured (it was found at the save, a traceback after the whole calibration)."""
    store = Path(cache_dir or default_cache_dir())
    there = next((p for p in (store, *store.parents) if p.exists()), None)  # the store, or what it would be made in
    if there is not None and not there.is_dir():
        raise ValueError(f"profile store {store}" + (" is a file" if there == store else f": {there} is a file")
                         + f", not a directory; give the store (--cache-dir; pytest: --roofline-cache-dir; or "
                         f"{ENV_CACHE_DIR}) a directory, existing or to be made")
    return store


def profile_path(info: DeviceInfo, cache_dir: str | os.PathLike | None = None) -> Path:
    return store_dir(cache_dir) / f"calibration-{info.hardware_key}-{fingerprint(info)}.json"


def stored_profiles(cache_dir: str | os.PathLike | None = None, unreadable: list | None = None) -> list[Calibration]:
    """Every readable profile in the store, newest first (``calibrate --show``); ``unreadable`` collects (path, why)
    of the others, which ``--show`` names rather than leave out unsaid."""
    from roofline import load_calibration
    out = []
    for path in sorted(store_dir(cache_dir).glob("calibration-*.json")):
        try:
            out.append(load_calibration(path))
        except ValueError as e:
            if unreadable is not None:
                unreadable.append((str(path), str(e)))
    return sorted(out, key=lambda c: c.timestamp, reverse=True)


def save(cal: Calibration, path: str | os.PathLike) -> Path:
    write_json_atomic(path, cal.to_dict())
    return Path(path)


def load_or_calibrate(info: DeviceInfo, cache_dir=None, quick: bool = False, refresh: bool = False,
                      progress: Callable[[str], None] = lambda s: None, hw=None,
                      efficiency_budget_s: float | None = None) -> Calibration:
    """The cached profile for this device if there is one (a full one satisfies a quick request), else measure.
    A profile without an efficiency model gets one (``roofline_kernels.efficiency.ensure_model``) within
    ``efficiency_budget_s`` (None: the default for a quick or full calibration; 0: none), so the expected time
    beside the bound needs no extra step."""
    from roofline import load_calibration
    path = profile_path(info, cache_dir)
    cal = None
    if path.exists() and not refresh:
        try:
            cal = load_calibration(path)
            if cal.details.get("contention"):
                progress(f"cached profile {path} was measured under contention; measuring again")
                cal = None
            elif quick or not cal.details.get("quick", False):
                offer_looks(info, cal, path.parent, only_if_empty=True)
            else:
                cal = None
        except ValueError:
            cal = None  # a damaged cache is measured again, not trusted
    if cal is None:
        progress(f"calibrating {info.hardware_key} ({'quick' if quick else 'full'}); profile -> {path}")
        cal = calibrate(info, quick, progress, hw)
        save(cal, path)
        offer_looks(info, cal, path.parent)
        cal = Calibration.from_dict(cal.to_dict(), path=str(path))
    from .efficiency import default_budget_s, ensure_model
    from .measure import hardware_for
    budget = default_budget_s(bool(cal.details.get("quick", quick))) if efficiency_budget_s is None \
        else efficiency_budget_s
    return ensure_model(cal, info, hardware_for(info, cal), budget, progress)


def offer_looks(info: DeviceInfo, cal: Calibration, store, only_if_empty: bool = False) -> None:
    """A CPU's DRAM ceiling is the best this device has shown: every calibration look is offered to it."""
    from .ceiling import load_dram_history, offer_dram
    if info.kind != "cpu" or (only_if_empty and load_dram_history(info, store)["best_gbs"]):
        return
    busy = bool(cal.details.get("contention"))
    for gbs in cal.details.get("ceiling_looks_gbs") or cal.details.get("dram_looks_gbs") or [cal.bandwidth_gbs]:
        offer_dram(info, store, float(gbs), f"calibration {cal.timestamp} (traffic counted)", busy)
