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


@pytest.mark.parametrize("hw, precision, speedup", [("gb10", "nvfp4", 8.0), ("b200", "nvfp4", 4.0),
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
