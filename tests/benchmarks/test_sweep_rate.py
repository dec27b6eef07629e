"""Vectorised sweep throughput (target: >= 1e6 predictions/s on one core).

A benchmark, not a timed test: the rate goes into pytest-benchmark's extra_info and history
(`pytest tests/benchmarks --benchmark-only`), and nothing asserts on time on a shared host.
"""
import numpy as np

from roofline import gemm, predict, sweep_gemm

N = 1_000_000


def test_sweep_gemm_rate(benchmark):
    rng = np.random.default_rng(0)
    m, n, k = (rng.integers(1, 16384, N) for _ in range(3))
    result = benchmark(sweep_gemm, m, n, k, "gb10", "fp16")
    rate = N / benchmark.stats["median"] if benchmark.stats else float("nan")
    benchmark.extra_info.update({"predictions": N, "predictions_per_s": rate})
    print(f"\nsweep_gemm: {rate:.3g} predictions/s ({N} shapes, median of {benchmark.stats['rounds']} rounds)")
    # the fast path must still be the right answer
    for i in (0, N // 2, N - 1):
        assert result["time_s"][i] == predict(gemm(int(m[i]), int(n[i]), int(k[i]), "fp16"), "gb10").time_s
