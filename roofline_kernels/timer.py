"""One timer for every kernel, shaped like ``triton.testing.do_bench``.

1. Warmup and measurement budgets are in milliseconds; the call count follows from an estimate of one
   call. Warmup is capped (``MAX_WARMUP`` calls) so a microsecond kernel does not warm up for ever.
2. Cold mode cycles through independent copies of the kernel's operands (``Kernel.rotation``) whose
   total exceeds the caches, as CUTLASS's profiler does: every call finds its operands evicted by the
   calls between, and a cold sample costs one call. (The first version swept a flush buffer of 4x the
   LLC before every call: on a VM reporting a 480 MiB L3 that was 2 GB read per sample.) Hot mode
   repeats one call on warm caches.
3. At least ``min_reps`` timed samples, or for a long call (over ``LONG_CALL_S``) enough to span ``MIN_SPAN_S``
   and never fewer than ``LONG_CALL_REPS`` (``reps_floor``): ten 0.8 s calls of a software bf16 GEMM spent 8 s
   of a 2-core host's suite to learn what five told (their spread was 1.6%). ``max_wall_s`` is the per-case
   budget: a kernel whose estimate says ``min_reps`` samples cannot fit is refused before timing
   (``BudgetExceeded``), never timed with too few samples. The refusal stays on ``min_reps``, not on the floor:
   it says which calls are too long to measure here at all (a 3 s int8 GEMM on a CPU without VNNI, whose case
   costs ten calls whatever its samples: the correctness check, the estimate, pytest-benchmark's rounds). On a
   CPU the correctness check's call (``warm_call_s``) is itself an estimate: one well past the budget
   (``WARM_REFUSAL``) is refused on it, and a long one that fits is timed without an estimate call of its own.
4. CPU: ``time.perf_counter_ns`` around each call; the loop stops once the relative IQR settles below a
   target (after ``min_reps``), or when the budget ends. CUDA: one event pair per call and a single
   synchronize at the end (do_bench's recipe); optional CUDA-graph replay for launch-bound kernels.
5. ``region`` (an object with ``start()``/``stop()``, e.g. ``region.RegionMonitor``) is started
   right before the timed loop and stopped right after it: telemetry of the timed calls, not of warmup (on
   CUDA the queued warmup is synchronized first: launches return before their work runs).
Result: median, p20, p80, mean, stdev, min, count, mode, spread, whether the spread settled, and the
rotation that made the samples cold.
"""
from __future__ import annotations

import dataclasses
import math
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
    rotation_bytes: int = 0  # cold: bytes the rotated operand copies span together; hot: 0
    rotation_copies: int = 1
    cuda_graph: bool = False
    # the samples themselves, for a statistical comparison with this device's history (roofline.regress): not in
    # to_dict (a microsecond kernel takes 100k samples; records keep a thinned set)
    samples_s: tuple = dataclasses.field(default=(), repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["samples_s"]
        return d


def summarize(times_s, mode="hot", device="cpu", wall_s=0.0, warmup_count=0, rotation_bytes=0, rotation_copies=1,
              cuda_graph=False, converged=False) -> Timing:
    t = np.asarray(times_s, dtype=np.float64)
    p20, p25, p50, p75, p80 = np.percentile(t, [20, 25, 50, 75, 80])
    return Timing(median_s=float(p50), p20_s=float(p20), p80_s=float(p80), mean_s=float(t.mean()),
                  stdev_s=float(statistics.stdev(t)) if len(t) > 1 else 0.0, min_s=float(t.min()), count=len(t),
                  rel_iqr=float((p75 - p25) / p50) if p50 > 0 else float("inf"), mode=mode, device=device,
                  wall_s=wall_s, warmup_count=warmup_count, rotation_bytes=rotation_bytes,
                  rotation_copies=rotation_copies, cuda_graph=cuda_graph,
                  converged=converged, samples_s=tuple(float(v) for v in t))


MAX_WARMUP = 200
# A call this long averages its host's scheduling over its own length: its samples spread little (on a shared
# 2-core VM, the suite's 0.12-0.82 s GEMMs: 1.2-2.7% stdev over mean in their pytest-benchmark rounds), so samples
# that span MIN_SPAN_S suffice, LONG_CALL_REPS at least: five against a history run's five can still claim a
# slowdown at roofline.regress.ALPHA, though only when every call is slower (p = 0.006; four against four cannot).
LONG_CALL_S = 0.1
MIN_SPAN_S = 1.0
LONG_CALL_REPS = 5


def reps_floor(min_reps: int, estimate_s: float) -> int:
    """The fewest samples a call of ``estimate_s`` may be timed with, if they span ``MIN_SPAN_S`` (the CPU loop checks
    the span; a CUDA run sizes its repeats up front from a 5-call estimate): ``min_reps``, fewer for a long call."""
    if estimate_s <= LONG_CALL_S:
        return min_reps
    return min(min_reps, max(LONG_CALL_REPS, math.ceil(MIN_SPAN_S / estimate_s)))


def sampled_enough(timing: "Timing", min_reps: int) -> bool:
    """Whether a timing holds what ``bench`` promises for ``min_reps``: that many samples, or for long calls at least
    ``LONG_CALL_REPS`` spanning ``MIN_SPAN_S``."""
    return timing.count >= min_reps or (timing.count >= LONG_CALL_REPS and sum(timing.samples_s) >= MIN_SPAN_S)


# a CPU kernel whose earlier call (its correctness check's) took so long that min_reps of them exceed the budget by
# this factor is refused without the estimate call, which would have told the same for seconds more (a 3 s int8
# GEMM without VNNI spent 2 x 3 s of the suite before its skip); the earlier call may be the kernel's first, whose
# setup (allocation, a library's primitive creation: milliseconds on a CPU) is no 25% of a call over 2 s. Nearer
# the budget, one more timed call decides. Not on CUDA, where a first call may carry seconds of context and
# library setup.
WARM_REFUSAL = 1.25


class BudgetExceeded(ValueError):
    """``min_reps`` samples of this kernel cannot fit the per-case wall budget. ``estimate_s``: one call's time as
    the refusal read it (None where no call was timed): a case's history can still judge it."""

    def __init__(self, message: str, estimate_s: float | None = None):
        super().__init__(message)
        self.estimate_s = estimate_s


def _check(mode, warmup_ms, rep_ms, min_reps, rotation):
    if mode not in MODES:
        raise ValueError(f"unknown timing mode {mode!r}; allowed: {', '.join(MODES)}")
    for name, v in (("warmup_ms", warmup_ms), ("rep_ms", rep_ms)):
        if not (v >= 0 and v < float("inf")):
            raise ValueError(f"{name}={v!r} must be a non-negative number of milliseconds")
    if min_reps < 1:
        raise ValueError(f"min_reps={min_reps!r} must be >= 1")
    if mode == "cold" and (rotation is None or len(rotation) < 2):
        raise ValueError("cold mode needs at least two rotating copies of the operands (Kernel.rotation); "
                         f"got {0 if rotation is None else len(rotation)}")


def bench(fn, *, device: str = "cpu", mode: str = "cold", warmup_ms: float = 25.0, rep_ms: float = 100.0,
          min_reps: int = 10, max_reps: int = 100_000, rel_iqr_target: float = 0.02, cuda_graph: bool = False,
          rotation=None, rotation_bytes: int = 0, max_wall_s: float | None = None, region=None,
          warm: bool = False, warm_call_s: float | None = None) -> Timing:
    """Time ``fn()`` (hot) or the ``rotation`` callables in turn (cold); each call does the whole kernel.
    ``warm``: the kernel has run before (e.g. its correctness check), so no call is spent on initialisation;
    ``warm_call_s``: how long that call took (CPU: one well past the budget is refused without another,
    ``WARM_REFUSAL``; a long one that fits is the estimate, and no call is spent on one)."""
    _check(mode, warmup_ms, rep_ms, min_reps, rotation)
    fns = list(rotation) if mode == "cold" else [fn]
    if device == "cpu":
        if cuda_graph:
            raise ValueError("cuda_graph=True needs a CUDA device; got device='cpu'")
        timing = _bench_cpu(fns, warmup_ms, rep_ms, min_reps, max_reps, rel_iqr_target, max_wall_s, region, warm,
                            warm_call_s if warm else None)
    else:
        timing = _bench_cuda(fns, warmup_ms, rep_ms, min_reps, max_reps, rel_iqr_target, cuda_graph, max_wall_s,
                             region)
    return dataclasses.replace(timing, mode=mode, rotation_bytes=rotation_bytes if mode == "cold" else 0,
                               rotation_copies=len(fns))


def _refuse_if_over_budget(estimate_s, min_reps, max_wall_s, margin=1.0, seen="takes ~{:.3g} s"):
    """``BudgetExceeded`` where ``min_reps`` calls of ``estimate_s`` exceed ``margin`` x ``max_wall_s`` (``seen``: how
    the estimate was read)."""
    if max_wall_s is not None and estimate_s * min_reps > margin * max_wall_s:
        raise BudgetExceeded(f"one call {seen.format(estimate_s)}: {min_reps} samples need ~{estimate_s * min_reps:.3g} s, "
                             f"over the per-case budget of {max_wall_s:g} s", estimate_s)


class _Region:
    def __init__(self, region):
        self.region = region

    def __enter__(self):
        if self.region is not None:
            self.region.start()

    def __exit__(self, *exc):
        if self.region is not None:
            self.region.stop()
        return False


def _bench_cpu(fns, warmup_ms, rep_ms, min_reps, max_reps, target, max_wall_s, region, warm=False,
               warm_call_s: float | None = None) -> Timing:
    start_wall = time.perf_counter()
    if warm_call_s is not None:
        _refuse_if_over_budget(warm_call_s, min_reps, max_wall_s, WARM_REFUSAL, "took {:.3g} s (its correctness check's)")
    if not warm:
        fns[0]()  # first call: allocations, lazy init (the rotation's copies were paged in by cloning them)
    if (warm_call_s is not None and warm_call_s > LONG_CALL_S
            and (max_wall_s is None or warm_call_s * min_reps <= max_wall_s)):
        # a long call that fits, as the earlier one says: no call spent on another estimate (0.8 s a software bf16
        # GEMM); its setup can only overstate it, which warms up no less (none past a long call) and samples no
        # fewer (the span rule counts the samples' own time)
        estimate_s = warm_call_s
    else:
        t0 = time.perf_counter_ns()
        fns[1 % len(fns)]()
        estimate_s = max((time.perf_counter_ns() - t0) / 1e9, 1e-7)
    if estimate_s < 0.01:  # short calls: a steadier estimate from a few more
        t0 = time.perf_counter_ns()
        for i in range(3):
            fns[i % len(fns)]()
        estimate_s = max((time.perf_counter_ns() - t0) / 3 / 1e9, 1e-7)
    _refuse_if_over_budget(estimate_s, min_reps, max_wall_s)
    floor = reps_floor(min_reps, estimate_s)
    n_warmup = min(MAX_WARMUP, int(warmup_ms / 1e3 / estimate_s))  # 0 for a call longer than the warmup budget
    for i in range(n_warmup):
        fns[i % len(fns)]()

    times: list[float] = []
    spanned = 0.0
    converged = False
    next_check = floor  # geometric schedule: checking the spread stays O(n log n) for microsecond kernels
    with _Region(region):
        budget_end = time.perf_counter() + rep_ms / 1e3
        wall_end = start_wall + max_wall_s if max_wall_s is not None else float("inf")
        i = n_warmup
        while len(times) < max_reps:
            f = fns[i % len(fns)]
            i += 1
            t0 = time.perf_counter_ns()
            f()
            times.append((time.perf_counter_ns() - t0) * 1e-9)
            spanned += times[-1]
            n = len(times)
            if n < min_reps and not (n >= floor and spanned >= MIN_SPAN_S):  # a first call read long: min_reps rules
                continue
            if n >= next_check:
                next_check = int(n * 1.25) + 1
                if summarize(times).rel_iqr <= target:
                    converged = True
                    break
            now = time.perf_counter()
            if now > budget_end or now > wall_end:
                break
    result = summarize(times, "hot", "cpu", time.perf_counter() - start_wall, n_warmup)
    return dataclasses.replace(result, converged=converged or result.rel_iqr <= target)


def _bench_cuda(fns, warmup_ms, rep_ms, min_reps, max_reps, target, cuda_graph, max_wall_s, region) -> Timing:
    """do_bench's recipe: estimate, warm up, one event pair per call, one synchronize at the end."""
    import torch

    start_wall = time.perf_counter()
    for f in fns:
        f()
    torch.cuda.synchronize()
    if cuda_graph:
        fns = [_graphed(f, torch) for f in fns]
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for i in range(5):
        fns[i % len(fns)]()
    end.record()
    torch.cuda.synchronize()
    estimate_s = max(start.elapsed_time(end) / 5 / 1e3, 1e-7)
    _refuse_if_over_budget(estimate_s, min_reps, max_wall_s)
    min_reps = reps_floor(min_reps, estimate_s)
    n_warmup = min(MAX_WARMUP, max(1, int(warmup_ms / 1e3 / estimate_s)))
    n_repeat = min(max_reps, max(min_reps, int(rep_ms / 1e3 / estimate_s)))
    if max_wall_s is not None:  # what is left of the budget after the calls so far and the warmup (queued, not run yet)
        left = max_wall_s - (time.perf_counter() - start_wall) - n_warmup * estimate_s
        n_repeat = max(min_reps, min(n_repeat, int(left / estimate_s)))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n_repeat)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n_repeat)]
    for i in range(n_warmup):
        fns[i % len(fns)]()
    torch.cuda.synchronize()  # the warmup was only queued: it runs before the region starts, not inside it
    with _Region(region):
        for i, (s, e) in enumerate(zip(starts, ends)):
            f = fns[(n_warmup + i) % len(fns)]
            s.record()
            f()
            e.record()
        torch.cuda.synchronize()
    times = [s.elapsed_time(e) / 1e3 for s, e in zip(starts, ends)]
    result = summarize(times, "hot", "cuda", time.perf_counter() - start_wall, n_warmup, cuda_graph=cuda_graph)
    return dataclasses.replace(result, converged=result.rel_iqr <= target)


def _graphed(fn, torch):
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay
