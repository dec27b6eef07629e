"""The spot check (`measure --precision all|LIST`): each precision in turn, failures reported beside the others,
Ctrl-C keeping what finished, one table / JSON record per precision, and a self-contained roofline page."""
import dataclasses
import io
import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser  # the DOM check of the toggles

import pytest

from roofline_kernels import spot
from roofline_kernels.measure import measure_kernel
from roofline_kernels.ops import GEMM_KERNELS, UnsupportedKernel, make_gemm
from roofline_kernels.timer import BudgetExceeded, Timing
from roofline.__main__ import main
from roofline.reports.plot import colour_for

pytestmark = pytest.mark.cpu
SVG = "{http://www.w3.org/2000/svg}"


def run(*argv):
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


# --- precision lists ---------------------------------------------------------------------------------

def test_all_is_every_kernel_the_op_has():
    assert spot.resolve_precisions("gemv", "all") == GEMM_KERNELS
    assert [p for p, _ in spot.resolve_precisions("attention", "ALL")] == ["fp32", "bf16", "fp16"]


def test_a_list_keeps_its_order_and_names_weight_only_formats_with_their_activations():
    got = spot.resolve_precisions("gemm", "bf16, fp32,int8/bf16,int4_tinygemm,fp8")
    assert [p for p, _ in got] == ["bf16", "fp32", "int8/bf16", "int4_tinygemm/bf16", "fp8_e4m3"]
    assert dict(got)["int4_tinygemm/bf16"] == {"weight": "int4_tinygemm", "act": "bf16"}


@pytest.mark.parametrize("spec, message", [
    ("fp32,fp9", "unknown precision 'fp9'; known: fp32"),
    ("fp32,,bf16", "empty name"),
    ("all,fp32", "cannot be combined"),
    ("bf16,bf16", "named twice"),
    ("a/b/c", "WEIGHT/ACT"),
])
def test_bad_lists_are_refused_naming_the_value(spec, message):
    with pytest.raises(ValueError, match=message):
        spot.resolve_precisions("gemm", spec)


def test_attention_lists_only_its_kernels():
    with pytest.raises(ValueError, match="attention runs: fp32, bf16, fp16"):
        spot.resolve_precisions("attention", "fp32,int8")


# --- the loop, with fake kernels ---------------------------------------------------------------------

def _fake_timing(median):
    return Timing(median_s=median, p20_s=median * 0.95, p80_s=median * 1.05, mean_s=median, stdev_s=median * 0.05,
                  min_s=median * 0.9, count=12, mode="cold", device="cpu", rel_iqr=0.1, converged=True,
                  wall_s=12 * median, warmup_count=0)


class _Script:
    """Builds real tiny kernels but times them from a table; records the order of events."""

    def __init__(self, medians, fail=None):
        self.medians, self.fail, self.events = medians, fail or {}, []

    def builder(self, op, shape, kwargs, device, target):
        label = kwargs.get("precision") or f"{kwargs['weight']}/{kwargs['act']}"
        self.events.append(("build", label))
        what = self.fail.get(label)
        if what == "unsupported":
            raise UnsupportedKernel(label, device, "not on this test device")
        k = make_gemm(1, 256, 256, device=device, **kwargs)
        if what == "wrong":
            k.reference = lambda: k.fn().float() + 1.0
        if what == "backend":  # what CUDA's _scaled_mm raises for two E5M2 operands (TORCH_CHECK_VALUE)
            def refused(inputs):
                raise ValueError("Multiplication of two Float8_e5m2 matrices is not supported")
            k.call = refused
        if what == "build-error":
            raise NotImplementedError("Could not run 'aten::x' with arguments from the 'CUDA' backend")
        return k

    def timer(self, kernel, hw, peaks, mode):
        self.events.append(("time", kernel.precision))
        what = self.fail.get(kernel.precision)
        if what == "budget":
            raise BudgetExceeded("one call takes ~9 s")
        if what == "interrupt":
            raise KeyboardInterrupt
        return _fake_timing(self.medians[kernel.precision])


def _run(device_info, hardware_entry, script, precisions):
    return spot.spot_check("gemv", {"n": 256, "k": 256}, spot.resolve_precisions("gemv", precisions), device_info,
                           hardware_entry, "calibrated", builder=script.builder, timer=script.timer)


def test_each_precision_runs_alone_and_failures_stay_in_their_row(device_info, hardware_entry):
    script = _Script({"fp32": 4e-5, "bf16": 2e-5, "int8/bf16": 1e-5},
                     fail={"int8": "unsupported", "fp16": "wrong", "fp8_e4m3": "budget"})
    rep = _run(device_info, hardware_entry, script, "fp32,bf16,int8,fp16,fp8_e4m3,int8/bf16")
    # sequential: each precision is built, then timed, before the next is built (what failed is not timed)
    assert script.events == [("build", "fp32"), ("time", "fp32"), ("build", "bf16"), ("time", "bf16"),
                             ("build", "int8"), ("build", "fp16"), ("build", "fp8_e4m3"), ("time", "fp8_e4m3"),
                             ("build", "int8/bf16"), ("time", "int8/bf16")]
    status = {r.precision: r.status for r in rep.results}
    assert status == {"fp32": "ok", "bf16": "ok", "int8": "unsupported", "fp16": "wrong result",
                      "fp8_e4m3": "over budget", "int8/bf16": "ok"}
    recs = {r["precision"]: r for r in rep.records()}
    assert "not on this test device" in recs["int8"]["reason"] and "--max-seconds" in recs["fp8_e4m3"]["reason"]
    assert rep.baseline.precision == "bf16"
    assert recs["fp32"]["speedup_vs_baseline"] == pytest.approx(0.5)
    assert recs["int8/bf16"]["speedup_vs_baseline"] == pytest.approx(2.0)
    assert recs["bf16"]["efficiency"] == pytest.approx(recs["bf16"]["bound_time_s"] / 2e-5)
    assert recs["fp32"]["expected_source"] == "none" and recs["fp32"]["expected_time_s"] is None


def test_a_backend_error_of_any_type_stays_in_its_row_and_the_rest_still_run(device_info, hardware_entry):
    """CUDA raises ValueError (TORCH_CHECK_VALUE) for E5M2 x E5M2 and NotImplementedError for a missing kernel: the
    spot check used to catch RuntimeError only, so `measure --precision all` aborted at the fifth precision."""
    script = _Script({"fp32": 4e-5, "bf16": 2e-5, "int8/bf16": 1e-5},
                     fail={"fp8_e5m2": "backend", "fp16": "build-error"})
    rep = _run(device_info, hardware_entry, script, "fp32,fp8_e5m2,fp16,bf16,int8/bf16")
    status = {r.precision: (r.status, r.reason) for r in rep.results}
    assert [r.precision for r in rep.results] == ["fp32", "fp8_e5m2", "fp16", "bf16", "int8/bf16"]
    assert status["fp8_e5m2"] == ("failed", "ValueError: Multiplication of two Float8_e5m2 matrices is not supported")
    assert status["fp16"][0] == "failed" and status["fp16"][1].startswith("NotImplementedError: Could not run")
    assert all(status[p][0] == "ok" for p in ("fp32", "bf16", "int8/bf16"))


def test_ctrl_c_keeps_what_finished(device_info, hardware_entry):
    script = _Script({"fp32": 4e-5, "bf16": 2e-5}, fail={"int8/bf16": "interrupt"})
    rep = _run(device_info, hardware_entry, script, "fp32,bf16,int8/bf16,int4_tinygemm")
    assert [r.precision for r in rep.results] == ["fp32", "bf16"] and rep.interrupted == "int8/bf16"
    assert ("build", "int4_tinygemm/bf16") not in script.events
    assert any("interrupted" in n and "int8/bf16" in n for n in spot.notes(rep))


def test_no_baseline_means_no_speedup_and_says_so(device_info, hardware_entry):
    rep = _run(device_info, hardware_entry, _Script({"fp32": 4e-5}), "fp32")
    assert rep.records()[0]["speedup_vs_baseline"] is None
    assert any("no 16-bit baseline" in n for n in spot.notes(rep))


def test_a_native_baseline_is_preferred_to_an_emulated_one(device_info, hardware_entry):
    rep = _run(device_info, hardware_entry, _Script({"fp16": 1e-5, "bf16": 2e-5}), "fp16,bf16")
    rep.results[0].emulated, rep.results[1].emulated = True, False
    assert rep.baseline.precision == "bf16"
    rep.results[0].emulated = False
    assert rep.baseline.precision == "fp16"


# --- the roof a software path is held to -------------------------------------------------------------

def test_a_software_peak_is_no_ceiling_bytes_are(device_info, hardware_entry):
    """On a CPU without bf16 units the calibrated bf16 'peak' is one kernel's speed; the GEMV is held to the
    memory roof alone (and says so). With the units (faked flags) the full roof applies."""
    k = make_gemm(1, 512, 512, precision="bf16")
    timer = lambda kernel, hw, peaks, mode: _fake_timing(1e-3)  # noqa: E731
    without = dataclasses.replace(device_info, cpu=dataclasses.replace(
        device_info.cpu, flags=device_info.cpu.flags - {"avx512_bf16", "amx_bf16"}))
    with_units = dataclasses.replace(device_info, cpu=dataclasses.replace(
        device_info.cpu, flags=device_info.cpu.flags | {"avx512_bf16"}))
    m = measure_kernel(k, without, hardware_entry, "cold", "calibrated", timer=timer, with_telemetry=False)
    assert m.memory_roof_only and m.predicted_time_s == pytest.approx(m.prediction["t_memory_s"])
    assert "not a ceiling" in m.prediction_note
    m2 = measure_kernel(k, with_units, hardware_entry, "cold", "calibrated", timer=timer, with_telemetry=False)
    assert not m2.memory_roof_only and m2.predicted_time_s == pytest.approx(m2.prediction["time_s"])


# --- the CLI and the page ----------------------------------------------------------------------------

def test_cli_spot_check_json_has_one_record_per_precision(tmp_path, calibration):
    page = tmp_path / "spot.html"
    rc, text = run("measure", "gemv", "--n", "512", "--k", "512", "--precision", "fp32,bf16,nvfp4,int8/bf16",
                   "--rep-ms", "20", "--warmup-ms", "5", "--calibration", calibration.path, "--json",
                   "--html", str(page))
    assert rc == 0
    doc = json.loads(text)
    recs = doc["records"]
    assert doc["interrupted"] is None and doc["baseline"] == "bf16" and doc["op"] == "gemv"
    assert [r["precision"] for r in recs] == ["fp32", "bf16", "nvfp4", "int8/bf16"]
    bad = recs[2]
    assert bad["status"] == "unsupported" and "Blackwell" in bad["reason"]
    for r in (recs[0], recs[1], recs[3]):
        assert r["status"] == "ok" and r["median_s"] > 0 and r["count"] >= 10 and r["bytes"] > 0
        assert r["correctness_error"] is not None and r["mode"] == "cold" and r["device"]
        assert r["efficiency"] == pytest.approx(r["bound_time_s"] / r["median_s"])
    assert recs[1]["speedup_vs_baseline"] == pytest.approx(1.0)
    _check_page(page.read_text(), {r["precision"]: r for r in recs if r["status"] == "ok"})


def _check_page(html, recs):
    from tests.test_report import assert_offline
    assert_offline(html)
    svg = ET.fromstring(html[html.index("<svg"):html.index("</svg>") + 6])
    points = [g for g in svg.iter(f"{SVG}g") if "pt" in g.get("class", "").split()]
    assert len(points) == 2 * len(recs), "one predicted and one measured point per precision that ran"
    for g in points:
        rec = recs[g.get("data-precision")]
        assert float(g.get("data-ai")) == pytest.approx(rec["ai"], rel=1e-5)
        fill = [e for e in g if e.tag in (f"{SVG}circle", f"{SVG}path")][0]
        assert colour_for(rec["precision"]) in (fill.get("fill"), fill.get("stroke"))
        want = rec["achieved_tflops"] if g.get("data-kind") == "measured" else rec["flops"] / rec["bound_time_s"] / 1e12
        assert float(g.get("data-tflops")) == pytest.approx(want, rel=1e-5)
        assert g.get("tabindex") == "0" and g.find(f"{SVG}title") is not None


def test_cli_table_interrupt_and_bad_input(monkeypatch, calibration, capsys):
    calls = []

    def fake_measure(kernel, *a, **k):
        calls.append(kernel.precision)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return measure_kernel(kernel, *a, **dict(k, timer=lambda *_: _fake_timing(1e-4)))

    monkeypatch.setattr(spot, "measure_kernel", fake_measure)
    rc, text = run("measure", "gemv", "--n", "256", "--k", "256", "--precision", "fp32,bf16,int8",
                   "--calibration", calibration.path)
    assert rc == 130 and calls == ["fp32", "bf16"]
    lines = text.splitlines()
    assert any(line.startswith("fp32 ") for line in lines) and not any(line.startswith("int8") for line in lines)
    assert "interrupted (Ctrl-C) while bf16 ran" in text
    capsys.readouterr()
    for argv, message in [
        (["--precision", "fp32,nope"], "unknown precision 'nope'"),
        (["--precision", "all", "--weight-precision", "int8"], "do not combine"),
        (["--precision", "all", "--html", "x.png"], "name it .html"),
        (["--precision", "all", "--plot", "x.pdf"], "cannot write a figure"),
    ]:
        rc, text = run("measure", "gemv", *argv)
        err = capsys.readouterr().err
        assert rc == 2 and text == "" and message in err and len(err.strip().splitlines()) == 1, err


def test_svg_predicted_points_sit_on_their_roof():
    """The drawn roof and the predicted point come from the same formula: the point is on the line."""
    from roofline.reports.plot import Roof
    from roofline.reports.svg import SvgPoint, roofline_svg
    from roofline.reports.plot import attainable_tflops
    roof = Roof("fp16 roof", peak_tflops=100.0, bandwidth_gbs=273.0)
    pts = [SvgPoint("fp16", ai, float(attainable_tflops(ai, 100.0, 273.0)), False) for ai in (0.5, 2.0, 4000.0)]
    svg = ET.fromstring(roofline_svg([roof], pts))
    line = [tuple(map(float, p.split(","))) for p in svg.find(f".//{SVG}polyline").get("points").split()]

    def y_on_line(x):
        for (x0, y0), (x1, y1) in zip(line, line[1:]):
            if x0 <= x <= x1:
                return y0 + (y1 - y0) * (x - x0) / (x1 - x0)

    for g in svg.iter(f"{SVG}g"):
        if "pt" in g.get("class", "").split():
            d = g.find(f"{SVG}path").get("d").split()
            top, right = (tuple(map(float, d[0][1:].split(","))), tuple(map(float, d[1][1:].split(","))))
            cx, cy = top[0], right[1]
            assert cy == pytest.approx(y_on_line(cx), abs=0.6)


def test_a_memory_only_roof_keeps_its_slope_to_the_edge():
    """A path held to bytes alone has no flat part: its predicted points lie on the slope, wherever they are."""
    from roofline.reports.plot import Roof
    from roofline.reports.svg import SvgPoint, roofline_svg
    roof = Roof("memory alone", peak_tflops=None, bandwidth_gbs=200.0)  # its slope leaves the plot's top before its right edge
    pts = [SvgPoint("bf16", ai, ai * 200.0 / 1e3, False) for ai in (0.05, 0.4, 1.2)]
    svg = ET.fromstring(roofline_svg([roof], pts))
    (x0, y0), (x1, y1) = [tuple(map(float, p.split(","))) for p in svg.find(f".//{SVG}polyline").get("points").split()]
    for g in svg.iter(f"{SVG}g"):
        if "pt" in g.get("class", "").split():
            d = g.find(f"{SVG}path").get("d").split()
            cx, cy = float(d[0][1:].split(",")[0]), float(d[1][1:].split(",")[1])
            assert cy == pytest.approx(y0 + (y1 - y0) * (cx - x0) / (x1 - x0), abs=0.6)


def test_the_checkboxes_are_siblings_of_what_they_hide():
    """The script-free toggles work through `#box:not(:checked) ~ .rlplot .prec-x`: each input must be a sibling
    before the plot and the table, in the same parent (a wrapper element around the inputs breaks them all)."""
    from roofline.reports.svg import figure_block
    block = figure_block("t", "<svg xmlns='http://www.w3.org/2000/svg'/>", ["precision"], [("fp16", ["fp16"]),
                                                                                         ("int8", ["int8"])])
    children = _children_of_root(block)
    tags = [tag for tag, _ in children]
    plot = tags.index("div")
    table = tags.index("table")
    boxes = [attrs for tag, attrs in children if tag == "input"]
    assert len(boxes) == 2 and max(i for i, t in enumerate(tags) if t == "input") < plot < table
    assert dict(children[plot][1]).get("class") == "rlplot"
    for attrs in boxes:
        box = dict(attrs)["id"]
        assert f"#{box}:not(:checked)~.rlplot .prec-{box.rsplit('-', 1)[1]}" in block


VOID = {"input", "br", "img", "meta", "link", "hr"}


def _children_of_root(html):
    """(tag, attrs) of the elements directly inside the outermost element."""
    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.depth, self.out = 0, []

        def handle_starttag(self, tag, attrs):
            if self.depth == 1:
                self.out.append((tag, attrs))
            if tag not in VOID:
                self.depth += 1

        def handle_endtag(self, tag):
            self.depth -= 1

    p = P()
    p.feed(html)
    return p.out


def test_a_failing_point_is_marked_and_text_is_escaped():
    from roofline.reports.plot import Roof
    from roofline.reports.svg import SvgPoint, roofline_svg
    svg = roofline_svg([Roof("r", peak_tflops=10.0, bandwidth_gbs=100.0)], [SvgPoint("int8", 1.0, 0.2, True, {"path": "<a&b>"}, True)])
    root = ET.fromstring(svg)  # parses: the detail text was escaped
    g = [g for g in root.iter(f"{SVG}g") if "pt" in g.get("class", "").split()][0]
    assert "failed" in g.get("class") and "<a&b>" in g.find(f"{SVG}title").text


@pytest.mark.parametrize("key", ["h100_sxm", "gb10"])
def test_measure_all_on_a_simulated_board_has_one_record_per_precision_and_refuses_e5m2_with_cudas_rule(key):
    """`measure --simulate KEY` runs the spot check on a simulated device (it could not): every precision gets its
    record, the E5M2 x E5M2 row is refused with ScaledBlas.cpp's rule, and every record says SIMULATED."""
    rc, text = run("measure", "gemm", "--m", "256", "--n", "4096", "--k", "4096", "--precision", "all",
                   "--simulate", key, "--json")
    assert rc == 0
    doc = json.loads(text)
    recs = {r["precision"]: r for r in doc["records"]}
    assert list(recs) == [label for label, _ in GEMM_KERNELS] and doc["SIMULATED"] and doc["hardware"] == key
    e5m2 = recs["fp8_e5m2"]
    assert e5m2["status"] == "unsupported" and "Multiplication of two Float8_e5m2 matrices is not supported" in \
        e5m2["reason"] and "ScaledBlas.cpp" in e5m2["reason"]
    assert all(r["SIMULATED"] for r in recs.values())
    assert {p for p, r in recs.items() if r["status"] not in ("ok", "unsupported")} == set()
    assert recs["bf16"]["status"] == "ok" and recs["bf16"]["median_s"] > 0


def test_simulate_names_what_it_accepts():
    rc, _ = run("measure", "gemv", "--precision", "bf16", "--simulate", "tpu_v9")
    assert rc == 2


@pytest.mark.parametrize("argv, says", [
    (["--cuda-graph"], "--cuda-graph needs a CUDA device"),  # was ignored: timed without a graph, exit 0
    (["--peaks", "datasheet"], "--peaks datasheet: cpu has no datasheet bandwidth"),  # a "failed" row each, exit 0
])
def test_what_no_precision_can_run_with_is_refused_before_measuring(argv, says, capsys):
    from roofline.__main__ import main
    rc = main(["measure", "gemv", "--n", "64", "--k", "64", "--precision", "bf16,fp32", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("precision", ["bf16", "bf16,fp32"])
@pytest.mark.parametrize("argv, says", [(["--cuda-graph"], "--cuda-graph needs a CUDA device"),
                                        (["--peaks", "datasheet"], "--peaks datasheet: cpu has no datasheet")])
def test_a_refusal_comes_before_any_calibration(argv, says, precision, capsys, monkeypatch):
    """The refusal above came after the store's profile was loaded: on a loaded host, where the cached profile had been
    measured under contention, a quick calibration (a minute, 30 lines) ran first and the test failed on them (a
    test that flipped with host load). Now nothing is calibrated before the options are refused."""
    import roofline_kernels.calibrate as kcal
    from roofline.__main__ import main

    def never(*a, **k):
        raise AssertionError("calibrated before refusing")
    monkeypatch.setattr(kcal, "load_or_calibrate", never)
    rc = main(["measure", "gemv", "--n", "64", "--k", "64", "--precision", precision, *argv])
    err = capsys.readouterr().err
    assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err
    # an unknown precision name, and experts that would not fit the memory: refused before a calibration too
    rc = main(["measure", "gemv", "--precision", "fp99" if "," not in precision else "fp32,fp99"])
    err = capsys.readouterr().err
    assert rc == 2 and "unknown precision 'fp99'" in err and len(err.strip().splitlines()) == 1, err
    rc = main(["measure", "grouped_gemm", "--groups", "100000", "--n", "4096", "--k", "4096", "--precision", precision])
    err = capsys.readouterr().err
    assert rc == 2 and "groups=100000: 100000 experts of" in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("argv, says", [
    (["gemv", "--n", "4096", "--k", "100", "--precision", "int4_tinygemm"],
     "no int4_tinygemm/bf16 kernel on cpu: the packed INT4 kernel needs K % 128 == 0 and N % 16 == 0; got N=4096, K=100"),
    (["gemm", "--m", "4", "--n", "4100", "--k", "4096", "--weight-precision", "int4_tinygemm", "--act-precision",
      "bf16"], "got N=4100, K=4096"),
    (["grouped_gemm", "--groups", "4", "--n", "4096", "--k", "100", "--precision", "int4_tinygemm"], "K % 128 == 0"),
    (["attention", "--heads", "32", "--kv-heads", "7", "--seq-kv", "1024", "--precision", "fp32"],
     "heads=32 is not a multiple of kv_heads=7"),
    (["attention", "--kv-precision", "fp8_e4m3", "--precision", "bf16"], "no bf16 (kv fp8_e4m3) kernel on cpu: SDPA"),
    (["attention", "--phase", "prefill", "--seq-q", "128", "--seq-kv", "1024", "--precision", "bf16"],
     "chunked prefill (seq_q=128 < seq_kv=1024) needs an explicit mask kernel"),
])
def test_a_kernel_its_builder_would_refuse_is_refused_before_any_calibration(argv, says, capsys, monkeypatch):
    """A shape or path the builder refuses (a packed INT4 weight with K = 100, query heads no multiple of KV heads)
    was refused only when built: after a 30 s quick calibration of a fresh store. Now before it, in the builder's
    words, one line, exit 2."""
    import roofline_kernels.calibrate as kcal
    from roofline.__main__ import main

    def never(*a, **k):
        raise AssertionError("calibrated before refusing")
    monkeypatch.setattr(kcal, "load_or_calibrate", never)
    rc = main(["measure", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and says in err and len(err.strip().splitlines()) == 1, err


def _outcome(fn):
    from roofline_kernels.ops import UnsupportedKernel
    try:
        fn()
    except (UnsupportedKernel, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    return "builds"


EARLY_GEMMS = [*GEMM_KERNELS, ("int8/fp16", dict(weight="int8", act="fp16")),
               ("int4_tinygemm/fp16", dict(weight="int4_tinygemm", act="fp16")), ("int4", dict(precision="int4")),
               ("fp8_e4m3/bf16", dict(weight="fp8_e4m3", act="bf16"))]


@pytest.mark.parametrize("op, shape", [("gemv", {"n": 64, "k": 128}), ("gemv", {"n": 64, "k": 100}),
                                       ("gemm", {"m": 3, "n": 72, "k": 256}), ("gemm", {"m": 2, "n": 0, "k": 128}),
                                       ("grouped_gemm", {"groups": 2, "m": 2, "n": 48, "k": 384})])
@pytest.mark.parametrize("label, kwargs", EARLY_GEMMS, ids=[x[0] for x in EARLY_GEMMS])
def test_what_the_early_refusal_asks_is_what_the_builder_refuses(op, shape, label, kwargs):
    """``refuse_unbuildable`` (asked before any calibration) refuses what the builder refuses, in its words, and passes
    what it builds: every GEMM kernel of the list, and pairs no kernel takes, at shapes the packed INT4 rule and the
    theory accept and refuse."""
    from roofline_kernels.ops import refuse_unbuildable
    from roofline_kernels.spot import build
    early = _outcome(lambda: refuse_unbuildable(op, shape, kwargs, "cpu"))
    built = _outcome(lambda: build(op, shape, kwargs, "cpu", "cpu"))
    assert early == built


ATTENTIONS = [dict(precision=p, kv=kv, heads=h, kv_heads=kvh, seq_q=q)
              for p, kv in (("fp32", None), ("bf16", None), ("bf16", "fp8_e4m3"), ("int8", None), ("fp16", "bf16"))
              for h, kvh in ((8, 2), (8, 3)) for q in (1, 16, 64)]


@pytest.mark.parametrize("a", ATTENTIONS, ids=lambda a: "-".join(str(v) for v in a.values()))
def test_the_early_attention_refusal_is_the_builders(a):
    from roofline_kernels.ops import refuse_unbuildable
    from roofline_kernels.spot import build
    shape = {"batch": 1, "heads": a["heads"], "kv_heads": a["kv_heads"], "seq_q": a["seq_q"], "seq_kv": 64,
             "head_dim": 16, "kv": a["kv"]}
    early = _outcome(lambda: refuse_unbuildable("attention", shape, {"precision": a["precision"]}, "cpu"))
    assert early == _outcome(lambda: build("attention", shape, {"precision": a["precision"]}, "cpu", "cpu"))


def test_a_single_measure_keeps_to_max_seconds_when_given(capsys):
    # --max-seconds was the spot check's alone: a single measure took 405 samples under --max-seconds 0.001
    from roofline.__main__ import main
    rc = main(["measure", "gemv", "--n", "2048", "--k", "2048", "--precision", "fp32", "--max-seconds", "0.0001"])
    err = capsys.readouterr().err
    assert rc == 2 and "over the per-case budget of 0.0001 s" in err


def test_the_notes_say_which_rows_ran_under_contention_or_unsettled(device_info, hardware_entry, monkeypatch):
    # an audit saw a bf16 baseline at p20-p80 181 us - 8 ms, unsettled, "busy CPU: 80%" in the JSON, while the
    # table and its notes quoted "fp16 5.23x" against it and said nothing; the records dropped the telemetry too
    import dataclasses
    script = _Script({"fp32": 4e-5, "bf16": 2e-5})
    wobbly = dataclasses.replace(_fake_timing(2e-5), converged=False, p20_s=2e-6, p80_s=8e-5)
    timer = script.timer
    script.timer = lambda kernel, *a: wobbly if kernel.precision == "bf16" else timer(kernel, *a)
    from roofline_kernels import measure as measure_mod
    monkeypatch.setattr(measure_mod.Measurement, "contention", property(
        lambda self: ["busy CPU: 80%"] if self.precision == "bf16" else []))
    rep = _run(device_info, hardware_entry, script, "fp32,bf16")
    said = [n for n in spot.notes(rep) if n.startswith("bf16")]
    assert len(said) == 1 and "the baseline" in said[0] and "busy CPU: 80%" in said[0] and "not settled" in said[0]
    assert not any(n.startswith("fp32") for n in spot.notes(rep))
    assert all("telemetry" in r for r in rep.records())
