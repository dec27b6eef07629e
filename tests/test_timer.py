"""The timer: statistics, budgets, cold vs hot, bad arguments."""
import dataclasses
import time

import numpy as np
import pytest

from roofline_kernels.timer import (LONG_CALL_REPS, LONG_CALL_S, MAX_WARMUP, MIN_SPAN_S, BudgetExceeded, bench,
                                    reps_floor, sampled_enough, summarize)


def spin(ns):
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


def test_summary_statistics():
    t = summarize(np.arange(1, 101) * 1e-3, mode="hot", device="cpu", wall_s=0.0, warmup_count=0,
                  cuda_graph=False, converged=True)
    assert t.median_s == pytest.approx(50.5e-3) and t.p20_s == pytest.approx(20.8e-3)
    assert t.p80_s == pytest.approx(80.2e-3) and t.count == 100 and t.min_s == 1e-3
    assert t.rel_iqr == pytest.approx((75.25e-3 - 25.75e-3) / 50.5e-3)


def test_a_spin_of_known_length_is_timed_right():
    t = bench(lambda: spin(500_000), mode="hot", rep_ms=50)
    # a busy-wait cannot finish early; a preempted one runs late, and under load so may half of them: the bound
    # above is on the fastest sample (the timer's own overhead shows there), which host load cannot move
    assert 500e-6 <= t.min_s < 500e-6 * 1.2 and t.min_s <= t.median_s
    assert t.p20_s <= t.median_s <= t.p80_s and t.count >= 10 and t.device == "cpu"


def test_the_rep_budget_ends_the_loop_but_never_before_min_reps():
    t = bench(lambda: spin(2_000_000), mode="hot", warmup_ms=5, rep_ms=1, min_reps=12)
    assert t.count == 12  # the 1 ms budget was spent after one call: min_reps still rules
    t = bench(lambda: spin(1_000_000), mode="hot", warmup_ms=5, rep_ms=30, min_reps=10, rel_iqr_target=0)
    assert 10 <= t.count <= 31  # then the budget ends it: no call is shorter than 1 ms, so 30 ms hold 31 at most


def test_a_long_call_is_timed_over_a_span_not_a_count():
    # 0.21 s a call: 5 samples span over MIN_SPAN_S, so 5 (never below LONG_CALL_REPS), where min_reps asks 10
    assert LONG_CALL_S < 0.21 and LONG_CALL_REPS * 0.21 >= MIN_SPAN_S
    t = bench(lambda: spin(210_000_000), mode="hot", warmup_ms=0, rep_ms=1, min_reps=10, max_wall_s=2.5, warm=True)
    assert t.count == LONG_CALL_REPS
    # what is refused stays what min_reps cannot fit (a call too long to measure here at all), not the floor
    with pytest.raises(BudgetExceeded, match="10 samples"):
        bench(lambda: spin(210_000_000), mode="hot", min_reps=10, max_wall_s=1.6, warm=True)
    assert reps_floor(10, 0.05) == 10 and reps_floor(3, 0.5) == 3  # short calls, and a floor already lower: as asked
    assert reps_floor(10, 0.125) == 8  # 8 x 0.125 s span the 1 s
    assert reps_floor(10, 30.0) == LONG_CALL_REPS
    assert sampled_enough(t, 10) and not sampled_enough(dataclasses.replace(t, samples_s=(0.1,) * 5), 10)


def test_a_first_call_read_long_does_not_cut_the_samples_of_a_shorter_one():
    # the estimate (one call) reads 0.3 s, the calls after it take 0.05 s: 5 of them span 0.25 s, not MIN_SPAN_S,
    # so min_reps still rules
    calls = []

    def fn():
        spin(300_000_000 if not calls else 50_000_000)
        calls.append(1)
    t = bench(fn, mode="hot", warmup_ms=0, rep_ms=1, min_reps=10, warm=True)
    assert t.count == 10 and sampled_enough(t, 10)


def test_a_kernel_whose_samples_cannot_fit_the_case_budget_is_refused_after_two_calls():
    calls = []
    with pytest.raises(BudgetExceeded, match="over the per-case budget of 0.1 s"):
        bench(lambda: (calls.append(1), spin(50_000_000)), mode="hot", min_reps=10, max_wall_s=0.1)
    assert len(calls) == 2  # one to initialise, one to estimate from
    calls.clear()
    with pytest.raises(BudgetExceeded) as refused:  # the refusal carries the call it read: a history judges it
        bench(lambda: time.sleep(0.03), mode="hot", min_reps=10, max_wall_s=0.1)
    assert 0.03 <= refused.value.estimate_s < 0.1
    calls.clear()
    with pytest.raises(BudgetExceeded):
        bench(lambda: (calls.append(1), spin(50_000_000)), mode="hot", min_reps=10, max_wall_s=0.1, warm=True)
    assert len(calls) == 1  # already initialised (its correctness check ran it): the estimate alone


def test_a_call_the_correctness_check_saw_take_too_long_is_refused_without_another():
    """The check's call is a call: one that says ``min_reps`` samples lie beyond ``WARM_REFUSAL`` x the budget
    refuses the kernel before any call (not on CUDA, whose first call carries its setup); nearer the budget, or
    with no such call, one timed call decides, and a kernel that fits is timed as ever."""
    from roofline_kernels.timer import WARM_REFUSAL
    calls = []

    def fn():
        calls.append(1)
        spin(2_000_000)
    with pytest.raises(BudgetExceeded, match=r"took 3 s \(its correctness check's\): 10 samples need ~30 s"):
        bench(fn, mode="hot", min_reps=10, max_wall_s=20, warm=True, warm_call_s=3.0)
    assert not calls
    near = 0.99 * WARM_REFUSAL * 20 / 10  # its first call may have carried setup: the 2 ms calls now fit
    t = bench(fn, mode="hot", min_reps=10, max_wall_s=20, warm=True, warm_call_s=near, rep_ms=5)
    assert len(calls) > t.count >= 10  # timed, after an estimate of its own
    calls.clear()
    t = bench(fn, mode="hot", min_reps=10, max_wall_s=20, warm=False, warm_call_s=3.0, rep_ms=5)  # not warm: not
    assert len(calls) > t.count >= 10                                                           # its call


def test_a_long_call_the_correctness_check_timed_spends_no_call_on_an_estimate(monkeypatch):
    """Past ``LONG_CALL_S`` the check's call is the estimate: every call after it is a sample (a software bf16 GEMM
    at 0.8 s a call saved one). One read long (its setup) still gets samples spanning ``MIN_SPAN_S`` of the calls'
    own time, and a short call that the check read long gets its ``min_reps``. (The thresholds scaled down 5x: the
    same rules in a fifth of the time.)"""
    import roofline_kernels.timer as timer
    monkeypatch.setattr(timer, "LONG_CALL_S", 0.02)
    monkeypatch.setattr(timer, "MIN_SPAN_S", 0.2)
    calls = []

    def fn():
        calls.append(1)
        spin(25_000_000)
    for read in (0.025, 0.1):
        calls.clear()
        t = bench(fn, mode="hot", warmup_ms=0, rep_ms=1, min_reps=10, max_wall_s=20, warm=True, warm_call_s=read)
        assert len(calls) == t.count and t.count >= LONG_CALL_REPS and sum(t.samples_s) >= 0.2, (read, len(calls), t.count)
    calls.clear()

    def short():
        calls.append(1)
        spin(1_000_000)
    t = bench(short, mode="hot", warmup_ms=0, rep_ms=1, min_reps=10, max_wall_s=20, warm=True, warm_call_s=0.1)
    assert t.count == 10 and len(calls) == t.count, (len(calls), t.count)  # 1 ms calls: ten samples


def test_warmup_is_capped():
    calls = []
    t = bench(lambda: calls.append(1), mode="hot", warmup_ms=10_000, rep_ms=1, min_reps=10)
    assert t.warmup_count == MAX_WARMUP and len(calls) < MAX_WARMUP + 10_000


def test_cold_mode_cycles_through_the_rotation_and_needs_one():
    seen = []
    fns = [lambda i=i: seen.append(i) for i in range(3)]
    t = bench(None, mode="cold", rotation=fns, rotation_bytes=123, rep_ms=5, min_reps=10)
    assert set(seen) == {0, 1, 2} and t.rotation_copies == 3 and t.rotation_bytes == 123 and t.mode == "cold"
    with pytest.raises(ValueError, match="cold mode needs at least two rotating copies"):
        bench(lambda: None, mode="cold")


def test_region_brackets_the_timed_calls_only():
    events = []

    class Region:
        def start(self):
            events.append("start")

        def stop(self):
            events.append("stop")

    t = bench(lambda: events.append("call"), mode="hot", warmup_ms=1, rep_ms=1, min_reps=10, region=Region())
    first, last = events.index("start"), events.index("stop")
    assert events[first + 1:last].count("call") == t.count and events[:first].count("call") >= 1


def test_spread_settles_early_for_a_steady_kernel():
    t = bench(lambda: spin(200_000), mode="hot", rep_ms=2000, rel_iqr_target=0.5)
    # settled: the spread ended the loop long before the 2 s budget would have (it holds 2 s / median calls; a run
    # the budget ended has about that many); counted in calls at this run's own median, not in wall time, which
    # host load could stretch while the timer behaves
    assert t.converged and t.count < 0.5 * 2.0 / t.median_s


@pytest.mark.cpu
def test_cold_is_slower_than_hot_for_a_cache_resident_working_set(device_info):
    """Rotation must evict: a read that fits the detected caches is served by them when hot, and must come
    from DRAM when the kernel cycles through copies spanning twice the caches (sizes from detection).

    1. Structure (deterministic): every call of the rotation reads its own copy, and the copies span 2x the caches.
    2. Timing: hot and cold calls alternate, so a neighbour's load falls on both alike; the claim is the
       statistics' (cold samples larger, Mann-Whitney p < 0.001, by at least 10%), tried twice. A host whose
       caches a neighbour thrashes right now shows no cache benefit at all: said in a skip, after (1) held."""
    import statistics
    import time
    import torch
    from roofline_kernels.measure import cache_bytes
    from roofline_kernels.ops import Kernel
    from roofline import elementwise
    from roofline.regress import mann_whitney_greater
    n = max(2**16, cache_bytes(device_info) // 4 // 4)  # a quarter of the caches
    x = torch.rand(n)
    read = []
    k = Kernel("read", "fp32", "cpu", lambda i: (read.append(i["x"].data_ptr()), i["x"].sum())[1], {"x": x},
               lambda: x.sum(), elementwise(n, "fp32"), "sum")
    rotation, spanned = k.rotation(2 * cache_bytes(device_info), 2**34)
    for f in rotation:  # also warms every copy: first-touch costs are not what is compared below
        f()
    assert len(set(read)) == len(rotation) >= 2 and spanned >= 2 * cache_bytes(device_info), (
        f"the rotation's {len(rotation)} calls read {len(set(read))} distinct copies spanning {spanned} bytes")
    seen = []
    for attempt in range(2):
        hot, cold = [], []
        for i in range(40):
            for samples, f in ((hot, k.fn), (cold, rotation[i % len(rotation)])):
                t0 = time.perf_counter_ns()
                f()
                samples.append(time.perf_counter_ns() - t0)
        p, ratio = mann_whitney_greater(cold, hot), statistics.median(cold) / statistics.median(hot)
        if p < 1e-3 and ratio > 1.1:
            return
        seen.append(f"p={p:.2g}, cold/hot {ratio:.2f}")
    pytest.skip(f"no cache benefit observable now ({'; '.join(seen)}): hot reads of a quarter of the caches ran as "
                "slowly as cold ones, i.e. a neighbour thrashes the caches; the rotation's structure was checked")


@pytest.mark.parametrize("kwargs, msg", [(dict(mode="warm"), "unknown timing mode 'warm'"),
                                         (dict(rep_ms=-1), "rep_ms"), (dict(warmup_ms=float("nan")), "warmup_ms"),
                                         (dict(min_reps=0), "min_reps"),
                                         (dict(mode="hot", cuda_graph=True), "needs a CUDA")])
def test_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        bench(lambda: None, **kwargs)


def test_the_cuda_timer_runs_its_recipe_on_fake_events(monkeypatch):
    """do_bench's recipe (estimate, capped warmup, one event pair per call, rotation, region around the timed
    calls, the budget) executed with fake CUDA events: the path a GPU takes, run here."""
    from tests.fakes.cuda import install_fake_cuda_events
    install_fake_cuda_events(monkeypatch)
    seen, events = [], []

    class Region:
        def start(self):
            events.append(("start", len(seen)))

        def stop(self):
            events.append(("stop", len(seen)))

    fns = [lambda i=i: (seen.append(i), spin(200_000)) for i in range(3)]
    t = bench(None, device="cuda", mode="cold", rotation=fns, rotation_bytes=99, rep_ms=5, min_reps=10,
              warmup_ms=1, region=Region())
    assert t.device == "cuda" and t.mode == "cold" and t.rotation_copies == 3 and t.count >= 10
    # spin waits on the wall clock: no sample is shorter; a preempted one may be longer, so the bound above is
    # on the fastest sample, which host load cannot move
    assert 200e-6 <= t.min_s and t.min_s < 200e-6 * 1.5 and set(seen) == {0, 1, 2}
    (_, began), (_, ended) = events
    assert ended - began == t.count  # the region holds exactly the timed calls
    with pytest.raises(BudgetExceeded):
        bench(lambda: spin(20_000_000), device="cuda", mode="hot", min_reps=10, max_wall_s=0.1)
    clamped = bench(lambda: spin(1_000_000), device="cuda", mode="hot", rep_ms=1000, min_reps=10, max_wall_s=0.05)
    # the budget caps the repeats, warmup included: at 1 ms a call, 50 ms hold at most 50 calls in all (load only
    # lengthens the estimate, so never more); a wall-clock bound on the run itself would flip with host load
    assert 10 <= clamped.count <= 50 - clamped.warmup_count
    # a budget that holds 14 calls as this host runs them now (load lengthens them): after the 5-call estimate
    # too little is left for 10 more, so the timer must still take its minimum of 10. A burst of load between
    # sizing the budget and the timer's own estimate makes it refuse instead: sized again, up to 3 times.
    import statistics
    floor = None
    for _ in range(3):
        now = []
        for _ in range(5):
            t0 = time.perf_counter()
            spin(1_000_000)
            now.append(time.perf_counter() - t0)
        try:
            floor = bench(lambda: spin(1_000_000), device="cuda", mode="hot", warmup_ms=0, rep_ms=1000, min_reps=10,
                          max_wall_s=14 * statistics.median(now))
            break
        except BudgetExceeded:
            continue
    if floor is None:
        pytest.skip("the host's load moved between sizing a budget and the timer's estimate, three times")
    assert 10 <= floor.count <= 14  # never below min_reps, even when the budget is nearly spent


def test_the_cuda_timer_times_a_long_call_over_a_span_too(monkeypatch):
    import roofline_kernels.timer as timer
    from tests.fakes.cuda import install_fake_cuda_events
    stream = install_fake_cuda_events(monkeypatch)
    # the constants scaled 20x down, so a 10 ms fake kernel is a long call: 5 samples (the floor) where 10 were asked
    monkeypatch.setattr(timer, "LONG_CALL_S", 0.005)
    monkeypatch.setattr(timer, "MIN_SPAN_S", 0.03)
    t = bench(stream.kernel(10e-3), device="cuda", mode="hot", warmup_ms=0, rep_ms=1, min_reps=10, max_wall_s=0.25)
    assert t.count == LONG_CALL_REPS


def test_the_cuda_region_starts_after_the_queued_warmup_has_run(monkeypatch):
    """Launches return at once: the warmup calls are only queued when the loop over them ends. Without a synchronize
    before the region starts, up to warmup_ms of warmup work ran inside the telemetry and energy window."""
    from tests.fakes.cuda import install_fake_cuda_events
    stream = install_fake_cuda_events(monkeypatch)
    pending = []

    class Region:
        def start(self):
            pending.append(stream.pending_s())

        def stop(self):
            pending.append(stream.pending_s())

    t = bench(stream.kernel(1e-3), device="cuda", mode="hot", warmup_ms=25, rep_ms=5, min_reps=10, region=Region())
    assert t.warmup_count >= 20  # ~25 ms of warmup was queued
    assert pending == [0.0, 0.0]  # the region began with the queue drained and ended after its own calls ran
    assert 1e-3 <= t.median_s < 1.5e-3  # the events time the device work, not the host's launches
