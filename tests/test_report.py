"""The report people compare: the session roofline as inline SVG, `roofline report` of archived runs, and
the timing history as a trend. Synthetic runs stand in for archived ones (the same record fields)."""
import io
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from roofline.reports import compare, history
from roofline.cli import main
from roofline.reports.plot import colour_for
from roofline.reports.plot import Roof
from roofline.reports.svg import SvgPoint, roofline_svg
from tests.validation.report import summary_html

SVG = "{http://www.w3.org/2000/svg}"
GOLDEN = Path(__file__).parent / "golden" / "roofline_svg_structure.txt"


def record(prec, shape="1x4096x4096", median=1e-3, spread=0.02, eff=0.8, outcome="passed", hardware="gb10",
           device="NVIDIA GB10", op="gemv"):
    nbytes = {"fp16": 33.6e6, "bf16": 33.6e6, "int8": 16.8e6, "nvfp4": 9.4e6}.get(prec, 67e6)
    flops = 33.5e6
    return dict(id=f"tests/validation/test_roofline_cases.py::test_measured_case[b10-{op}-{shape}-{prec}]",
                hardware=hardware, device=device, op=op, shape=shape, precision=prec, path="cuBLAS", median_s=median,
                p20_s=median * (1 - spread), p80_s=median * (1 + spread), count=40, flops=flops, bytes=nbytes,
                ai=flops / nbytes, bound="memory", compute_class="fp16", predicted_time_s=median * eff,
                efficiency=eff, datasheet_peak_tflops=125.0, datasheet_bandwidth_gbs=273.0,
                calibrated_peak_tflops=100.0, calibrated_bandwidth_gbs=230.0, outcome=outcome,
                achieved_tflops=flops / median / 1e12, mode="cold", rel_iqr=2 * spread, contention=[], SIMULATED=False,
                verdict={"passed": outcome == "passed", "checks": [], "notes": []})


def write_run(path, records, torch="2.13.0", when="2026-11-20T10:00:00+00:00"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "measurements.json").write_text(json.dumps({"session_end": when, "SIMULATED": None,
                                                        "machine": {"torch": torch, "torchao": "0.18.0"},
                                                        "records": records}))
    return path


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.refs = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href", "xlink:href") and v]


def assert_offline(html):
    """Opens from an archive with no network: nothing fetched, no script, no external stylesheet."""
    page = _Page()
    page.feed(html)
    assert not page.refs and not {"script", "link", "iframe", "img"} & set(page.tags), page.refs
    assert not re.search(r"url\(|@import|https?://(?!www\.w3\.org/2000/svg)", html)


def svg_points(html):
    svg = ET.fromstring(html[html.index("<svg"):html.index("</svg>") + 6])
    return [g for g in svg.iter(f"{SVG}g") if "pt" in g.get("class", "").split()]


# --- the session roofline ----------------------------------------------------------------------------

def test_session_roofline_has_one_point_per_measured_case_with_its_data():
    recs = [record("fp16"), record("int8", median=6e-4), record("nvfp4", median=9e-4, outcome="failed"),
            {"id": "x::skipped", "outcome": "skipped"}]  # a record that measured nothing draws nothing
    html = summary_html(recs)
    assert_offline(html)
    pts = svg_points(html)
    measured = [g for g in pts if g.get("data-kind") == "measured"]
    assert len(measured) == 3 and len(pts) == 6  # and one predicted point (on the roof) per case
    for g in measured:
        rec = next(r for r in recs if r.get("precision") == g.get("data-precision"))
        assert float(g.get("data-ai")) == pytest.approx(rec["ai"], rel=1e-5)
        assert float(g.get("data-tflops")) == pytest.approx(rec["achieved_tflops"], rel=1e-5)
        assert colour_for(rec["precision"]) in ET.tostring(g).decode()
        title = g.find(f"{SVG}title").text
        for word in ("measured", "expected", "bound", "efficiency", rec["shape"]):
            assert word in title
        assert g.get("tabindex") == "0" and g.get("aria-label")
        assert ("failed" in g.get("class")) == (rec["outcome"] == "failed")
    for prec in ("fp16", "int8", "nvfp4"):  # a toggle per precision, with its hiding rule
        assert f'id="session-prec-{prec}"' in html and f"#session-prec-{prec}:not(:checked)~.rlplot .prec-{prec}" in html
    assert html.count("datasheet") >= 1 and 'stroke-dasharray="6,4"' in html  # both roofs drawn


def _structure(svg_text):
    """The SVG's element tree as tags, classes and data attributes: what a reader relies on, minus coordinates."""
    root = ET.fromstring(svg_text)
    lines = []

    def walk(el, depth):
        attrs = {k: v for k, v in el.attrib.items() if k in ("class", "tabindex", "role") or k.startswith("data-")
                 and k not in ("data-ai", "data-tflops")}
        lines.append("  " * depth + el.tag.replace(SVG, "") + (" " + json.dumps(attrs, sort_keys=True) if attrs else ""))
        for child in el:
            walk(child, depth + 1)

    walk(root, 0)
    return "\n".join(lines) + "\n"


def test_svg_structure_matches_the_golden_file():
    """Regenerate after an intended change: python -c 'from tests.test_report import update_golden; update_golden()'"""
    assert _structure(golden_svg()) == GOLDEN.read_text()


def golden_svg():
    roofs = [Roof("gb10 fp16 datasheet", 125.0, 273.0), Roof("fp16 calibrated", 100.0, 230.0, calibrated=True),
             Roof("memory alone", None, 230.0, calibrated=True)]
    pts = [SvgPoint("fp16", 1.0, 0.2, True, {"case": "a"}), SvgPoint("fp16", 1.0, 0.27, False, {"case": "a"}),
           SvgPoint("int8", 2.0, 0.3, True, {"case": "b"}, failed=True),
           SvgPoint("nvfp4", 3.5, 0.5, True, {"case": "c"}, group="run 2", marker="square")]
    return roofline_svg(roofs, pts, "golden")


def update_golden():
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(_structure(golden_svg()))


# --- compare -----------------------------------------------------------------------------------------

def test_compare_reports_the_planted_change_and_only_it(tmp_path):
    before = [record("fp16"), record("int8", median=6e-4), record("nvfp4", median=4e-4, spread=0.3)]
    after = [record("fp16", median=1.04e-3),           # 4%: inside the threshold
             record("int8", median=1.2e-3),            # planted: 2x slower, spans far apart
             record("nvfp4", median=5e-4, spread=0.3)]  # 25% slower but the p20-p80 spans overlap: noise
    other = [record("fp16", hardware="h100", device="H100 SXM", median=2e-4)]
    a = write_run(tmp_path / "a", before)
    b = write_run(tmp_path / "b", after, torch="2.14.0", when="2026-11-21T10:00:00+00:00")
    c = write_run(tmp_path / "c", other)
    runs = [compare.load_run(str(p)) for p in (b, c, a)]  # any order: pairs are per device, in time
    data = compare.comparison(runs)
    assert len(data["pairs"]) == 1
    pair = data["pairs"][0]
    assert pair["old"].startswith("gb10 2026-11-20") and pair["new"].startswith("gb10 2026-11-21")
    assert [(c["case"], c["change"]) for c in pair["changes"]] == [("gemv 1x4096x4096 int8", "slower")]
    assert pair["changes"][0]["ratio"] == pytest.approx(2.0)
    assert pair["versions"] == {"torch": ("2.13.0", "2.14.0")}
    sp = {row["case"]: row for row in data["speedups"]}
    label_a = next(r.label for r in runs if r.source.startswith(str(a)))
    assert sp["gemv 1x4096x4096 int8"][label_a] == pytest.approx(1e-3 / 6e-4)

    out = tmp_path / "compare.html"
    text = io.StringIO()
    assert main(["report", str(a), str(b), str(c), "-o", str(out)], out=text) == 0
    assert "int8: 2.00x slower" in text.getvalue()
    html = out.read_text()
    assert_offline(html)
    assert "2.00x slower" in html and "torch 2.13.0 -&gt; 2.14.0" in html
    pts = svg_points(html)
    assert len(pts) == len(before) + len(after) + len(other)  # every run's measured points, overlaid
    assert {g.get("data-group") for g in pts} == {r.label for r in runs}


def test_compare_without_a_threshold_uses_each_devices_gate(tmp_path):
    """A host CPU drifts 35% between runs on a shared VM: its band is tox's 50%, a GPU's 10%."""
    slow = dict(median=1.3e-3, spread=0.01)
    for hw, expect in (("cpu", 0), ("gb10", 1)):
        a = write_run(tmp_path / hw / "a", [record("fp16", hardware=hw, spread=0.01)])
        b = write_run(tmp_path / hw / "b", [record("fp16", hardware=hw, **slow)], when="2026-11-21T00:00:00+00:00")
        pair = compare.comparison([compare.load_run(str(a)), compare.load_run(str(b))])["pairs"][0]
        assert len(pair["changes"]) == expect, (hw, pair)


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "no such run"),
    (lambda p: (p / "bad.json").write_text("{}") and p / "bad.json", "is not a suite export"),
    (lambda p: (p / "x" / "a").mkdir(parents=True) or (p / "x"), "holds 0 measurements.json"),
])
def test_report_refuses_what_is_not_a_run(tmp_path, capsys, make, message):
    rc = main(["report", str(make(tmp_path)), "-o", str(tmp_path / "o.html")], out=io.StringIO())
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


def test_report_refuses_a_history_that_is_not_there(tmp_path, capsys):
    run = write_run(tmp_path / "a", [record("fp16")])
    rc = main(["report", str(run), "--history", str(tmp_path / "nope"), "-o", str(tmp_path / "o.html")],
              out=io.StringIO())
    err = capsys.readouterr().err
    assert rc == 2 and "no such directory" in err and not (tmp_path / "o.html").exists()


# --- history -----------------------------------------------------------------------------------------

def write_history(root, medians_by_run, hardware="cpu"):
    for i, medians in enumerate(medians_by_run):
        d = root / "Linux-CPython-3.11-64bit"
        d.mkdir(parents=True, exist_ok=True)
        doc = {"machine_info": {"hardware": hardware, "device": "AMD EPYC", "torch": "2.13.0"},
               "commit_info": {"id": f"{i:040d}"}, "datetime": f"2026-11-{10 + i:02d}T00:00:00+00:00",
               "benchmarks": [{"name": name, "stats": {"median": m}} for name, m in medians.items()]}
        (d / f"{i + 1:04d}_run.json").write_text(json.dumps(doc))


def test_history_trend_draws_the_gate_and_marks_the_run_over_it(tmp_path):
    # case_a: +20% (over a 10% gate), then +4% on that (under it: the gate follows the run before, as
    # pytest-benchmark's compare does, not the first run)
    write_history(tmp_path, [{"case_a": 1.0e-3, "case_b": 2e-3}, {"case_a": 1.2e-3, "case_b": 2e-3},
                             {"case_a": 1.25e-3, "case_b": 2.1e-3}])
    write_history(tmp_path / "other", [{"case_a": 9.0}], hardware="gb10")
    (tmp_path / "junk.json").write_text("not json")  # skipped, not fatal
    (tmp_path / "null.json").write_text(json.dumps({"machine_info": None, "benchmarks": [], "datetime": "x"}))
    series = history.load_series(tmp_path, "cpu")
    assert [s.case for s in series] == ["case_a", "case_b"]
    a = series[0]
    assert [r.median_s for r in a.runs] == [1.0e-3, 1.2e-3, 1.25e-3]
    assert a.over_gate(10) == [1] and a.over_gate(50) == [] and series[1].over_gate(10) == []
    html = history.history_html(series, 10)
    assert_offline(html)
    svg = ET.fromstring(history.trend_svg(a, 10))
    assert len([e for e in svg.iter(f"{SVG}line") if e.get("class") == "gate"]) == 2
    runs = [g for g in svg.iter(f"{SVG}g") if "run" in g.get("class", "")]
    assert [("over" in g.get("class")) for g in runs] == [False, True, False]
    assert "OVER THE GATE" in runs[1].find(f"{SVG}title").text
    assert "1 over the gate" in html


@pytest.mark.parametrize("option, gate", [("median:10%", 10.0), (["mean:5%", "median:50%"], 50.0), (None, None),
                                          ("min:0.001", None)])
def test_the_gate_is_read_from_pytest_benchmarks_option(option, gate):
    assert history.parse_gate(option) == gate


def _scored(prec, factor, noise, hardware="cpu"):
    """A record carrying its per-sample scores (as the suite writes them): a noisy host's spread of +-noise."""
    import random
    rng = random.Random(f"{prec}{factor}{noise}")
    scores = sorted(factor * (1 + noise * rng.uniform(-1, 1)) for _ in range(30))
    return {**record(prec, median=1e-3 * factor, hardware=hardware, device="host CPU"), "scores": scores}


def test_what_changed_uses_the_regression_checks_test_on_samples(tmp_path):
    """Two healthy runs of a noisy host (30% sample spread, medians 1.25x apart) report no change; a planted 2x
    slowdown of one precision is reported, and only it: the same Mann-Whitney-and-band rule as the suite."""
    old = [_scored("fp16", 1.0, 0.3), _scored("int8", 1.0, 0.3), _scored("bf16", 1.0, 0.05)]
    healthy = [_scored("fp16", 1.25, 0.3), _scored("int8", 0.9, 0.3), _scored("bf16", 1.05, 0.05)]
    planted = [_scored("fp16", 1.1, 0.3), _scored("int8", 2.0, 0.05), _scored("bf16", 1.0, 0.05)]
    a = compare.load_run(str(write_run(tmp_path / "a", old)))
    h = compare.load_run(str(write_run(tmp_path / "h", healthy, when="2026-11-21T10:00:00+00:00")))
    p = compare.load_run(str(write_run(tmp_path / "p", planted, when="2026-11-22T10:00:00+00:00")))
    assert compare.changes(a, h, compare.threshold_for(a, None)) == []
    found = compare.changes(a, p, compare.threshold_for(a, None))
    assert [(c["case"], c["change"]) for c in found] == [("gemv 1x4096x4096 int8", "slower")]
    assert "Mann-Whitney" in found[0]["why"] and "smallest detectable" in found[0]["why"]


def test_compare_keeps_what_a_number_must_not_be_read_without(tmp_path):
    """Found by an audit of the report: a hot run was compared with a cold one and a power mode's records overwrote
    the full-speed ones (keyed on op, shape and precision alone); 2x faster read "0.50x faster"; a run whose bf16 was
    skipped quoted its speedups against fp16 unsaid; skipped cases vanished; failed ones and ones past their roof
    read as plain numbers."""
    before = [record("fp16"), record("bf16"), record("int8", median=6e-4)]
    after = [record("fp16", median=5e-4),                          # 2x faster
             dict(record("bf16"), mode="hot", median_s=2e-4),      # hot: no twin of the cold one
             dict(record("int8", median=6e-4), outcome="failed"),
             dict(record("int8"), hardware="gb10@15W"),            # a power mode's record beside the full-speed one
             dict(record("fp16", shape="1x8192x8192", eff=1.3)),   # past its roof
             {k: v for k, v in record("bf16", shape="1x8192x8192").items() if k not in ("median_s",)} | {
                 "outcome": "skipped"}]
    a = compare.load_run(str(write_run(tmp_path / "a", before)))
    b = compare.load_run(str(write_run(tmp_path / "b", after, when="2026-11-21T10:00:00+00:00")))
    data = compare.comparison([a, b])
    moved = {c["case"]: c["moved"] for c in data["pairs"][0]["changes"]}
    assert moved == {"gemv 1x4096x4096 fp16": "2.00x faster"}  # the hot bf16 and the 15 W int8 compared with nothing
    cases = {row["case"] for row in data["efficiency"]}
    assert {"gemv 1x4096x4096 bf16 hot", "gemv 1x4096x4096 int8 @15W", "gemv 1x4096x4096 int8"} <= cases
    runs = {r["label"]: r for r in data["runs"]}
    assert runs[b.label]["not_measured"] == {"skipped": 1} and runs[a.label]["not_measured"] == {}
    marks = {row["case"]: row["marks"].get(b.label) for row in data["efficiency"]}
    assert marks["gemv 1x4096x4096 int8"] == "FAILED" and marks["gemv 1x8192x8192 fp16"] == "BEYOND ROOF"
    sp = {row["case"]: row for row in data["speedups"]}
    # b's cold gemv 1x4096x4096 has no bf16 (its bf16 ran hot): fp16 is its baseline, and named
    assert sp["gemv 1x4096x4096 int8"]["baselines"] == {a.label: "fp16", b.label: "fp16"}
    html = compare.compare_html([a, b])
    assert "vs fp16" in html and "<b>FAILED</b>" in html and "<b>BEYOND ROOF</b>" in html and "(+1 skipped)" in html
    text = io.StringIO()
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(tmp_path / "c.html")], out=text) == 0
    assert "fp16: 2.00x faster" in text.getvalue()


def test_history_keeps_each_device_folder_its_own_trend(tmp_path):
    # two hosts whose machine_info reads alike ("cpu (AMD EPYC)"), each in its device folder (device.history_dir)
    write_history(tmp_path / "cpu-amd-epyc-2t", [{"case_a": 1.0e-3}, {"case_a": 1.0e-3}])
    write_history(tmp_path / "cpu-amd-epyc-16t", [{"case_a": 3.0e-3}])
    series = history.load_series(tmp_path, "cpu")
    assert len(series) == 2 and sorted(len(s.runs) for s in series) == [1, 2]
    assert not any(s.over_gate(10) for s in series)  # the 3 ms host's run is no 1 ms host's regression


def test_a_page_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, capsys):
    # a directory as -o was an IsADirectoryError traceback (exit 1); the spot check's --html wrote its figure before
    # its table, so every measurement of the run was lost with it: refused before measuring now
    run_dir = write_run(tmp_path / "a", [record("fp16")])
    assert main(["report", str(run_dir), "-o", str(tmp_path)], out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and repr(str(tmp_path)) in err and "Traceback" not in err
    from roofline.__main__ import main as full_main
    (tmp_path / "d.html").mkdir()
    for bad, says in ((tmp_path / "d.html", "a directory"), (tmp_path / "none" / "x.html", "does not exist")):
        rc = full_main(["measure", "gemv", "--n", "64", "--k", "64", "--precision", "bf16,fp32", "--html", str(bad)])
        err = capsys.readouterr().err
        assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err
