"""Theory checks for each registry entry, carrying that hardware's marker (`pytest -m b10` runs GB10's).

They need no device: they hold the registry's numbers and the model's consequences for that part.
"""
import pytest

from roofline import REGISTRY, attention, gemm, gemv, get_model_config, model_step, predict, recommend_quantization
from roofline.predict import UnsupportedPathError

DATASHEET = [k for k, hw in REGISTRY.items() if hw.peaks and hw.bandwidth]


def hw_param(key):
    return pytest.param(key, marks=getattr(pytest.mark, REGISTRY[key].family), id=key)


@pytest.mark.parametrize("key", [hw_param(k) for k in DATASHEET])
def test_decode_gemv_is_memory_bound_at_bytes_over_bandwidth(key):
    hw = REGISTRY[key]
    for fmt in sorted(hw.native - {"tf32"}):
        p = predict(gemv(4096, 4096, fmt), key)
        assert p.bound == "memory" and p.time_s == p.bytes / (hw.bandwidth.value * 1e9)


@pytest.mark.parametrize("key", [hw_param(k) for k in DATASHEET])
def test_large_gemm_is_compute_bound_at_flops_over_peak(key):
    p = predict(gemm(16384, 16384, 16384, "fp16"), key)
    assert p.bound == "compute" and p.time_s == 2 * 16384**3 / (REGISTRY[key].peaks["fp16"].value * 1e12)


@pytest.mark.parametrize("key", [hw_param(k) for k in DATASHEET])
def test_every_native_format_has_a_sourced_peak_and_others_are_refused(key):
    hw = REGISTRY[key]
    for fmt in hw.native:
        p = predict(gemm(256, 256, 256, fmt), key)
        assert p.method.startswith("native") and p.peak_source.startswith("datasheet")
    for fmt in {"nvfp4", "mxfp4", "fp8_e4m3", "int4"} - hw.native:
        with pytest.raises(UnsupportedPathError):
            predict(gemm(256, 256, 256, fmt), key)


@pytest.mark.parametrize("key", [hw_param(k) for k in DATASHEET])
def test_attention_decode_with_gqa_is_memory_bound(key):
    assert predict(attention(1, 32, 8, 1, 8192, 128, precision="fp16"), key).bound == "memory"


@pytest.mark.parametrize("key", [hw_param(k) for k in DATASHEET])
def test_recommendation_runs_and_beats_or_ties_fp16(key):
    for m, phase in ((1, "decode"), (8192, "prefill")):
        rec = recommend_quantization(key, m, 4096, 4096, phase)
        assert rec.predicted_speedup >= 1.0


@pytest.mark.b10
def test_gb10_worked_cases():
    assert predict(gemv(4096, 4096, "fp16"), "b10").time_s == pytest.approx(123e-6, rel=2e-3)
    assert recommend_quantization("b10", 8192, 8192, 8192, "prefill").precision == "nvfp4"
    step = predict(model_step(get_model_config("llama3-70b"), "decode", 1, 1024, "nvfp4"), "b10")
    # the published bandwidth roofline for 70B NVFP4 decode on GB10 is ~6.7 tok/s
    assert step.bound == "memory" and 6.0 < 1 / step.time_s < 7.5


@pytest.mark.h100
def test_h100_worked_case():
    assert predict(gemm(8192, 8192, 8192, "bf16"), "h100").time_s == pytest.approx(1.11e-3, rel=2e-3)
    with pytest.raises(UnsupportedPathError):
        predict(gemm(64, 64, 64, "int4"), "h100")  # INT4 x INT4 has no tensor-core rate on Hopper


@pytest.mark.jetson
def test_jetson_has_no_fp8_but_int8_and_int4():
    for key in ("jetson_orin_nano", "jetson_orin_nano_super", "jetson_agx_orin"):
        assert {"int8", "int4"} <= REGISTRY[key].native and "fp8_e4m3" not in REGISTRY[key].native
