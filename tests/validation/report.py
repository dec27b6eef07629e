"""pytest plugin: report extras, environment table, timing-history machine info, JSON/CSV exports.

- A case fills its ``roofline_record`` (a dict); one ``pytest_runtest_makereport`` hookwrapper turns
  it into pytest-html extras: the predicted-vs-measured table and its roofline as inline SVG (no file,
  no network: ``--self-contained-html`` holds and an archived report opens offline).
- ``pytest_metadata`` fills the report's environment table (device, clocks, power mode, driver,
  versions); the calibration used is added when the session ends.
- ``pytest_html_results_summary`` adds the session roofline: every measured case as a focusable point
  (hover or focus shows case, shape, measured vs expected vs bound, efficiency), datasheet and
  calibrated roofs, a checkbox per precision, failing cases ringed (``roofline.reports.runs``, ``roofline.reports.svg``),
  and the trend of this device's timing history with its regression gate (``roofline.reports.history``).
- Every record is exported as JSON and CSV in the report dir, written atomically.
"""
from __future__ import annotations

import csv
import datetime as dt
import html
import io
from pathlib import Path

import pytest

from roofline.reports import runs
from roofline.atomic import write_atomic, write_json_atomic
from roofline.reports.svg import figure_block, roofline_svg

RECORD_KEY = pytest.StashKey[dict]()
SESSION_KEY = pytest.StashKey[dict]()
CSV_FIELDS = ["id", "outcome", "SIMULATED", "hardware", "device", "op", "shape", "precision", "path", "emulated", "mode",
              "median_s", "p20_s", "p80_s", "count", "rel_iqr", "flops", "bytes", "ai", "bound",
              "predicted_time_s", "efficiency", "expected_time_s", "expected_uncertainty", "expected_source", "predicted_datasheet_s",
              "efficiency_datasheet", "achieved_gbs", "achieved_tflops", "floor", "floor_source", "ceiling", "ceiling_s",
              "detectable_slowdown", "correctness_error", "stored_bits", "energy_j", "energy_source", "contention", "verdict", "note"]


def pytest_addoption(parser):
    parser.getgroup("roofline").addoption("--roofline-report-dir", default="reports",
                                          help="where measurements.json/.csv go (default reports/)")


def pytest_configure(config):
    config.stash[SESSION_KEY] = {"records": [], "calibration": None}


@pytest.fixture
def roofline_record(request):
    """A dict the case fills; it becomes the case's report extras and a row of the session export."""
    rec: dict = {}
    request.node.stash[RECORD_KEY] = rec
    return rec


def note_calibration(config, cal) -> None:
    config.stash[SESSION_KEY]["calibration"] = cal


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    rec = item.stash.get(RECORD_KEY, None)
    if not rec or report.when != "call":
        return
    rec.update(id=item.nodeid, outcome=report.outcome)
    item.config.stash[SESSION_KEY]["records"].append(rec)
    try:
        from pytest_html import extras
    except ImportError:
        return
    report.extras = getattr(report, "extras", []) + [extras.html(_table(rec))]
    if runs.measured([rec]):
        report.extras.append(extras.html(roofline_svg(runs.roofs_of([rec]), runs.points_of([rec]),
                                                      runs.case_name(rec))))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rec: dict) -> str:
    rows = [("measured median", rec.get("median_s"), "s"), ("p20 / p80", f"{_fmt(rec.get('p20_s'))} / "
                                                                       f"{_fmt(rec.get('p80_s'))}", "s"),
            ("predicted (calibrated)", rec.get("predicted_time_s"), "s"),
            ("predicted (datasheet)", rec.get("predicted_datasheet_s"), "s"),
            ("expected", rec.get("expected_time_s"),
             (f"s +-{rec['expected_uncertainty']:.0%}" if rec.get("expected_uncertainty") is not None else "s")
             + f" ({rec.get('expected_source') or 'none'}: {rec.get('expected_note') or ''})"),
            ("efficiency vs calibrated", rec.get("efficiency"), ""),
            ("efficiency vs datasheet", rec.get("efficiency_datasheet"), ""),
            ("floor", rec.get("floor"), rec.get("floor_source", "")),
            ("achieved", f"{_fmt(rec.get('achieved_gbs'))} GB/s, {_fmt(rec.get('achieved_tflops'))} TFLOP/s", ""),
            ("bytes / flops / AI", f"{_fmt(rec.get('bytes'))} / {_fmt(rec.get('flops'))} / {_fmt(rec.get('ai'))}", ""),
            ("bound", rec.get("bound"), ""), ("path", rec.get("path"), "emulated" if rec.get("emulated") else ""),
            ("mode / count / rel IQR", f"{rec.get('mode')} / {rec.get('count')} / {_fmt(rec.get('rel_iqr'))}", ""),
            ("contention", ", ".join(rec.get("contention") or []) or "none seen", ""),
            *([("settings", "; ".join(rec["settings"]), "")] if rec.get("settings") else []),
            ("energy per call", rec.get("energy_j"), rec.get("energy_source") or ""),
            ("verdict", "; ".join(f"{c['name']}: {'ok' if c['ok'] else 'FAILED' if c['enforced'] else 'reported'}"
                                  for c in (rec.get("verdict") or {}).get("checks", [])), ""),
            ("note", rec.get("note", ""), "")]
    if rec.get("SIMULATED"):
        rows.insert(0, ("SIMULATED", "synthesised timing on a simulated device: not a measurement", ""))
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v) if v is not None else '-'}</td>"
                   f"<td>{html.escape(str(u))}</td></tr>" for k, v, u in rows)
    return f'<table class="roofline"><tbody>{body}</tbody></table>'


def summary_html(records: list[dict], history_html: str = "") -> str:
    """The session roofline (inline SVG, a checkbox per precision) with its table, then the history trend."""
    measured = runs.measured(records)
    if not measured:
        return history_html
    title = f"session: {len(measured)} measured cases"
    svg = roofline_svg(runs.roofs_of(measured), runs.points_of(measured), title)
    return (f"<h3>Session roofline</h3>" + figure_block("session", svg, runs.ROW_HEADERS, runs.rows_of(measured))
            + history_html)


def _history_html(config) -> str:
    """This device's pytest-benchmark history (the storage this run saves to) as trends with the gate."""
    from roofline.reports.history import history_html, load_series, parse_gate
    storage = getattr(config.option, "benchmark_storage", None) or ""
    if not storage.startswith("file://"):
        return ""
    root = Path(storage[len("file://"):])
    if not root.is_dir():
        return ""
    from conftest import suite_session
    info = suite_session(config).device_info()
    series = load_series(root, info.hardware_key if info is not None else None)
    return history_html(series, parse_gate(getattr(config.option, "benchmark_compare_fail", None)), str(root))


def pytest_html_results_summary(prefix, summary, postfix, session):
    from conftest import suite_session
    records = session.config.stash[SESSION_KEY]["records"]
    sim = suite_session(session.config).simulation
    if sim is not None:
        prefix.append(f'<p style="background:#fde68a;padding:8px;font-weight:bold">SIMULATED device {sim.key}: '
                      "every time in this report is synthesised from the roofline at a stated efficiency "
                      f"({', '.join(f'{k} {v:.0%}' for k, v in sim.efficiency.items())}"
                      + (f"; planted fault: {sim.fault}" if sim.fault else "") + "). Nothing was measured.</p>")
    block = summary_html(records, _history_html(session.config))
    if block:
        prefix.append(block)
    bad = [r for r in records if r.get("outcome") == "failed"]
    if bad:
        prefix.append("<p><b>Cases that disagree with the roof:</b> " +
                      ", ".join(html.escape(r["id"].split("::")[-1]) for r in bad) + "</p>")


def pytest_html_report_title(report):
    report.title = "Roofline validation report"


def device_metadata(config) -> dict:
    from conftest import suite_session
    info = suite_session(config).device_info()
    if info is None:
        return {"Device": "none detected (measurement layer unavailable)"}
    from roofline_kernels import telemetry
    snap = telemetry.snapshot(info.kind, busy_interval_s=0, info=info)
    meta = {"Device": info.name, "Hardware key": info.hardware_key, "Detected by": info.detected_by,
            "CPU": f"{info.cpu.model}, {info.cpu.cores} cores, LLC {info.cpu.llc_bytes // 2**20} MiB",
            "CPU clocks (MHz)": ", ".join(f"{f:g}" for f in (snap["cpu"].get("freq_mhz") or [])) or
            f"max {info.cpu.max_mhz} ({info.cpu.clock_source})",
            "CPU governor": ", ".join(snap["cpu"].get("governor") or []) or "not readable",
            "Cold samples": "rotating copies of each kernel's operands spanning 2x the caches"}
    if info.simulated:
        meta = {"SIMULATED": f"{info.simulated}: synthesised times, nothing measured", **meta}
    nv = snap.get("nvml") or {}
    if nv:
        meta["NVML"] = (f"driver {nv.get('driver')}, SM {nv.get('sm_clock_mhz')} MHz, mem {nv.get('mem_clock_mhz')} "
                        f"MHz, {nv.get('power_w')} W" if nv.get("available") else nv.get("reason"))
    js = snap.get("jetson") or {}
    if js:
        meta["Jetson"] = (f"power mode {js['power_mode']}, GPU {js.get('gpu_cur_mhz')} of {js.get('gpu_max_mhz')} MHz,"
                          f" EMC cap {js.get('emc_cap_mhz')} MHz" if js.get("available") else js.get("reason"))
    if info.driver:
        meta["Driver"] = info.driver  # its own key: `roofline report` says when it moved between two runs
    for k, v in info.versions.items():
        meta[k] = v or "not installed"
    if info.compute_capability:
        meta["Compute capability"] = info.compute_capability
        meta["CUDA"] = info.cuda
    return meta


def pytest_metadata(metadata, config):
    metadata.update(device_metadata(config))


def pytest_benchmark_update_machine_info(config, machine_info):
    """Timing history records the device, not just the host Python."""
    from conftest import suite_session
    info = suite_session(config).device_info()
    if info is not None:
        machine_info.update(hardware=info.hardware_key, device=info.name, driver=info.driver, cuda=info.cuda,
                            compute_capability=info.compute_capability, torch=info.versions.get("torch"),
                            torchao=info.versions.get("torchao"), cpu_model=info.cpu.model)


def _machine(config) -> dict:
    """The environment table (device, clocks, driver, torch, torchao...) as plain strings, for `roofline report`."""
    try:
        from pytest_metadata.plugin import metadata_key
        meta = dict(config.stash[metadata_key])
    except (ImportError, KeyError):
        meta = {}
    return {str(k): v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for k, v in meta.items()
            if k not in ("Packages", "Plugins")}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    config = session.config
    state = config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    cal = state["calibration"]
    if cal is not None:
        try:
            from pytest_metadata.plugin import metadata_key
            config.stash[metadata_key]["Calibration"] = (
                f"{cal.path} ({cal.timestamp}): DRAM {cal.bandwidth_gbs:.4g} GB/s; " +
                ", ".join(f"{k} {v:.4g} TFLOP/s" for k, v in cal.peaks_tflops.items()))
        except ImportError:
            pass
    if not state["records"]:
        return
    out = Path(config.getoption("--roofline-report-dir"))
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    from conftest import suite_session
    sim = suite_session(config).simulation
    from roofline.reports.export import SCHEMA_VERSION
    write_json_atomic(out / "measurements.json", {"schema_version": SCHEMA_VERSION, "session_end": stamp,
                                                  "SIMULATED": sim.key if sim else None,
                                                  "machine": _machine(config), "records": state["records"],
                                                  "calibration": cal.to_dict() if cal else None})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore")
    w.writeheader()
    for r in state["records"]:
        w.writerow({**r, "contention": "; ".join(r.get("contention") or []), "shape": r.get("shape"),
                    "verdict": "; ".join(f"{c['name']}={'ok' if c['ok'] else 'fail'}"
                                         for c in (r.get("verdict") or {}).get("checks", []))})
    write_atomic(out / "measurements.csv", buf.getvalue())
