"""Whole-model recommendations: the fastest formats that fit, per layer kind where that pays."""
import pytest

from roofline import get_model_config, model_step, predict, recommend_quantization
from roofline.plan import _single, recommend_model, tokens_per_step


def test_a_70b_model_trips_a_24_gb_limit_that_every_one_of_its_gemms_passes():
    # the per-GEMM check only ever saw one projection's weights: 8192 x 28672 in int4 is 0.12 GB
    cfg = get_model_config("llama3-70b")
    per_gemm = recommend_quantization("gb10", 1, cfg.intermediate, cfg.hidden, memory_limit_gb=24)
    assert per_gemm.precision
    with pytest.raises(ValueError, match=r"nothing fits in 24 GB \(memory limit 24 GB\): the smallest, .*, needs "
                                         r"40.\d GB \(weights 39"):
        recommend_model("llama3-70b", "gb10", context=4096, memory_limit_gb=24)
    with pytest.raises(ValueError, match="rtx4090 memory 24 GB"):  # the device's own memory is a limit too
        recommend_model("llama3-70b", "rtx4090")


def test_decode_on_bandwidth_bound_hardware_picks_the_fewest_bytes_and_says_so():
    rec = recommend_model("llama3-8b", "gb10", "decode", batch=1, context=4096)
    assert rec.chosen.prediction.bound == "memory" and "memory-bound on gb10" in rec.reason
    assert rec.chosen.memory.total_bytes < 0.4 * rec.baseline.memory.total_bytes  # a ~4-bit format
    assert rec.tokens_per_s == pytest.approx(1 / rec.chosen.time_s)
    assert rec.predicted_speedup == pytest.approx(rec.baseline.time_s / rec.chosen.time_s) and rec.predicted_speedup > 3
    assert all(_single(p.choice) for p in rec.ranking)  # a dense model takes one format


def test_prefill_on_compute_bound_hardware_picks_the_fastest_native_math():
    rec = recommend_model("llama3-8b", "h100", "prefill", batch=1, context=4096)
    assert rec.label == "fp8_e4m3" and "compute-bound on h100_sxm" in rec.reason and "fp8 peak 1979" in rec.reason
    assert rec.tokens_per_s == pytest.approx(4096 / rec.chosen.time_s)


def test_memory_decides_when_the_fastest_does_not_fit_and_the_reason_names_it():
    free = recommend_model("llama3-8b", "h100", "prefill", context=4096)
    tight = recommend_model("llama3-8b", "h100", "prefill", context=4096, memory_limit_gb=7)
    assert free.label == "fp8_e4m3" and tight.label != "fp8_e4m3"
    assert tight.chosen.memory.total_bytes <= 7e9
    assert "memory decided: fp8_e4m3 would be" in tight.reason and "> 7 GB (memory limit 7 GB)" in tight.reason


def test_a_moe_model_mixes_formats_per_layer_kind_only_where_that_pays():
    # Qwen3-30B-A3B prefill of 512 tokens on H100: attention wants FP8 math, the 128 experts (32 rows each)
    # stay bandwidth-bound and want the fewest bytes
    rec = recommend_model("qwen3-30b-a3b", "h100", "prefill", context=512)
    assert not _single(rec.chosen.choice) and rec.label == "fp8_e4m3 + experts int4_tinygemm/bf16"
    best_single = min((p for p in rec.ranking if p.time_s and _single(p.choice)), key=lambda p: p.time_s)
    gain = best_single.time_s / rec.chosen.time_s - 1
    assert gain > 0.02 and f"per layer kind pays: {gain:.0%} faster" in rec.reason
    # with a tie tolerance above that gain, one format for the whole model wins
    lenient = recommend_model("qwen3-30b-a3b", "h100", "prefill", context=512, tie_tolerance=gain + 0.01)
    assert _single(lenient.chosen.choice)


def test_gpt_oss_keeps_its_published_mxfp4_experts_and_predicts_its_decode_rate():
    rec = recommend_model("gpt-oss-120b", "gb10", "decode", context=4096)
    assert rec.chosen.choice.experts.weight == "mxfp4" and "experts kept as published" in rec.reason
    assert rec.baseline.label == "bf16 + experts mxfp4/bf16"  # the checkpoint as shipped
    step = model_step(get_model_config("gpt-oss-120b"), "decode", 1, 4096, **rec.chosen.choice.formats("bf16"))
    assert rec.tokens_per_s == pytest.approx(1 / predict(step, "gb10").time_s)
    assert 60 < rec.tokens_per_s < 120  # ~3 GB a token at 273 GB/s
    assert rec.chosen.memory.fits and rec.chosen.memory.total_bytes < 70e9


def test_the_lm_head_option_reaches_the_recommendation():
    default = recommend_model("llama3-8b", "gb10", "decode")
    head16 = recommend_model("llama3-8b", "gb10", "decode", lm_head="bf16")
    assert head16.chosen.prediction.bytes > default.chosen.prediction.bytes * 1.15
    assert head16.tokens_per_s < default.tokens_per_s


def test_tokens_per_step_and_bad_inputs():
    assert tokens_per_step("decode", 8, 4096) == 8 and tokens_per_step("prefill", 2, 512) == 1024
    for kwargs, match in ((dict(phase="train"), "unknown phase 'train'; allowed: prefill, decode"),
                          (dict(baseline="int8"), "baseline 'int8' must be a 16/32-bit float"),
                          (dict(memory_limit_gb=0), "memory_limit_gb=0 is invalid"),
                          (dict(tie_tolerance=1.5), "tie_tolerance=1.5 must be in")):
        with pytest.raises(ValueError, match=match):
            recommend_model("llama3-8b", "gb10", **kwargs)
    with pytest.raises(ValueError, match="unknown model 'gpt5'"):
        recommend_model("gpt5", "gb10")
