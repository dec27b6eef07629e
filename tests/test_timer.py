"""The timer: statistics, budgets, cold vs hot, bad arguments."""
import time

import numpy as np
import pytest

from kernels.timer import bench, summarize


def spin(ns):
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


def test_summary_statistics():
    t = summarize(np.arange(1, 101) * 1e-3, mode="hot", device="cpu", wall_s=0.0, warmup_count=0, flush_bytes=0,
                  cuda_graph=False, converged=True)
    assert t.median_s == pytest.approx(50.5e-3) and t.p20_s == pytest.approx(20.8e-3)
    assert t.p80_s == pytest.approx(80.2e-3) and t.count == 100 and t.min_s == 1e-3
    assert t.rel_iqr == pytest.approx((75.25e-3 - 25.75e-3) / 50.5e-3)


def test_a_spin_of_known_length_is_timed_right():
    t = bench(lambda: spin(500_000), mode="hot", rep_ms=50)
    # a busy-wait cannot finish early; a preempted one runs late, which the median shrugs off
    assert 500e-6 <= t.median_s < 500e-6 * 1.2
    assert t.p20_s <= t.median_s <= t.p80_s and t.count >= 10 and t.device == "cpu"


def test_budget_bounds_the_wall_time():
    t = bench(lambda: spin(2_000_000), mode="hot", warmup_ms=5, rep_ms=30, min_reps=1000)
    assert t.count < 1000 and t.wall_s < 0.5  # the budget ended the loop, not min_reps


def test_spread_settles_early_for_a_steady_kernel():
    t = bench(lambda: spin(200_000), mode="hot", rep_ms=2000, rel_iqr_target=0.5)
    assert t.converged and t.wall_s < 1.0


@pytest.mark.cpu
def test_cold_is_slower_than_hot_for_a_cache_resident_working_set():
    """The flush must evict: an 8 MB read served from L3 when hot must come from DRAM when cold."""
    import torch
    x = torch.ones(2 * 2**20)  # 8 MB: inside this CPU's last-level cache
    hot = bench(lambda: x.sum(), mode="hot", rep_ms=100)
    cold = bench(lambda: x.sum(), mode="cold", rep_ms=200)
    assert cold.flush_bytes > 0 and hot.flush_bytes == 0
    assert cold.median_s > 1.2 * hot.median_s, (cold.median_s, hot.median_s)


@pytest.mark.parametrize("kwargs, msg", [(dict(mode="warm"), "unknown timing mode 'warm'"),
                                         (dict(rep_ms=-1), "rep_ms"), (dict(warmup_ms=float("nan")), "warmup_ms"),
                                         (dict(min_reps=0), "min_reps"), (dict(cuda_graph=True), "needs a CUDA")])
def test_bad_arguments(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        bench(lambda: None, **kwargs)
