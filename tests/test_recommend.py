"""The quantization recommender."""
import pytest

from roofline import compute_path, recommend_quantization
from roofline.predict import UnsupportedPathError


@pytest.mark.parametrize("hw", ["gb10", "h100", "a100", "jetson_orin_nano", "b200", "rtx4090"])
def test_never_recommends_a_path_the_hardware_cannot_run(hw):
    for m, phase in ((1, "decode"), (8192, "prefill")):
        rec = recommend_quantization(hw, m, 4096, 4096, phase)
        p = rec.prediction
        compute_path(hw, p.weight_format, p.act_format)  # raises if it cannot run
        for prec, _method, time_s, note in rec.ranking:
            if note.startswith("cannot run"):
                assert prec != rec.precision and time_s is None


@pytest.mark.parametrize("hw", ["gb10", "h100", "jetson_orin_nano", "a100"])
def test_decode_on_bandwidth_bound_hardware_picks_the_fewest_bytes_that_run(hw):
    rec = recommend_quantization(hw, 1, 4096, 4096, "decode")
    assert rec.prediction.bound == "memory"
    assert rec.precision == "int4_tinygemm/fp16"  # 4.25 bits: fewer than NVFP4's 4.5
    runnable = [r for r in rec.ranking if r[2] is not None]
    fastest = min(r[2] for r in runnable)
    # The fewest weight bytes win; a W4A4 path with the same 4.25-bit weights (MXFP4 on GB10) is faster
    # only by the activation vector (<0.1%), a tie that goes to the higher-precision W4A16.
    assert rec.prediction.time_s <= fastest * 1.02
    assert all(r[2] >= rec.prediction.time_s for r in runnable if not r[0].startswith("mxfp4"))
    assert rec.predicted_speedup == pytest.approx(rec.baseline.time_s / rec.prediction.time_s)
    assert 3.0 < rec.predicted_speedup < 4.0


@pytest.mark.parametrize("hw, precision, speedup", [("gb10", "nvfp4", 4.0), ("b200", "nvfp4", 4.0),
                                                    ("h100", "fp8_e4m3", 2.0), ("a100", "int8", 2.0)])
def test_compute_bound_prefill_picks_the_highest_throughput_native_format(hw, precision, speedup):
    rec = recommend_quantization(hw, 8192, 8192, 8192, "prefill")
    assert rec.prediction.bound == "compute"
    assert rec.precision == precision and rec.method.startswith(("native", "INT8 W8A8"))
    assert rec.predicted_speedup == pytest.approx(speedup, rel=0.02)


def test_ties_go_to_the_higher_precision():
    # On H100 FP8 and INT8 run at the same rate; FP8 keeps range (float before int at equal bits).
    rec = recommend_quantization("h100", 8192, 8192, 8192, "prefill")
    tied = [r for r in rec.ranking if r[2] == rec.prediction.time_s]
    assert len(tied) >= 2 and rec.precision == "fp8_e4m3"
    # A compute-bound shape on a part with no faster native path keeps fp16 over weight-only paths
    # that are not faster (ties within tolerance -> more bits).
    rec = recommend_quantization("jetson_orin_nano", 8192, 8192, 8192, "prefill", baseline="fp16",
                                 candidates=[c for c in __import__("roofline.recommend").recommend.CANDIDATES
                                             if c.act is None])
    assert rec.precision == "fp16" and rec.predicted_speedup == 1.0


def test_memory_limit_excludes_what_does_not_fit():
    # 32768 x 32768 weights: fp16 2.1 GB, int8 1.07 GB, int4 0.57 GB
    rec = recommend_quantization("h100", 8192, 32768, 32768, "prefill", memory_limit_gb=1.0)
    assert rec.precision == "int4_tinygemm/fp16"
    assert any("exceed" in r[3] for r in rec.ranking)
    with pytest.raises(ValueError, match="nothing fits in 0.1 GB"):
        recommend_quantization("h100", 1, 32768, 32768, "decode", memory_limit_gb=0.1)


@pytest.mark.parametrize("kwargs, msg", [(dict(phase="train"), "unknown phase"),
                                         (dict(memory_limit_gb=-1), "memory_limit_gb"),
                                         (dict(baseline="int8"), "baseline"),
                                         (dict(m=0), "allowed: integers")])
def test_bad_input(kwargs, msg):
    args = dict(hardware="gb10", m=1, n=64, k=64, phase="decode") | kwargs
    with pytest.raises(ValueError, match=msg):
        recommend_quantization(**args)


def test_unsupported_candidates_are_listed_with_their_reason():
    rec = recommend_quantization("h100", 1, 4096, 4096, "decode")
    cannot = {r[0]: r[3] for r in rec.ranking if r[2] is None}
    assert "nvfp4" in cannot and "h100_sxm" in cannot["nvfp4"]
    with pytest.raises(UnsupportedPathError):
        compute_path("h100", "nvfp4", "nvfp4")


def _binding_term(p) -> str:
    """The numbers of the roofline term that set ``p``'s time, as the reason must print them."""
    if p.bound == "memory":
        return f"{p.bytes / 1e6:.4g} MB at {p.bandwidth_gbs:g} GB/s"
    return f"{p.compute_class} peak {p.peak_tflops:g} TFLOP/s"


@pytest.mark.parametrize("hw, m, phase, winner_bound, runner_bound, decided_by", [
    ("h100", 1, "decode", "memory", "memory", "bytes"),             # both stream weights: fewer bytes win
    ("h100", 128, "prefill", "compute", "memory", "bytes"),         # INT4 at the fp16 peak beats FP8's bytes
    ("a100", 8192, "prefill", "compute", "compute", "compute peak"),  # INT8 624 vs the fp16 paths' 312
    ("rtx4090", 256, "prefill", "memory", "compute", "compute peak"),  # INT8's bytes beat FP8's 330.3 TFLOP/s
    ("h100", 8192, "prefill", "compute", "compute", "tie"),        # FP8 and INT8 both at 1979
])
def test_the_reason_names_what_decided_against_the_numbers(hw, m, phase, winner_bound, runner_bound, decided_by):
    rec = recommend_quantization(hw, m, 4096 if m < 8192 else 8192, 4096 if m < 8192 else 8192, phase)
    choice, runner = rec.prediction, rec.runner_up
    winner_part, runner_part = rec.reason.split("; runner-up ", 1)
    # the winner and the runner-up, each with the term that bound it and that term's numbers
    assert f"{choice.precision} " in winner_part and f"{choice.bound}-bound" in winner_part
    assert _binding_term(choice) in winner_part
    assert runner_part.startswith(f"{runner.precision} ") and f"{runner.bound}-bound" in runner_part
    assert _binding_term(runner) in runner_part
    assert (choice.bound, runner.bound, rec.decided_by) == (winner_bound, runner_bound, decided_by)
    # the runner-up is the fastest other candidate, and what decided follows from its roof
    others = [t for _, _, t, note in rec.ranking if t is not None and note != "chosen"]
    assert runner.time_s == min(others)
    if decided_by == "tie":
        assert runner.time_s <= min(choice.time_s, runner.time_s) * 1.02
        assert "tie goes to the more accurate, by floating point over integer" in rec.reason
    else:
        assert runner.time_s > choice.time_s * 1.02 and f"loses on {decided_by}" in rec.reason


def test_int4_beating_fp8_on_bytes_at_the_fp16_peak_is_not_called_a_peak_win():
    """H100, 128x4096x4096: W4A16 runs at the fp16 peak (2*128*4096^2 / 989.4e12 = 4.341 us) while FP8
    W8A8 must move 4096^2 + 128*4096 + 2*128*4096 = 18.35 MB (5.478 us at 3350 GB/s). It used to say
    'the highest-throughput native path wins; fp16 peak 989.4 vs 989.4'."""
    rec = recommend_quantization("h100", 128, 4096, 4096, "prefill")
    assert "4.341 us, compute-bound" in rec.reason and "fp16 peak 989.4 TFLOP/s" in rec.reason
    assert "runner-up fp8_e4m3 5.478 us, memory-bound (18.35 MB at 3350 GB/s" in rec.reason
    assert "fp8_e4m3 loses on bytes" in rec.reason and "989.4 vs 989.4" not in rec.reason
    assert rec.precision == "int4_tinygemm/fp16" and rec.decided_by == "bytes"


def test_weight_only_paths_are_not_offered_for_activations_their_kernels_do_not_take():
    """torchao's weight-only configs run bf16/fp16 models: with an fp32 baseline, 'int4_tinygemm/fp32 7.09x' was
    recommended for a kernel that does not exist. Each is listed, with why, and never chosen or scheduled."""
    from roofline.plan import recommend_model
    from roofline.recommend import WEIGHT_ONLY_ACTS
    from roofline.schedule import price_options
    rec = recommend_quantization("h100", 1, 4096, 4096, baseline="fp32")
    refused = {prec: note for prec, _, t, note in rec.ranking if t is None and "takes bf16 or fp16" in note}
    assert set(refused) == {"int4_tinygemm/fp32", "int8/fp32", "fp8_e4m3/fp32"} and "/fp32" not in rec.precision
    model = recommend_model("llama3-8b", "h100", baseline="fp32")
    assert "/fp32" not in model.label
    assert {p.label for p in model.ranking if p.prediction is None and "takes bf16 or fp16" in p.note} == set(refused)
    assert not any("/fp32" in o.label for o in price_options("llama3-8b", "h100", baseline="fp32"))
    # the activations they do take are offered as before
    for base in WEIGHT_ONLY_ACTS:
        labels = {prec for prec, *_ in recommend_quantization("h100", 1, 4096, 4096, baseline=base).ranking}
        assert f"int4_tinygemm/{base}" in labels


def test_a_gemm_recommendation_claims_no_phase_it_was_not_given():
    # "decode 4096x4096x4096" was printed for a prefill-sized GEMM: the phase defaulted to decode and was a label only
    assert recommend_quantization("gb10", 4096, 4096, 4096, phase=None).reason.startswith("4096x4096x4096 on gb10")
    assert recommend_quantization("gb10", 1, 4096, 4096, phase="decode").reason.startswith("decode 1x4096x4096")
