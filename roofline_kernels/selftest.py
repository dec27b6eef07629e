"""``python -m roofline selftest --runs N``: how well the suite's verdicts hold on this host, as a figure.

Runs a slice of the CPU suite (one 4096x4096 GEMV per precision) in a private profile store seeded with this
device's calibration (read, never written: the user's profiles and case histories stay as they were):
a first healthy run starts each case's history; then, N times, a healthy run (every failure in it is a false
alarm) and one run per slowdown factor with that slowdown planted in every precision's kernel
(``tests/mutations.py``: the call takes F times its own duration). A precision's slowdown counts as
caught in a run when its case fails the regression check.
The report gives the false alarms and, per precision, the smallest planted slowdown caught in every run.

The slice runs through pytest over the repository's ``tests/``, so this needs the checkout, not only the
installed packages. The same runner serves ``tests/test_mutations.py``.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
CASE = "tests/validation/test_roofline_cases.py::test_measured_case[cpu-gemv-1x4096x4096-{}]"
PRECISIONS = ("fp32", "bf16", "int8", "int8_bf16", "int4_tinygemm_bf16")


def checkout() -> Path:
    if not (ROOT / "tests" / "mutations.py").is_file():
        raise ValueError(f"selftest runs the repository's tests/ and needs the checkout; {ROOT / 'tests'} is not there")
    return ROOT


def run_slice(cases: dict[str, str], store, report_dir, mutation: str | None = None, timeout_s: float = 900,
              env: dict[str, str] | None = None, args: tuple[str, ...] = (), tag: str | None = None):
    """Run the given test ids ({name: node id}) in a subprocess on ``store``; ({name: outcome, why}, process).
    ``env``: variables set for the subprocess over this one's (e.g. ``OMP_NUM_THREADS``); ``args``: more pytest
    options (e.g. ``--case-budget-s``); ``tag``: the run's name in the report directory (default: the mutation)."""
    report_dir = Path(report_dir)
    tag = tag or mutation or "healthy"
    junit = report_dir / f"junit-{tag}.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.mutations",
           "--roofline-cache-dir", str(store), "--roofline-report-dir", str(report_dir / tag),
           "--html", str(report_dir / f"{tag}.html"), "--junitxml", str(junit), "--benchmark-disable",
           *args, *cases.values()]
    if mutation:
        cmd += ["--mutation", mutation]
    proc = subprocess.run(cmd, cwd=checkout(), capture_output=True, text=True, timeout=timeout_s,
                          env={**os.environ, **env} if env else None)
    outcome = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = next(k for k, v in cases.items() if v.endswith(case.get("name")))
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skipped = case.find("skipped") is not None
        outcome[name] = {"outcome": "failed" if bad is not None else "skipped" if skipped else "passed",
                         "why": bad.get("message", "")[:400] if bad is not None else ""}
    return outcome, proc


def seed_store(store: Path, source: Path) -> None:
    """The device's calibration profiles and DRAM ceiling, copied (never the case histories)."""
    store.mkdir(parents=True, exist_ok=True)
    for pattern in ("calibration-*.json", "dram-ceiling-*.json"):
        for f in glob.glob(str(source / pattern)):
            shutil.copy(f, store)


def summarize(results: list[dict], factors: tuple[float, ...], precisions: tuple[str, ...]) -> dict:
    """From the runs' outcomes: false alarms, and per precision which slowdowns were caught in how many runs."""
    healthy = [r for r in results if r["planted"] is None]
    alarms = [{"run": r["run"], "case": name, "why": o["why"]} for r in healthy
              for name, o in r["outcome"].items() if o["outcome"] == "failed"]
    per = {}
    for prec in precisions:
        row = {}
        for f in factors:
            runs = [r for r in results if r["planted"] == f and prec in r["outcome"]
                    and r["outcome"][prec]["outcome"] != "skipped"]
            caught = sum(1 for r in runs if r["outcome"][prec]["outcome"] == "failed"
                         and "regression" in r["outcome"][prec]["why"])
            row[f"{f:g}x"] = {"caught": caught, "runs": len(runs)}
        every = [f for f in factors if row[f"{f:g}x"]["runs"] and row[f"{f:g}x"]["caught"] == row[f"{f:g}x"]["runs"]]
        per[prec] = {"slowdowns": row, "smallest_caught_every_run": min(every) if every else None}
    cases = sum(1 for r in healthy for o in r["outcome"].values() if o["outcome"] != "skipped")
    return {"false_alarms": alarms, "healthy_cases": cases, "precisions": per}


def selftest(runs: int, factors: tuple[float, ...], source_store, precisions: tuple[str, ...] = PRECISIONS,
             progress: Callable[[str], None] = lambda s: None, runner=run_slice, keep_dir=None) -> dict:
    if runs < 1:
        raise ValueError(f"--runs must be at least 1; got {runs}")
    bad = [f for f in factors if not f > 1]
    if bad or not factors:
        raise ValueError(f"slowdown factors must be numbers above 1; got {', '.join(map(str, factors)) or 'none'}")
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown:
        raise ValueError(f"unknown precision {', '.join(unknown)}; allowed: {', '.join(PRECISIONS)}")
    cases = {p: CASE.format(p) for p in precisions}
    with tempfile.TemporaryDirectory(prefix="roofline-selftest-") as tmp:
        work = Path(keep_dir or tmp)
        store = work / "store"
        seed_store(store, Path(source_store))
        results = []
        outcome, _ = runner(cases, store, work / "first")
        progress(f"first run (starts each case's history): {_line(outcome)}")
        for i in range(1, runs + 1):
            outcome, _ = runner(cases, store, work / f"run{i}")
            results.append({"run": i, "planted": None, "outcome": outcome})
            progress(f"run {i} healthy: {_line(outcome)}")
            for f in factors:
                outcome, _ = runner(cases, store, work / f"run{i}", f"slow_{f:g}x_all")
                results.append({"run": i, "planted": f, "outcome": outcome})
                progress(f"run {i} with every kernel {f:g}x slower: {_line(outcome)}")
    return {"runs": runs, "factors": list(factors), **summarize(results, factors, precisions), "results": results}


def _line(outcome: dict) -> str:
    return ", ".join(f"{k} {v['outcome']}" for k, v in outcome.items())


def report_lines(summary: dict) -> list[str]:
    lines = [f"false alarms: {len(summary['false_alarms'])} of {summary['healthy_cases']} healthy cases over "
             f"{summary['runs']} run(s)"]
    lines += [f"  {a['case']} (run {a['run']}): {a['why'][:160]}" for a in summary["false_alarms"]]
    lines.append("precision            " + "  ".join(f"{f:g}x caught" for f in summary["factors"])
                 + "  smallest caught in every run")
    for prec, row in summary["precisions"].items():
        cells = "  ".join(f"{row['slowdowns'][f'{f:g}x']['caught']}/{row['slowdowns'][f'{f:g}x']['runs']:<9}"
                          for f in summary["factors"])
        best = row["smallest_caught_every_run"]
        lines.append(f"{prec:<20} {cells}  {f'{best:g}x' if best else 'none'}")
    return lines
