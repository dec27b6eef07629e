"""One timer for every kernel, shaped like ``triton.testing.do_bench``.

1. Warmup and measurement budgets are in milliseconds; the call count follows from an estimate of one
   call (flush included, as do_bench does).
2. Cold mode sweeps a flush buffer larger than the last-level cache before every call, outside the
   timed region, so each call starts from DRAM (CPU: read, leaving clean lines; CUDA: do_bench's
   write). Hot mode repeats the call on warm caches.
3. CPU: ``time.perf_counter_ns`` around each call; the loop stops once the relative IQR of the
   samples settles below a target (after ``min_reps``), or when the budget ends.
4. CUDA: one event pair per call and a single synchronize at the end (do_bench's recipe); optional
   CUDA-graph replay for launch-bound kernels.
Result: median, p20, p80, mean, stdev, min, count, mode, spread, and whether the spread settled.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np

MODES = ("cold", "hot")


@dataclass(frozen=True)
class Timing:
    median_s: float
    p20_s: float
    p80_s: float
    mean_s: float
    stdev_s: float
    min_s: float
    count: int
    mode: str
    device: str
    rel_iqr: float
    converged: bool
    wall_s: float
    warmup_count: int
    flush_bytes: int
    cuda_graph: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(times_s, mode="hot", device="cpu", wall_s=0.0, warmup_count=0, flush_bytes=0, cuda_graph=False,
              converged=False) -> Timing:
    t = np.asarray(times_s, dtype=np.float64)
    p20, p25, p50, p75, p80 = np.percentile(t, [20, 25, 50, 75, 80])
    return Timing(median_s=float(p50), p20_s=float(p20), p80_s=float(p80), mean_s=float(t.mean()),
                  stdev_s=float(statistics.stdev(t)) if len(t) > 1 else 0.0, min_s=float(t.min()), count=len(t),
                  rel_iqr=float((p75 - p25) / p50) if p50 > 0 else float("inf"), mode=mode, device=device,
                  wall_s=wall_s, warmup_count=warmup_count, flush_bytes=flush_bytes, cuda_graph=cuda_graph,
                  converged=converged)


def _check(mode, warmup_ms, rep_ms, min_reps):
    if mode not in MODES:
        raise ValueError(f"unknown timing mode {mode!r}; allowed: {', '.join(MODES)}")
    for name, v in (("warmup_ms", warmup_ms), ("rep_ms", rep_ms)):
        if not (v >= 0 and v < float("inf")):
            raise ValueError(f"{name}={v!r} must be a non-negative number of milliseconds")
    if min_reps < 1:
        raise ValueError(f"min_reps={min_reps!r} must be >= 1")


def bench(fn, *, device: str = "cpu", mode: str = "cold", warmup_ms: float = 25.0, rep_ms: float = 100.0,
          flush_bytes: int = 64 * 2**20, min_reps: int = 10, max_reps: int = 100_000,
          rel_iqr_target: float = 0.02, cuda_graph: bool = False) -> Timing:
    """Time ``fn()`` (which must do the whole kernel; its result is discarded)."""
    _check(mode, warmup_ms, rep_ms, min_reps)
    if device == "cpu":
        if cuda_graph:
            raise ValueError("cuda_graph=True needs a CUDA device; got device='cpu'")
        return _bench_cpu(fn, mode, warmup_ms, rep_ms, flush_bytes, min_reps, max_reps, rel_iqr_target)
    return _bench_cuda(fn, mode, warmup_ms, rep_ms, flush_bytes, min_reps, max_reps, rel_iqr_target, cuda_graph)


def _bench_cpu(fn, mode, warmup_ms, rep_ms, flush_bytes, min_reps, max_reps, target) -> Timing:
    import torch

    start_wall = time.perf_counter()
    # Touched (ones, not empty: untouched pages all map the kernel's zero page and evict nothing).
    flush_buf = torch.ones(flush_bytes // 4, dtype=torch.float32) if mode == "cold" else None

    def flush():
        # A read, not a write: writing leaves the cache full of dirty lines whose write-back the timed
        # kernel would pay for (seen here: memset-style flushes made cold GEMVs 10-30% slower).
        if flush_buf is not None:
            flush_buf.sum()

    fn()  # first call: allocations, lazy init
    t0 = time.perf_counter_ns()
    for _ in range(3):
        flush()
        fn()
    estimate_ms = max((time.perf_counter_ns() - t0) / 3 / 1e6, 1e-4)
    n_warmup = max(1, int(warmup_ms / estimate_ms))
    for _ in range(min(n_warmup, max_reps)):
        fn()

    times: list[float] = []
    budget_end = time.perf_counter() + rep_ms / 1e3
    converged = False
    next_check = min_reps  # geometric schedule: checking the spread stays O(n log n) for microsecond kernels
    while len(times) < max_reps:
        flush()
        t0 = time.perf_counter_ns()
        fn()
        times.append((time.perf_counter_ns() - t0) * 1e-9)
        n = len(times)
        if n >= next_check:
            next_check = int(n * 1.25) + 1
            if summarize(times).rel_iqr <= target:
                converged = True
                break
        if time.perf_counter() > budget_end and n >= min(3, min_reps):
            break
    result = summarize(times, mode, "cpu", time.perf_counter() - start_wall, n_warmup,
                       flush_bytes if flush_buf is not None else 0)
    return dataclasses.replace(result, converged=converged or result.rel_iqr <= target)


def _bench_cuda(fn, mode, warmup_ms, rep_ms, flush_bytes, min_reps, max_reps, target, cuda_graph) -> Timing:
    """do_bench's recipe: estimate, warm up, one event pair per call, one synchronize at the end."""
    import torch

    start_wall = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    if cuda_graph:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        fn = graph.replay
    cache = torch.empty(flush_bytes, dtype=torch.int8, device="cuda") if mode == "cold" else None

    def flush():
        if cache is not None:
            cache.zero_()

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(5):
        flush()
        fn()
    end.record()
    torch.cuda.synchronize()
    estimate_ms = max(start.elapsed_time(end) / 5, 1e-4)
    n_warmup = max(1, int(warmup_ms / estimate_ms))
    n_repeat = min(max_reps, max(min_reps, int(rep_ms / estimate_ms)))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n_repeat)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n_repeat)]
    for _ in range(n_warmup):
        fn()
    for s, e in zip(starts, ends):
        flush()
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    times = [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]
    result = summarize(times, mode, "cuda", time.perf_counter() - start_wall, n_warmup,
                       flush_bytes if cache is not None else 0, cuda_graph)
    return dataclasses.replace(result, converged=result.rel_iqr <= target)
