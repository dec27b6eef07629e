"""Our timer against torch.utils.benchmark.Timer on the same CPU kernel.

Like with like: torch's Timer reports the median of block means (``number_per_run`` calls a block), so our
single-call samples are folded into blocks of the same size before their median is taken (comparing our
median of single calls with torch's median of block means failed 3 runs in 4 on a noisy host, at 0.90-0.94:
two statistics, not two timers). The ratio must sit within the spread the pairs themselves show (never
tighter than 5%); the ratio and both wall times go into the benchmark's extra_info.
Run: `pytest tests/benchmarks -s` to see them.
"""
import statistics
import time

import pytest

from roofline.regress import robust_sigma
from roofline_kernels.timer import bench

pytestmark = pytest.mark.cpu
PAIRS = 9


def test_median_agrees_with_torch_utils_benchmark(benchmark):
    import torch
    import torch.utils.benchmark as tb

    # A cache-resident compute-bound GEMM: memory contention from other tenants cannot move it, so
    # what is compared is the timers, not the host (a 16 MB GEMV wobbled +-8% between runs here).
    A = torch.randn(512, 512)

    def kernel():
        return A @ A

    # Both timers on ONE thread (torch's Timer's default; ours times what torch is set to, so it is set to 1 for
    # the comparison). At two threads a 2-core VM that takes a vCPU away for 0.4-2 s at a time stalls every call
    # of a parallel GEMM in the spell: pairs in the full suite read 1.17, 0.87, 1.16, 1.17, 0.96, whose median
    # (1.16) failed while their MAD said 1% spread. One thread on a core of its own is what such a spell moves least.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    # Alternate the two timers and compare each adjacent pair: drift of this shared host (seen: 12% within
    # a second) then hits both sides of a pair; the median over pairs shrugs off a burst during one pair.
    ours_runs, torch_runs, torch_walls = [], [], []
    try:
        for _ in range(PAIRS):
            ours_runs.append(bench(kernel, mode="hot", warmup_ms=10, rep_ms=60))
            t0 = time.perf_counter()
            torch_runs.append(tb.Timer("kernel()", globals={"kernel": kernel}, num_threads=1).blocked_autorange(
                min_run_time=0.1))
            torch_walls.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    # the history tracks the kernel (a stable compute-bound GEMM), not the adaptive timer's wall time
    benchmark.pedantic(kernel, rounds=20, warmup_rounds=3)
    ours_median = statistics.median(t.median_s for t in ours_runs)
    torch_median = statistics.median(m.median for m in torch_runs)
    ours_wall, torch_wall = statistics.median(t.wall_s for t in ours_runs), statistics.median(torch_walls)
    ratios = [block_median(o.samples_s, t.number_per_run) / t.median for o, t in zip(ours_runs, torch_runs)]
    ratio = statistics.median(ratios)
    allowed = max(0.05, 3 * robust_sigma(ratios))  # the pairs' own spread, measured in this run
    benchmark.extra_info.update({"ours_median_s": ours_median, "torch_median_s": torch_median, "ratio": ratio,
                                 "pair_ratios": ratios, "allowed": allowed,
                                 "ours_wall_s": ours_wall, "torch_wall_s": torch_wall})
    print(f"\ntimer vs torch.utils.benchmark: median ratio {ratio:.3f} "
          f"(ours {ours_median * 1e6:.1f} us in {ours_wall:.2f} s wall, "
          f"torch {torch_median * 1e6:.1f} us in {torch_wall:.2f} s wall; median of {PAIRS} adjacent pairs; "
          f"allowed +-{allowed:.1%} from the pairs' spread)")
    assert abs(ratio - 1) <= allowed, (ratio, ratios, allowed)


def block_median(samples, block: int) -> float:
    """The median of the means of consecutive blocks of ``block`` samples: torch's Timer's statistic."""
    block = max(1, int(block))
    means = [statistics.fmean(samples[i:i + block]) for i in range(0, len(samples) - block + 1, block)]
    return statistics.median(means or [statistics.fmean(samples)])


def test_block_median_is_torchs_statistic():
    assert block_median([1, 3, 2, 2, 10, 10], 2) == 2.0  # blocks 2, 2, 10
    assert block_median([1, 2, 3], 1) == 2
