"""The CLI: answers, --json shapes, and one-line errors with exit 2 for every bad input."""
import csv
import io
import ast
import json
import subprocess
from pathlib import Path
import sys

import pytest

from roofline.cli import main


def run(*argv):
    out = io.StringIO()
    rc = main(list(argv), out=out)
    return rc, out.getvalue()


def test_predict_json_has_the_documented_keys():
    rc, text = run("predict", "gemv", "--hardware", "b10", "--n", "4096", "--k", "4096", "--precision", "fp16",
                   "--json")
    d = json.loads(text)
    assert rc == 0
    assert {"flops", "bytes", "ai", "time_s", "t_memory_s", "t_compute_s", "bound", "critical_ai", "precision",
            "hardware"} <= set(d)
    assert d["hardware"] == "gb10" and d["bound"] == "memory" and d["time_s"] == pytest.approx(123e-6, rel=2e-3)


@pytest.mark.parametrize("argv", [
    ["predict", "gemm", "--m", "8192", "--n", "8192", "--k", "8192", "--precision", "bf16", "--hardware", "h100"],
    ["predict", "attention", "--batch", "4", "--heads", "32", "--kv-heads", "8", "--seq-kv", "4096",
     "--kv-precision", "fp8_e4m3", "--act-precision", "bf16"],
    ["predict", "attention", "--phase", "prefill", "--seq-kv", "2048"],
    ["predict", "ffn", "--m", "16"],
    ["predict", "layer", "--model", "llama3-8b", "--phase", "prefill", "--seq-len", "512"],
    ["predict", "model", "--model", "70b", "--precision", "nvfp4", "--hardware", "b10"],
    ["predict", "model", "--model", "llama3-8b", "--hidden-size", "2048", "--layers", "2", "--weight-precision",
     "int4_g128", "--act-precision", "fp16"],
    ["predict", "gemv", "--hardware", "jetson_orin_nano", "--power-mode", "7W", "--precision", "int8"],
    ["predict", "gemv", "--hardware", "gb10", "--gpu-clock-mhz", "1200", "--launch-overhead-us", "4"],
])
def test_predict_variants_answer_in_text_and_json(argv):
    rc, text = run(*argv)
    assert rc == 0 and "bound" in text
    rc, text = run(*argv, "--json")
    d = json.loads(text)
    assert rc == 0 and d["time_s"] > 0 and d["bound"] in ("memory", "compute")


def test_model_json_breaks_down_per_op():
    rc, text = run("predict", "model", "--model", "llama3-8b", "--json")
    d = json.loads(text)
    names = [p["name"] for p in d["parts"]]
    assert names == ["embedding", "layers", "final_norm", "lm_head"]
    assert d["parts"][1]["repeat"] == 32 and d["kernels"] == 291


def test_formats_json():
    rc, text = run("formats", "--json")
    rows = {r["name"]: r for r in json.loads(text)}
    assert rows["nvfp4"]["bits_per_element"] == 4.5 and rows["mxfp4"]["bits_per_element"] == 4.25


def test_hardware_table_and_detail():
    rc, text = run("hardware")
    assert rc == 0 and "gb10" in text and "989.4" in text
    rc, text = run("hardware", "b10")
    assert "273" in text and "huggingface.js" in text
    rc, text = run("hardware", "--json")
    assert {h["key"] for h in json.loads(text)} >= {"gb10", "h100_sxm", "jetson_orin_nano"}


def test_recommend_json():
    rc, text = run("recommend", "--hardware", "gb10", "--m", "1", "--n", "4096", "--k", "4096", "--phase",
                   "decode", "--json")
    d = json.loads(text)
    assert {"precision", "method", "reason", "predicted_speedup"} <= set(d)
    assert d["predicted_speedup"] > 3


def test_sweep_csv_to_a_file(tmp_path):
    path = tmp_path / "sweep.csv"
    rc, text = run("sweep", "--hardware", "gb10,h100", "--precisions", "fp16,nvfp4", "--shapes",
                   "1x4096x4096,4096x4096x4096", "--format", "csv", "--output", str(path))
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert rc == 0 and len(rows) == 8
    h100_nvfp4 = [r for r in rows if r["hardware"] == "h100_sxm" and r["precision"] == "nvfp4"]
    assert len(h100_nvfp4) == 2 and all(r["status"].startswith("unsupported") for r in h100_nvfp4)  # both shapes
    assert not list(tmp_path.glob(".*tmp"))


def test_custom_hardware_file_and_calibration(tmp_path, isolated_registry):
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps({"key": "edge_asic", "bandwidth_gbs": 50, "peaks_tflops": {"int8": 10},
                              "native": ["int8"]}))
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"hardware": "edge_asic", "bandwidth_gbs": 40, "peaks_tflops": {"int8": 8}}))
    rc, text = run("predict", "gemv", "--hardware-file", str(hw), "--hardware", "edge_asic", "--precision", "int8",
                   "--calibration", str(cal), "--json")
    d = json.loads(text)
    assert rc == 0 and d["peaks"] == "calibrated" and d["bandwidth_gbs"] == 40


BAD = [
    ["predict", "gemv", "--n", "0"],
    ["predict", "gemv", "--n", "-4"],
    ["predict", "gemv", "--n", "nan"],
    ["predict", "gemv", "--k", "1e3"],
    ["predict", "gemv", "--n", "99999999999"],
    ["predict", "gemm", "--precision", "fp9"],
    ["predict", "gemm", "--weight-precision", "int3", "--act-precision", "fp16"],
    ["predict", "gemv", "--hardware", "tpu"],
    ["predict", "gemm", "--precision", "nvfp4", "--hardware", "h100"],
    ["predict", "attention", "--seq-q", "10", "--seq-kv", "5", "--phase", "prefill"],
    ["predict", "attention", "--heads", "32", "--kv-heads", "5"],
    ["predict", "model", "--model", "gpt5"],
    ["predict", "gemm", "--peaks", "calibrated"],
    ["predict", "gemm", "--calibration", "/nonexistent/cal.json"],
    ["predict", "gemm", "--hardware-file", "/nonexistent/hw.json"],
    ["predict", "gemv", "--hardware", "h100", "--power-mode", "7W"],
    ["predict", "gemv", "--gpu-clock-mhz", "inf"],
    ["predict", "conv"],
    ["recommend", "--memory-limit-gb", "-1"],
    ["recommend", "--phase", "train"],
    ["recommend", "--baseline", "int8"],
    ["schedule", "--baseline", "nf4", "--hardware", "h100"],  # took nf4 activations for the weight-only paths
    ["predict", "model", "--phase", "prefill", "--seq-kv", "8192", "--batch", "2147483647"],  # said m=1.7e13
    ["recommend", "--n", "65536", "--k", "65536", "--memory-limit-gb", "0.001"],
    ["sweep", "--shapes", "1x2"],
    ["sweep", "--shapes", "0x4x4"],
    ["sweep", "--precisions", "fp9"],
    ["hardware", "tpu"],
    ["frobnicate"],
    [],
]


@pytest.mark.parametrize("argv", BAD, ids=lambda a: " ".join(a) or "no-args")
def test_bad_input_is_one_line_on_stderr_and_exit_2(argv, capsys):
    out = io.StringIO()
    rc = main(argv, out=out)
    err = capsys.readouterr().err
    assert rc == 2
    assert out.getvalue() == "", "no number may be printed for bad input"
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "error" in err


# a flag the operator does not read was ignored and the default's number printed (predict gemv --m 64: M = 1)
IGNORED = [
    (["predict", "gemv", "--m", "64"], "--m 64: gemv does not use it"),
    (["predict", "model", "--m", "128"], "--m 128: model does not use it"),
    (["predict", "ffn", "--n", "99", "--k", "77"], "--n 99: ffn does not use it"),
    (["predict", "attention", "--weight-precision", "int4"], "--weight-precision int4: attention does not use it"),
    (["predict", "layer", "--lm-head-precision", "int4"], "--lm-head-precision int4: layer does not use it"),
    (["predict", "layer", "--heads", "64"], "--heads 64: layer does not use it"),
    (["predict", "gemm", "--kv-precision", "fp8_e4m3"], "--kv-precision fp8_e4m3: gemm does not use it"),
    (["predict", "gemm", "--phase", "prefill"], "--phase prefill: gemm does not use it"),
    (["predict", "gemm", "--memory-limit-gb", "3"], "--memory-limit-gb 3: gemm does not use it"),
    (["predict", "gemm", "--deployment", "hf"], "--deployment hf: gemm does not use it"),
    (["predict", "gemm", "--model", "llama3-8b"], "--model llama3-8b: gemm does not use it"),
    (["energy", "gemv", "--m", "4"], "--m 4: gemv does not use it"),
    (["measure", "gemv", "--m", "4", "--n", "256", "--k", "256"], "--m 4: gemv does not use it"),
    (["measure", "attention", "--n", "256"], "--n 256: attention does not use it"),
    # measure times the path's own output format: predict's --out-precision was ignored there
    (["measure", "gemv", "--out-precision", "fp32", "--n", "256", "--k", "256"], "--out-precision fp32: gemv does"),
]


@pytest.mark.parametrize("argv, says", IGNORED, ids=lambda a: " ".join(a) if isinstance(a, list) else "")
def test_a_flag_the_operator_does_not_read_is_refused_not_ignored(argv, says, capsys):
    from roofline.__main__ import main as full_main  # measure is the kernels layer's command
    rc = full_main(argv)
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and says in err and "it takes --" in err, err


@pytest.mark.parametrize("argv", [
    ["predict", "gemv", "--m", "1", "--n", "512"],  # the one M a GEMV is: said, not refused
    ["predict", "gemm", "--m", "64", "--precision", "bf16"],
    ["predict", "ffn", "--m", "4", "--hidden-size", "1024", "--intermediate-size", "4096"],
    ["predict", "attention", "--seq-len", "4096", "--phase", "prefill", "--kv-precision", "fp8_e4m3"],
    ["predict", "layer", "--model", "llama3-8b", "--phase", "prefill", "--batch", "2"],
    ["predict", "model", "--model", "llama3-8b", "--lm-head-precision", "bf16", "--memory-limit-gb", "30",
     "--layers", "2"],
])
def test_the_flags_an_operator_reads_are_taken(argv):
    rc, text = run(*argv)
    assert rc == 0 and text


@pytest.mark.parametrize("flag, content, says", [
    ("--hardware-file", {"key": "x", "peaks_tflops": [1, 2]}, "x peaks_tflops must be a JSON object"),
    ("--hardware-file", 42, "a hardware definition is a JSON object; got int 42"),
    ("--hardware-file", {"key": "x", "native": "fp16", "bandwidth_gbs": 100}, "x native must be a JSON list of names"),
    ("--hardware-file", {"key": "x", "aliases": "y", "bandwidth_gbs": 100}, "x aliases must be a JSON list"),
    ("--calibration", {"cache_bandwidth_gbs": [1]}, "'cache_bandwidth_gbs' must be an object"),
    ("--calibration", {"cache_bandwidth_gbs": {"l2": "fast"}}, "'cache_bandwidth_gbs' must map levels to GB/s"),
    ("--calibration", {"details": {"efficiency": "x"}}, "details.efficiency must be an object"),
    ("--calibration", {"details": {"efficiency": {"meta": 3, "samples": {}}}}, "details.efficiency must be an object"),
    ("--calibration", {"device": "abc"}, "'device' must be an object, got str 'abc'"),
    ("--calibration", [1, 2], "is a JSON list, not an object"),
])
def test_a_malformed_file_is_one_line_naming_what_is_wrong(flag, content, says, tmp_path, capsys):
    # each was a traceback (AttributeError, TypeError: exit 1) or an error naming no field
    if flag == "--calibration" and isinstance(content, dict):
        content = {"hardware": "h100_sxm", "peaks_tflops": {"bf16": 900}, "bandwidth_gbs": 3000, **content}
    f = tmp_path / "f.json"
    f.write_text(json.dumps(content))
    argv = ["predict", "gemv", flag, str(f)] + (["--hardware", "x"] if flag == "--hardware-file" else [])
    rc = main(argv, out=io.StringIO())
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and says in err, err


def test_module_entry_point_and_exit_code():
    ok = subprocess.run([sys.executable, "-m", "roofline", "predict", "gemv", "--json"], capture_output=True,
                        text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["bound"] == "memory"
    bad = subprocess.run([sys.executable, "-m", "roofline", "predict", "gemv", "--n", "0"], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.strip().splitlines()) == 1


def test_theory_never_imports_torch():
    # the composed entry point: the measure/quantize commands are registered, yet a theory command loads no torch
    code = "import sys, io; from roofline.__main__ import main; " \
           "main(['predict', 'model'], out=io.StringIO()); print('torch' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "False", res.stderr


def _imported_modules(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_the_pure_layer_never_reaches_up():
    """No module of roofline/ imports kernels, quantize or torch; only the thin entry point names the layers."""
    root = Path(__file__).resolve().parents[1] / "roofline"
    offenders = {f"{path.relative_to(root)}: {mod}" for path in root.rglob("*.py") if path.name != "__main__.py"
                 for mod in _imported_modules(path) if mod.split(".")[0] in ("roofline_kernels", "roofline_quantize", "torch", "torchao")}
    assert not offenders, f"roofline/ reaches up: {sorted(offenders)}"


def test_each_layer_registers_its_own_commands():
    from roofline import cli
    from roofline.__main__ import layers
    theory = cli.build_parser()._subparsers._group_actions[0].choices
    assert {"predict", "recommend", "sweep", "hardware", "formats"} <= set(theory)
    assert not {"measure", "calibrate", "quantize", "doctor"} & set(theory)
    composed = cli.build_parser(layers())._subparsers._group_actions[0].choices
    assert {"measure", "calibrate", "quantize", "doctor"} <= set(composed)


class _ReaderGone(io.StringIO):
    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")


def test_broken_pipe_is_quiet(capsys):
    """`roofline hardware | head -1`: the reader leaves early; no traceback, the SIGPIPE exit status."""
    assert main(["hardware"], out=_ReaderGone()) == 141
    assert capsys.readouterr().err == ""


def test_broken_pipe_through_a_shell():
    # Whether the write fails depends on when `head` exits, so both outcomes are allowed; a traceback is not.
    res = subprocess.run(["bash", "-c", f"'{sys.executable}' -m roofline hardware | head -c 1; "
                          "exit ${PIPESTATUS[0]}"], capture_output=True, text=True)
    assert res.returncode in (0, 141) and "Traceback" not in res.stderr, res.stderr


def test_a_profile_names_the_device_it_describes_and_refuses_another(tmp_path, capsys):
    """``--calibration`` without ``--hardware`` predicts for the device the profile was measured on (a CPU host's,
    whose measured bf16 path is its math path there), not for ``predict``'s default gb10: held beside gb10's name
    and 121 GB, a CPU host's peaks planned a model against a memory it does not have. A profile beside another
    device's ``--hardware`` is refused on one line naming both, exit 2."""
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"hardware": "cpu", "bandwidth_gbs": 35, "peaks_tflops": {"fp32": 0.2, "bf16": 0.4}}))
    rc, text = run("predict", "gemv", "--precision", "bf16", "--calibration", str(cal), "--json")
    d = json.loads(text)
    assert rc == 0 and d["hardware"] == "cpu" and d["peaks"] == "calibrated" and d["bandwidth_gbs"] == 35
    rc, text = run("predict", "model", "--model", "llama3-8b", "--precision", "bf16", "--calibration", str(cal))
    assert rc == 0 and "step on cpu" in text and "gb10" not in text, text
    capsys.readouterr()
    rc, text = run("predict", "gemv", "--hardware", "h100", "--precision", "bf16", "--calibration", str(cal))
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "measured on 'cpu', not 'h100_sxm'" in err and "Traceback" not in err, err
    rc, _ = run("predict", "gemv", "--hardware", "gb10", "--precision", "bf16")  # no profile: the default stands
    assert rc == 0
    cal.write_text(json.dumps({"hardware": "GB10", "bandwidth_gbs": 200, "peaks_tflops": {"fp16": 50}}))
    rc, text = run("predict", "gemv", "--calibration", str(cal))  # a key as get_hardware reads it: any case
    assert rc == 0 and "on gb10" in text, text


@pytest.mark.parametrize("how", ["key", "device"])
def test_a_jetson_profile_predicts_in_the_power_mode_it_was_measured_in(how, tmp_path, capsys):
    """A profile is of one nvpmodel mode (its key's, as a simulated board names it, or the mode its device reported):
    without --power-mode, predict holds it beside that mode's roofs, not MAXN's (a class it did not calibrate then
    took MAXN_SUPER's datasheet peak, 1.7x the 15W one); a --power-mode of another mode is refused."""
    from roofline import Calibration
    from roofline.clocks import apply_power_mode
    key = "jetson_orin_nano_super"
    cal = (Calibration(f"{key}@nvpmodel 15W", {"int8": 15.0}, 50.0) if how == "key" else
           Calibration(key, {"int8": 15.0}, 50.0, device={"power_mode": {"mode": "15W", "id": 0}}))
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(cal.to_dict()))
    gemm = ["predict", "gemm", "--m", "4096", "--n", "4096", "--k", "4096", "--precision", "bf16", "--calibration",
            str(path), "--json"]
    for extra in ([], ["--power-mode", "15W"], ["--power-mode", "0"]):
        rc, text = run(*gemm, *extra)
        d = json.loads(text)
        assert rc == 0 and d["hardware"] == f"{key}@nvpmodel 15W", (extra, d["hardware"])
        assert d["peak_tflops"] == pytest.approx(apply_power_mode(key, "15W").peaks["bf16"].value)  # uncalibrated
    rc, text = run(*gemm, "--power-mode", "25W")
    err = capsys.readouterr().err
    assert rc == 2 and text == "" and len(err.strip().splitlines()) == 1
    assert f"measured on {key} in 15W" in err and "load a profile measured in 25W" in err


def test_the_hardware_table_keeps_every_key_apart_from_its_arch():
    # a 25-letter key (jetson_orin_nx_16gb_super) ran into its arch in a 24-wide column: "...supersm_87"
    from roofline import known_hardware, get_hardware
    rc, text = run("hardware")
    rows = text.splitlines()[1:1 + len(known_hardware())]
    starts = {row.index(get_hardware(row.split()[0]).arch, len(row.split()[0])) for row in rows}
    assert rc == 0 and len(starts) == 1
    assert all(row[len(row.split()[0]):].startswith("  ") for row in rows)
