"""The CLI for whole models: recommend --model, predict model's memory plan and the model precision flags."""
import io
import json

import pytest

from roofline import get_model_config, tensor_bytes
from roofline.cli import main


def run(*argv):
    out = io.StringIO()
    rc = main(list(argv), out=out)
    return rc, out.getvalue()


def test_recommend_model_answers_with_formats_reason_tokens_per_second_and_memory():
    rc, text = run("recommend", "--model", "gpt-oss-120b", "--hardware", "gb10", "--phase", "decode", "--json")
    d = json.loads(text)
    assert rc == 0 and d["model"] == "gpt-oss-120b" and "experts mxfp4" in d["precision"]
    assert 60 < d["tokens_per_s"] < 120 and d["memory"]["fits"] is True and "memory-bound on gb10" in d["reason"]
    rc, text = run("recommend", "--model", "qwen3-30b-a3b", "--hardware", "h100", "--phase", "prefill",
                   "--context", "512", "--batch", "1")
    assert rc == 0 and "per layer kind pays" in text and "tokens/s" in text and "fits" in text


def test_recommend_model_trips_a_memory_limit_the_per_gemm_check_lets_through(capsys):
    assert run("recommend", "--hardware", "gb10", "--m", "1", "--n", "28672", "--k", "8192",
               "--memory-limit-gb", "24")[0] == 0
    rc, _ = run("recommend", "--model", "llama3-70b", "--hardware", "gb10", "--memory-limit-gb", "24")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "nothing fits in 24 GB" in err and "llama3-70b" in err


def test_predict_model_says_when_it_does_not_fit():
    argv = ("predict", "model", "--model", "llama3-70b", "--hardware", "rtx4090", "--weight-precision",
            "int4_tinygemm", "--act-precision", "bf16")
    rc, text = run(*argv)
    assert rc == 0 and "DOES NOT FIT" in text and "tokens/s" in text
    d = json.loads(run(*argv, "--json")[1])
    assert d["memory"]["fits"] is False and d["memory"]["total_gb"] > 24 and d["tokens_per_s"] == \
        pytest.approx(1 / d["time_s"])
    d = json.loads(run("predict", "model", "--model", "llama3-8b", "--hardware", "rtx4090", "--memory-limit-gb",
                       "10", "--json")[1])
    assert d["memory"]["capacity_gb"] == 10 and d["memory"]["fits"] is False  # bf16 weights alone are 16 GB


def test_lm_head_and_expert_precision_flags_reach_the_model_step():
    base = ("predict", "model", "--model", "llama3-8b", "--weight-precision", "int4_tinygemm", "--act-precision",
            "bf16", "--json")
    w4 = json.loads(run(*base)[1])
    head16 = json.loads(run(*base, "--lm-head-precision", "bf16")[1])
    cfg = get_model_config("llama3-8b")
    extra = tensor_bytes("bf16", cfg.vocab * cfg.hidden) - tensor_bytes("int4_tinygemm", cfg.vocab * cfg.hidden)
    assert head16["bytes"] - w4["bytes"] == pytest.approx(extra)
    head_gb = tensor_bytes("bf16", cfg.vocab * cfg.hidden) / 1e9
    assert head16["memory"]["weights_gb"]["lm_head"] == pytest.approx(head_gb)
    oss = ("predict", "model", "--model", "gpt-oss-20b", "--precision", "bf16", "--json")
    published, requantized = (json.loads(run(*oss, *extra_args)[1]) for extra_args in
                              ((), ("--expert-precision", "int8")))
    assert requantized["memory"]["weights_gb"]["experts"] > 1.8 * published["memory"]["weights_gb"]["experts"]


@pytest.mark.parametrize("argv", [
    ["recommend", "--model", "llama3-8b", "--m", "4"],
    ["recommend", "--context", "4096"],
    ["recommend", "--model", "gpt5"],
    ["recommend", "--model", "llama3-8b", "--lm-head-precision", "fp9"],
    ["recommend", "--model", "llama3-8b", "--context", "0"],
    ["predict", "model", "--lm-head-precision", "int3"],
    ["predict", "model", "--model", "gpt-oss-20b", "--expert-precision", "fp9"],
    ["predict", "model", "--memory-limit-gb", "-2"],
], ids=" ".join)
def test_bad_model_flags_are_one_line_on_stderr_and_exit_2(argv, capsys):
    rc, _ = run(*argv)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err
