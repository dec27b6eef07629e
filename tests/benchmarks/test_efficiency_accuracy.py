"""How well the fitted efficiency model predicts shapes it never saw, against the bound alone.

A benchmark, not a timed test: a short sweep (``SWEEP_BUDGET_S``) fits the model, shapes off its grid
are measured, and the geomean and worst error per precision (expected time and bound) go into
pytest-benchmark's extra_info and are printed (`pytest tests/benchmarks/test_efficiency_accuracy.py -s`).
The full figure comes from `python -m roofline calibrate --score` (a 90 s sweep, three held-out passes).
Nothing asserts on accuracy here: a shared host's noise would make that a test of the neighbours. What is
asserted is that the scoring is whole: every precision swept is scored on held-out shapes, each of which is
either predicted or counted as "not measured near", and the host's run-to-run spread is reported beside it.
"""
import math

from roofline_kernels.efficiency import HELD_OUT, measure_held_out, run_sweep, sweep_precisions
from roofline.efficiency import score

SWEEP_BUDGET_S = 20.0


def test_efficiency_model_on_unseen_shapes(benchmark, device_info, hardware_entry, calibration):
    precisions = sweep_precisions(device_info, hardware_entry)
    result = {}

    def once():
        model, _ = run_sweep(device_info, hardware_entry, precisions=precisions, budget_s=SWEEP_BUDGET_S)
        held = measure_held_out(model, device_info, hardware_entry, precisions, shapes=HELD_OUT[::2], passes=2)
        result.update(score=score(model, held), measured=model.meta["measured"])

    benchmark.pedantic(once, rounds=1, iterations=1)
    s = result["score"]
    lines = []
    for prec, tests in s.items():
        held = tests.get("held_out")
        assert held and held["bound"]["n"] >= 1, f"{prec}: nothing held out was measured"
        e, b, r = held["expected"], held["bound"], held["run_to_run"]
        assert (e["n"] if e else 0) + held["not_near"] == b["n"], f"{prec}: a held-out shape neither predicted nor " \
            "said to be not measured near"
        noise = f", two runs {r['geomean']:.1%} apart" if r else ""
        lines.append(f"{prec}: expected {e['geomean']:.1%} (worst {e['worst']:.0%}) vs bound {b['geomean']:.1%} "
                     f"(worst {b['worst']:.0%}) on {e['n']} unseen shapes, {held['not_near']} not near{noise}"
                     if e else f"{prec}: all {b['n']} unseen shapes not measured near (bound {b['geomean']:.1%})")
        benchmark.extra_info[prec] = {"expected_geomean": e and e["geomean"], "bound_geomean": b["geomean"],
                                      "expected_worst": e and e["worst"], "bound_worst": b["worst"], "n": b["n"],
                                      "not_near": held["not_near"], "run_to_run_geomean": r and r["geomean"]}
    geo = [t["held_out"]["expected"]["geomean"] for t in s.values() if t.get("held_out", {}).get("expected")]
    if geo:
        benchmark.extra_info["expected_geomean_all"] = math.exp(sum(math.log1p(g) for g in geo) / len(geo)) - 1
    print(f"\nefficiency model on {device_info.name} ({result['measured']} sweep shapes in {SWEEP_BUDGET_S:g} s):\n  "
          + "\n  ".join(lines))
    assert {f"attention:{kw['precision']}" if kw.get("op") == "attention" else f"gemm:{p}"
            for p, kw in precisions} <= set(s), "every path swept is scored"
