"""Predictions: worked cases, compute paths, composites, launch overhead."""
import pytest

from roofline import (REGISTRY, UnsupportedPathError, attention, compute_path, gemm, gemv, get_model_config,
                      model_step, predict)

REQUIRED_KEYS = {"flops", "bytes", "ai", "critical_ai", "t_memory_s", "t_compute_s", "time_s", "bound",
                 "attainable_tflops", "precision", "hardware", "peak_tflops", "bandwidth_gbs", "method", "peaks"}


def test_gemv_fp16_on_gb10_is_memory_bound_at_123us():
    p = predict(gemv(4096, 4096, "fp16"), "gb10")
    assert p.bound == "memory"
    assert p.time_s == pytest.approx((4096 * 4096 * 2 + 2 * 4096 * 2) / 273e9)
    assert p.time_s == pytest.approx(123e-6, rel=2e-3)


def test_gemm_8192_bf16_on_h100_is_compute_bound_at_1_11ms():
    p = predict(gemm(8192, 8192, 8192, "bf16"), "h100")
    assert p.bound == "compute"
    assert p.time_s == pytest.approx(2 * 8192**3 / 989.4e12)
    assert p.time_s == pytest.approx(1.11e-3, rel=2e-3)
    assert p.critical_ai == pytest.approx(989.4e12 / 3350e9)


def test_prediction_carries_the_required_fields():
    d = predict(gemm(64, 64, 64, "fp16"), "h100").to_dict()
    assert REQUIRED_KEYS <= set(d)


@pytest.mark.parametrize("hw, w, a, cls, method", [
    ("h100", "fp8_e4m3", "fp8_e4m3", "fp8", "native"),
    ("h100", "fp8_e4m3", "fp8_e5m2", "fp8", "native"),
    ("h100", "int8", "int8", "int8", "native"),
    ("h100", "int4_g128", "fp16", "fp16", "weight-only"),   # dequantise path: the 16-bit peak
    ("h100", "nvfp4", "bf16", "bf16", "weight-only"),
    ("a100", "int4", "int4", "int4", "native"),
    ("a100", "fp8_e4m3", "fp16", "fp16", "weight-only"),
    ("gb10", "nvfp4", "nvfp4", "fp4", "native"),
    ("gb10", "mxfp6", "mxfp6", "fp8", "native"),            # MX FP6 runs at the FP8 rate on Blackwell
    ("b200", "mxfp4", "mxfp4", "fp4", "native"),
    ("h100", "tf32", "tf32", "tf32", "native"),
])
def test_compute_path_uses_the_precision_the_math_runs_in(hw, w, a, cls, method):
    path = compute_path(hw, w, a)
    assert path.compute_class == cls and path.method.startswith(method)


@pytest.mark.parametrize("hw, w, a", [
    ("h100", "int4", "int4"),          # no INT4 tensor-core rate on Hopper
    ("h100", "nvfp4", "nvfp4"),        # FP4 math is Blackwell-only
    ("a100", "fp8_e4m3", "fp8_e4m3"),  # no FP8 on Ampere
    ("jetson_orin_nano", "mxfp8", "mxfp8"),
    ("gb10", "fp16", "int8"),          # wider weights than activations: nothing runs that
    ("gb10", "fp16", "bf16"),
])
def test_no_path_is_said_so_not_silently_priced(hw, w, a):
    with pytest.raises(UnsupportedPathError) as e:
        predict(gemm(16, 16, 16, weight=w, act=a), hw)
    assert hw.split("_")[0] in str(e.value) and "what would run instead" in str(e.value)


def test_launch_overhead_is_reported_beside_the_roofline_time():
    bare = predict(gemv(4096, 4096, "fp16"), "gb10")
    p = predict(gemv(4096, 4096, "fp16"), "gb10", launch_overhead_s=5e-6)
    assert p.time_s == bare.time_s
    assert p.time_with_overhead_s == pytest.approx(bare.time_s + 5e-6)


def test_model_step_sums_its_kernels_and_counts_them():
    cfg = get_model_config("llama3-8b")
    c = predict(model_step(cfg, "decode", 1, 2048, "bf16"), "gb10", launch_overhead_s=4e-6)
    flat = list(c.flat())
    assert c.kernels == sum(m for _, m in flat) == 3 + cfg.layers * 9  # embedding, final norm, LM head + 9 per layer
    assert c.time_s == pytest.approx(sum(p.time_s * m for p, m in flat))
    assert c.bytes == pytest.approx(sum(p.bytes * m for p, m in flat))
    assert c.launch_overhead_s == pytest.approx(4e-6 * c.kernels)
    assert c.bound == "memory"
    d = c.to_dict()
    assert REQUIRED_KEYS - {"attainable_tflops", "peak_tflops", "bandwidth_gbs", "method"} <= set(d)


def test_prefill_of_a_long_prompt_is_compute_bound():
    c = predict(model_step(get_model_config("llama3-8b"), "prefill", 1, 4096, "bf16"), "h100")
    assert c.bound == "compute"


def test_decode_tokens_per_second_follow_bandwidth_over_weight_bytes():
    cfg = get_model_config("llama3-70b")
    c = predict(model_step(cfg, "decode", 1, 128, "nvfp4"), "gb10")
    weights = cfg.linear_params * 4.5 / 8
    assert 1 / c.time_s == pytest.approx(273e9 / weights, rel=0.02)


def test_attention_decode_is_memory_bound_on_every_gpu():
    for hw in ("gb10", "h100", "a100", "jetson_orin_nano"):
        assert predict(attention(8, 32, 8, 1, 8192, 128, precision="fp16"), hw).bound == "memory"


def test_unknown_peaks_source():
    with pytest.raises(ValueError, match="allowed: datasheet, calibrated"):
        predict(gemv(8, 8), "gb10", peaks="measured")


def test_host_cpu_entry_needs_a_calibration():
    with pytest.raises(ValueError, match="calibrat"):
        predict(gemv(8, 8, "fp32"), "cpu")


# shared/reference/hardware.md, native-precision matrix: MXFP8/MXFP6 (and MXFP4) are native on Blackwell only.
MX_NATIVE = {"gb10", "b200", "rtx5090"}


@pytest.mark.parametrize("key", sorted(k for k, hw in REGISTRY.items() if hw.peaks and hw.bandwidth))
def test_mixed_mx_runs_natively_on_blackwell_at_the_slower_operands_rate(key):
    assert MX_NATIVE == {k for k, hw in REGISTRY.items() if hw.arch in ("sm_100", "sm_120", "sm_121")}
    cost = gemm(4096, 4096, 4096, weight="mxfp6", act="mxfp8")
    if key not in MX_NATIVE:
        with pytest.raises(UnsupportedPathError) as e:
            predict(cost, key)
        msg = str(e.value)
        assert "mixed MX mxfp6 weights x mxfp8 activations run natively only where both formats are native" in msg
        assert f"{key} ({REGISTRY[key].arch}) has no native mxfp6 or mxfp8" in msg
        return
    p = predict(cost, key)
    assert (p.compute_class, p.peak_tflops) == ("fp8", REGISTRY[key].peaks["fp8"].value)
    assert p.method.startswith("native mixed MX mxfp6 x mxfp8")
    assert cost.operand_bytes["weights"] == 4096 * 4096 * 6.25 / 8
    assert cost.operand_bytes["activations"] == 4096 * 4096 * 8.25 / 8
    # either order; MXFP4 with a wider MX operand runs the f8f6f4 MMA at the FP8 rate, not the FP4 one
    assert compute_path(key, "mxfp8", "mxfp6").compute_class == "fp8"
    assert compute_path(key, "mxfp4", "mxfp8").compute_class == "fp8"
    assert compute_path(key, "mxfp4", "mxfp4").compute_class == "fp4"


@pytest.mark.parametrize("w, a", [("nvfp4", "mxfp8"), ("fp8_e4m3", "mxfp8"), ("mxfp6", "fp8_e5m2")])
def test_block_scales_that_differ_do_not_mix_even_on_blackwell(w, a):
    with pytest.raises(UnsupportedPathError, match="no block-scaled MMA takes both"):
        compute_path("b200", w, a)
