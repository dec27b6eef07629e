"""The simulated-device dry run (`pytest -m b10 --simulate gb10`) as users run it, in a subprocess.

- Each board's dry run ends with 0 errors and 0 failures, every skip with a reason, the report and the
  JSON marked SIMULATED, and nothing written to a benchmark history, a calibration store or a baseline.
- A planted fault fails the right case through the right check: a measurement above the roof (physics),
  a kernel far under its floor (efficiency), a wrong kernel result (correctness).
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from roofline.reports import export

ROOT = Path(__file__).resolve().parents[1]
CASE = "test_measured_case and gemv-1x4096x4096-bf16"

# Every skip each board's dry run may show, by its reason: the rule that refuses the kernel there (kernel.GEMM_RULES,
# with the upstream file), a path the device lacks, or a ratio reported for a named reason. Each is expected on its
# board, and nothing else is accepted.
INT_MM = "no int8 kernel on cuda: torch._int_mm on CUDA needs M > 16 and K, N divisible by 8"
SDPA = "no fp32 kernel on cuda: fp32 SDPA with grouped KV heads has no fused CUDA kernel"
RATIO = "reported, not enforced: int8/bf16 vs bf16 on {'m': 1, 'n': 11008, 'k': 4096}"
E5M2 = "no fp8_e5m2 kernel on cuda: cuBLASLt multiplies FP8 E5M2 only against E4M3"
EXPECTED_SKIPS = {
    "gb10": [E5M2, INT_MM, SDPA, RATIO, "no mxfp4 kernel on cuda: torch 2.13 runs MXFP4 GEMMs (F.scaled_mm, the "
             "mslk/FBGEMM-GenAI f4f4bf16 kernel built into PyTorch) only on sm_100/sm_103"],
    "h100_sxm": [E5M2, INT_MM, SDPA, RATIO,
                 "no nvfp4 kernel on cuda: NVFP4 GEMMs (torch._scaled_mm, cuBLAS block-scaled FP4) need Blackwell",
                 "no mxfp4 kernel on cuda: MXFP4 GEMMs need Blackwell FP4 tensor cores (sm_100/sm_103); sm_90 has none"],
    "jetson_orin_nano": [INT_MM, SDPA, RATIO,
                         "no fp8_e4m3 kernel on cuda: FP8 GEMMs (torch._scaled_mm) need sm_89+ (Ada, Hopper, "
                         "Blackwell); sm_87 has no FP8 tensor cores",
                         "no fp8_e5m2 kernel on cuda: FP8 GEMMs (torch._scaled_mm) need sm_89+",
                         "no nvfp4 kernel on cuda: NVFP4 GEMMs (torch._scaled_mm, cuBLAS block-scaled FP4) need Blackwell",
                         "no mxfp4 kernel on cuda: MXFP4 GEMMs need Blackwell FP4 tensor cores (sm_100/sm_103); sm_87 "
                         "has none"],
}


def dry_run(tmp_path, marker, key, *extra):
    store, reports = tmp_path / "store", tmp_path / "reports"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", marker, "--simulate", key,
           "--roofline-cache-dir", str(store), "--roofline-report-dir", str(reports),
           "--html", str(reports / "report.html"), "--self-contained-html",
           "--benchmark-autosave", f"--benchmark-storage=file://{tmp_path / 'history'}", "-rs", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    return proc, reports, store


@pytest.mark.parametrize("marker, key", [("b10", "gb10"), ("jetson", "jetson_orin_nano"), ("h100", "h100_sxm")])
def test_a_board_dry_run_passes_and_says_simulated(tmp_path, marker, key):
    proc, reports, store = dry_run(tmp_path, marker, key, "-k", "measured_case or precision_ratio")
    tail = proc.stdout[-4000:]
    assert proc.returncode == 0 and " error" not in tail and "failed" not in tail, tail
    data = json.loads((reports / "measurements.json").read_text())
    assert export.problems(data) == []  # the shipped schema holds for what the suite writes
    records = data["records"]
    assert data["SIMULATED"] == key and records and all(r["SIMULATED"] for r in records)
    assert all(r["outcome"] == "passed" for r in records)
    # the region monitor ran over the board's (fake) telemetry: NVML's energy counter, or a Jetson's VDD_IN
    assert all(r["energy_source"] and not r["energy_source"].startswith("none") for r in records
               if r["op"] != "ratio"), {r["energy_source"] for r in records}
    assert "SIMULATED" in (reports / "measurements.csv").read_text().splitlines()[0]
    assert f"SIMULATED device {key}" in (reports / "report.html").read_text()
    written = [p for p in (tmp_path / "history").rglob("*") if p.is_file()]  # pytest-benchmark makes the dir
    assert written == [] and not store.exists()  # no timing history, no profile, no baseline
    skips = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    for line in skips:  # every skip is one this board is expected to show, for its named reason
        assert any(reason in line for reason in EXPECTED_SKIPS[key]), line
    for reason in EXPECTED_SKIPS[key]:  # and each expected one is seen: the list cannot go stale
        assert any(reason in line for line in skips), (reason, skips)


@pytest.mark.parametrize("fault, check", [("above-roof", "physics"), ("below-floor", "efficiency"),
                                          ("wrong-result", "correctness")])
def test_a_planted_fault_fails_the_case_through_the_right_check(tmp_path, fault, check):
    proc, reports, _ = dry_run(tmp_path, "b10", "gb10", "--simulate-fault", fault, "-k", CASE)
    assert proc.returncode == 1, proc.stdout[-3000:]
    (rec,) = json.loads((reports / "measurements.json").read_text())["records"]
    failed = [c["name"] for c in rec["verdict"]["checks"] if c["enforced"] and not c["ok"]]
    assert rec["outcome"] == "failed" and failed == [check], rec["verdict"]


def test_an_unknown_device_is_a_usage_error(tmp_path):
    proc, _, _ = dry_run(tmp_path, "b10", "tpu_v9")
    assert proc.returncode == 4 and "unknown hardware 'tpu_v9'" in proc.stderr


def test_a_jetson_whose_torch_has_no_cuda_skips_every_measured_case_with_the_reason(tmp_path):
    proc, reports, _ = dry_run(tmp_path, "jetson", "jetson_orin_nano", "--simulate-torch-without-cuda",
                               "-k", "measured_case and gemv-1x4096x4096")
    assert proc.returncode == 0 and "passed" not in proc.stdout.splitlines()[-1], proc.stdout[-2000:]
    skips = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all("cannot measure on jetson_orin_nano" in s and "CUDA" in s for s in skips), skips


def test_a_jetson_in_a_lower_power_mode_is_held_to_that_modes_roof(tmp_path):
    """The 7W mode runs 4 of 8 SMs at 408 MHz: its compute roof is ~1/3 of 15W's (roofline.clocks)."""
    runs = {}
    for mode in ("15W", "7W"):
        proc, reports, _ = dry_run(tmp_path / mode, "jetson", "jetson_orin_nano", "--simulate-power-mode", mode,
                                   "-k", "measured_case and gemm-2048x4096x4096-bf16")
        assert proc.returncode == 0, proc.stdout[-2000:]
        (rec,) = json.loads((reports / "measurements.json").read_text())["records"]
        runs[mode] = rec
    assert runs["7W"]["hardware"].endswith("nvpmodel 7W") and runs["15W"]["hardware"].endswith("nvpmodel 15W")
    ratio = runs["7W"]["predicted_datasheet_s"] / runs["15W"]["predicted_datasheet_s"]
    assert ratio == pytest.approx((625 / 408) * (8 / 4), rel=1e-6)
