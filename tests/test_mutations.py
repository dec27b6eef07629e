"""The suite catches the defects it exists for: each planted mutation (tests/mutations.py) must fail the
cases that guard against it, and with none planted the same slice must pass.

Runs a slice of the CPU suite in subprocesses at one thread (``SLICE_ENV``; two healthy runs first, which also
record this device's baseline in a private store and calibrate it), then one run per mutation, and
writes what each tripped to <report dir>/mutations.json. Heavy (~2-3 min): marked `mutation`, not `cpu`
(so `pytest -m cpu` stays a user's quick run), and part of the README's test command (CI runs it).
"""
import json
from pathlib import Path

import pytest

from roofline.reports import export
from roofline import load_calibration
from roofline.atomic import write_json_atomic
from roofline.efficiency import model_of
from roofline_kernels import selftest

GEMV = selftest.CASE
SLICE = {
    "int8": GEMV.format("int8"), "int8_bf16": GEMV.format("int8_bf16"), "int4": GEMV.format("int4_tinygemm_bf16"),
    "bf16": GEMV.format("bf16"), "cold_vs_hot": "tests/test_timer.py::test_cold_is_slower_than_hot_for_a_cache_resident_working_set",
}
# what must trip under each mutation (more may: the report says what did)
MUST_FAIL = {  # the slowdowns first: each case's history then holds the healthy runs alone (see SEED_RUNS)
    "slow_3x": {"int8", "int8_bf16", "int4", "bf16"},  # slower than this device's history by more than its band
    "slow_2x_int4_tinygemm_bf16": {"int4"},       # one precision 2x slower: its cases fail...
    "bytes_2x": {"int8", "int8_bf16"},           # stored bytes 2x what the model charges; and beats the roof
    "bytes_over_2x": {"int8", "int8_bf16"},      # stored bytes half what the model charges
    "int4_unpacked": {"int4"},                    # 16 bits stored behind a 4.25-bit label
    "wrong_values": {"int8", "int8_bf16", "int4", "bf16"},  # correctness, whatever the speed
    "hot_as_cold": {"cold_vs_hot"},               # a "cold" that is not colder than hot
}
# ... and only those: a slowdown planted in one precision must not fail another's cases.
# The precision slowed is int4 weight-only, not int8 W8A8 (as until stop 29): on a 2-core shared VM without VNNI the
# int8 GEMV is two threads of software int8 whose second vCPU the host takes away for seconds at a time (measured
# back to back: 5.5-10.6 ms with 2 threads, a steady 11-12 ms with one; across one CI's slices 5.7-9.1 ms), so a
# healthy run or two is no reference for a 2x claim there: a CI missed the planted 2x (11.9 ms against a 9.1 ms
# reference taken in a slow spell). The int4 GEMV ran 1.24-1.37 ms across the same slices (1.20-1.31, once 1.70,
# in a second run). For the same reason int8 is no case that must stay quiet here; its history says how much it can
# detect once it holds three runs (4.4x in that CI), and slow_3x still must trip it. (That was at two threads; the
# slices now run at one, SLICE_ENV below, where int8 holds still, but these choices stay as that history made them.)
MUST_PASS = {"slow_2x_int4_tinygemm_bf16": {"int8_bf16", "bf16"}}


# The slices run at one thread. At two, a 2-core shared VM's int8 GEMV (software int8, no VNNI) is two speeds: the
# host takes the second vCPU away for seconds at a time. 60 s of back-to-back calls there ran over 1.35x their
# fastest tenth 40% of the time, in spells of up to 3.5 s (one thread: 5% of the time, spells under 0.35 s), and a
# CI's last healthy slice failed int8 at 1.55x its history in every look, against a band its fast runs had made 25%.
# That is the host, not the suite; this test is about the suite, so it measures where the host holds still. The
# thread count is in the calibration's fingerprint: the first slice calibrates its own (quick) profile.
SLICE_ENV = {"OMP_NUM_THREADS": "1"}


def run_slice(store, report_dir, mutation=None, **kw):
    return selftest.run_slice(SLICE, store, report_dir, mutation, timeout_s=600, env=SLICE_ENV, **kw)


# A slowdown that pushes a case past the per-case time budget must fail as a regression, not skip as too slow to
# time: the slowed slice again under a budget no case fits (its history judges single calls), and the healthy one
# under it, which must only skip
TINY_BUDGET = ("--case-budget-s", "0.001")
OVER_BUDGET_MUST_FAIL = {"int8", "int8_bf16", "int4", "bf16"}


# Healthy runs before the mutations: the reference is the median of two runs, not one that a slow spell of a shared host
# may have measured alone (a CI missed a planted 2x int8 against such a run). Two, not RUNS_FOR_SPREAD: until three runs
# show a spread the band is the young history's 50% (or 3x the device's run-to-run spread near the shape where that is
# wider: on a host whose int4 GEMV runs lay over 33% sigma apart the planted 2x would not be claimed, and the case's
# record would say its smallest detectable slowdown is 2x); three runs' spread at its 95% bound is wider (runs 1.22,
# 1.31 and 1.70 ms of an int4 GEMV would give 2.3x), and honestly so, but then a 2x cannot be claimed. The slowdowns
# come first (MUST_FAIL), so their cases are compared with those two runs alone.
SEED_RUNS = 2


# the slice's measured cases and the efficiency model's path each one joins
MODEL_PATH = {"int8": "int8", "int8_bf16": "int8/bf16", "int4": "int4_tinygemm/bf16", "bf16": "bf16"}


def runs_learned(store) -> dict[str, tuple]:
    """The runs of each measured slice case's shape the store's efficiency model holds (its last ``REPEATS_KEPT``:
    a run added changes them even once the oldest is dropped)."""
    profiles = sorted(Path(store).glob("calibration-*.json"))
    assert len(profiles) == 1, profiles  # the slices' one thread count: one profile
    model = model_of(load_calibration(profiles[0]))
    shape = {"m": 1, "n": 4096, "k": 4096}
    return {name: tuple(e for p in model.points("gemv", prec) if p.shape == shape for e in p.efficiencies)
            for name, prec in MODEL_PATH.items()}


@pytest.mark.mutation
def test_each_planted_defect_is_caught_and_a_healthy_run_passes(device_info, tmp_path, request):
    if device_info.kind != "cpu":
        pytest.skip(f"the mutation slice measures the host CPU; the device under test is {device_info.hardware_key}")
    store = tmp_path / "store"
    store.mkdir()  # empty: the session's profile is of its own thread count, not SLICE_ENV's
    report_dir = Path(request.config.getoption("--roofline-report-dir")) / "mutations"
    healthy, proc = run_slice(store, tmp_path)
    # a healthy run fails nothing (the cache check may skip, naming the load that hides caches)
    assert all(v["outcome"] != "failed" for v in healthy.values()), (healthy, proc.stdout[-3000:])
    results = {"healthy": healthy}
    for i in range(1, SEED_RUNS):  # the history's further runs: healthy too, so no false alarm against the first
        seed, proc = run_slice(store, tmp_path)
        results[f"healthy_seed_{i + 1}"] = seed
        assert all(v["outcome"] != "failed" for v in seed.values()), (seed, proc.stdout[-3000:])
    missed = {}
    for mutation, must in MUST_FAIL.items():
        before = runs_learned(store)
        outcome, proc = run_slice(store, tmp_path, mutation)
        results[mutation] = outcome
        tripped = {k for k, v in outcome.items() if v["outcome"] == "failed"}
        wrongly = tripped & MUST_PASS.get(mutation, set())
        # a failed run teaches the device's efficiency model nothing (it had: one planted 2x int8 run moved the
        # expected time of every later healthy run toward the defect)
        learned = {k: f"{len(before[k])} runs -> {runs}" for k, runs in runs_learned(store).items()
                   if k in tripped and runs != before[k]}
        if not must <= tripped or wrongly or learned:
            missed[mutation] = {"missed": sorted(must - tripped), "failed without cause": sorted(wrongly),
                                "learned from a failed run": learned, "outcome": outcome, "log": proc.stdout[-2000:]}
    for tag, mutation, must in (("over_budget_slow_3x", "slow_3x", OVER_BUDGET_MUST_FAIL),
                                ("over_budget_healthy", None, set())):
        outcome, proc = run_slice(store, tmp_path, mutation, args=TINY_BUDGET, tag=tag)
        results[tag] = outcome
        tripped = {k for k, v in outcome.items() if v["outcome"] == "failed" and "not timed" in v["why"]}
        failed = {k for k, v in outcome.items() if v["outcome"] == "failed"}
        if tripped != must or failed != must:
            missed[tag] = {"missed": sorted(must - tripped), "failed without cause": sorted(failed - must),
                           "outcome": outcome, "log": proc.stdout[-2000:]}
    again, proc = run_slice(store, tmp_path)  # and nothing leaks between runs: healthy still passes
    results["healthy_again"] = again
    write_json_atomic(report_dir / "mutations.json", results)
    # every slice's export, healthy and planted (failed cases included), holds to the shipped schema
    written = {tag: tmp_path / tag / "measurements.json" for tag in ("healthy", *MUST_FAIL)}
    exports = {tag: export.problems(json.loads(f.read_text())) for tag, f in written.items() if f.exists()}
    assert "healthy" in exports and all(found == [] for found in exports.values()), exports
    summary = {m: sorted(k for k, v in o.items() if v["outcome"] == "failed") for m, o in results.items()}
    print("mutation -> cases tripped:", json.dumps(summary, indent=1))
    assert not missed, json.dumps(missed, indent=1)[:6000]
    assert all(v["outcome"] != "failed" for v in again.values()), (again, proc.stdout[-3000:])
