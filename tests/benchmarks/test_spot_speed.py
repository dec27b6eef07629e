"""How long the spot check of a 4096x4096 GEMV across every precision takes on this device.

Targets (issue 14): <= 15 s on a 2-core CPU with a cached calibration, <= 5 s for five precisions on a GPU.
A benchmark, not a timed test: the wall time and its ratio to the target go into pytest-benchmark's
extra_info and are printed (`pytest tests/benchmarks/test_spot_speed.py -s`); nothing asserts on time.
What is asserted is that the run is whole: every precision reported, every one that ran measured.
"""
import time

from roofline_kernels.spot import resolve_precisions, spot_check
from roofline_kernels.timer import sampled_enough

TARGET_S = {"cpu": 15.0, "cuda": 5.0}


def test_spot_check_of_a_4096_gemv(benchmark, device_info, hardware_entry, calibration):
    precisions = resolve_precisions("gemv", "all")
    reports = []

    def once():
        t0 = time.perf_counter()
        reports.append(spot_check("gemv", {"n": 4096, "k": 4096}, precisions, device_info, hardware_entry,
                                  "calibrated"))
        return time.perf_counter() - t0

    wall = benchmark.pedantic(once, rounds=1, iterations=1)
    rep = reports[-1]
    ran = [r for r in rep.results if r.ok]
    target = TARGET_S["cpu" if device_info.kind == "cpu" else "cuda"]
    benchmark.extra_info.update({"wall_s": wall, "target_s": target, "precisions_run": len(ran),
                                 "per_precision_s": {r.precision: round(r.seconds, 3) for r in rep.results}})
    print(f"\nspot check gemv 4096x4096 on {device_info.name}: {wall:.1f} s for {len(ran)} precisions run "
          f"({len(rep.results) - len(ran)} reported without running); {wall / target:.2f}x the {target:g} s target")
    assert [r.precision for r in rep.results] == [p for p, _ in precisions] and rep.interrupted is None
    assert ran and all(sampled_enough(r.measurement.timing, 10) for r in ran)
