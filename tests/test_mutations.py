"""The suite catches the defects it exists for: each planted mutation (tests/mutations.py) must fail the
cases that guard against it, and with none planted the same slice must pass.

Runs a slice of the CPU suite in subprocesses (a healthy run first, which also records this device's
baseline in a private store seeded with the session's calibration), then one run per mutation, and
writes what each tripped to <report dir>/mutations.json. Heavy (~1-2 min): marked `mutation`, not `cpu`
(so `pytest -m cpu` stays a user's quick run), and part of the README's test command (CI runs it).
"""
import json
import shutil
from pathlib import Path

import pytest

from roofline.reports import export
from roofline.atomic import write_json_atomic
from roofline_kernels import selftest

GEMV = selftest.CASE
SLICE = {
    "int8": GEMV.format("int8"), "int8_bf16": GEMV.format("int8_bf16"), "int4": GEMV.format("int4_tinygemm_bf16"),
    "bf16": GEMV.format("bf16"), "cold_vs_hot": "tests/test_timer.py::test_cold_is_slower_than_hot_for_a_cache_resident_working_set",
}
# what must trip under each mutation (more may: the report says what did)
MUST_FAIL = {
    "bytes_2x": {"int8", "int8_bf16"},           # stored bytes 2x what the model charges; and beats the roof
    "bytes_over_2x": {"int8", "int8_bf16"},      # stored bytes half what the model charges
    "int4_unpacked": {"int4"},                    # 16 bits stored behind a 4.25-bit label
    "slow_3x": {"int8", "int8_bf16", "int4", "bf16"},  # slower than this device's history by more than its band
    "slow_2x_int8": {"int8"},                     # one precision 2x slower: its cases fail...
    "wrong_values": {"int8", "int8_bf16", "int4", "bf16"},  # correctness, whatever the speed
    "hot_as_cold": {"cold_vs_hot"},               # a "cold" that is not colder than hot
}
# ... and only those: a slowdown planted in one precision must not fail another's cases
MUST_PASS = {"slow_2x_int8": {"int8_bf16", "int4", "bf16"}}


def run_slice(store, report_dir, mutation=None):
    return selftest.run_slice(SLICE, store, report_dir, mutation, timeout_s=600)


@pytest.mark.mutation
def test_each_planted_defect_is_caught_and_a_healthy_run_passes(device_info, calibration, tmp_path, request):
    if device_info.kind != "cpu":
        pytest.skip(f"the mutation slice measures the host CPU; the device under test is {device_info.hardware_key}")
    store = tmp_path / "store"
    store.mkdir()
    shutil.copy(calibration.path, store / Path(calibration.path).name)  # the session's profile: no recalibration
    report_dir = Path(request.config.getoption("--roofline-report-dir")) / "mutations"
    healthy, proc = run_slice(store, tmp_path)
    # a healthy run fails nothing (the cache check may skip, naming the load that hides caches)
    assert all(v["outcome"] != "failed" for v in healthy.values()), (healthy, proc.stdout[-3000:])
    results = {"healthy": healthy}
    missed = {}
    for mutation, must in MUST_FAIL.items():
        outcome, proc = run_slice(store, tmp_path, mutation)
        results[mutation] = outcome
        tripped = {k for k, v in outcome.items() if v["outcome"] == "failed"}
        wrongly = tripped & MUST_PASS.get(mutation, set())
        if not must <= tripped or wrongly:
            missed[mutation] = {"missed": sorted(must - tripped), "failed without cause": sorted(wrongly),
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
