"""Every CPU kernel: correct against FP32 at small shapes, and its bytes are the theory's bytes."""
import pytest

from roofline_kernels.ops import INT4_GROUP, UnsupportedKernel, make_attention, make_gemm, make_gemv
from roofline import attention, gemm

pytestmark = pytest.mark.cpu

# (kwargs, formats the theory is asked about, emulated on a CPU without FP8/FP16 units)
CPU_GEMM = [
    (dict(precision="fp32"), ("fp32", "fp32", "fp32"), False),
    (dict(precision="bf16"), ("bf16", "bf16", "bf16"), False),
    (dict(precision="fp16"), ("fp16", "fp16", "fp16"), None),  # emulated unless AVX512-FP16
    (dict(precision="fp8_e4m3"), ("fp8_e4m3", "fp8_e4m3", "bf16"), True),
    (dict(weight="fp8_e5m2", act="fp8_e4m3"), ("fp8_e5m2", "fp8_e4m3", "bf16"), True),
    (dict(precision="int8"), ("int8", "int8", "int32"), False),
    (dict(weight="int8", act="bf16"), ("int8", "bf16", "bf16"), False),
    (dict(weight="int4_tinygemm", act="bf16"), ("int4_tinygemm", "bf16", "bf16"), False),
]
IDS = ["fp32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2xe4m3", "int8_w8a8", "int8_weight_only", "int4_weight_only"]


@pytest.mark.parametrize("m", [1, 7, 64])
@pytest.mark.parametrize("kwargs, fmts, emulated", CPU_GEMM, ids=IDS)
def test_gemm_matches_fp32_reference(kwargs, fmts, emulated, m):
    k = make_gemm(m, 256, 384, **kwargs)
    err = k.check()
    assert err <= max(k.rtol, k.atol)
    if emulated is not None:
        assert k.emulated == emulated
    if k.emulated:
        assert "emulated" in k.path or "converted" in k.path


@pytest.mark.parametrize("kwargs, fmts, emulated", CPU_GEMM, ids=IDS)
def test_cost_comes_from_the_theory_and_matches_storage(kwargs, fmts, emulated):
    k = make_gemv(4096, 1024, **kwargs)
    w, a, o = fmts
    assert k.cost.operand_bytes == gemm(1, 4096, 1024, weight=w, act=a, out=o).operand_bytes
    assert k.cost.flops == 2 * 4096 * 1024 and k.op == "gemv"
    stored = k.storage_bytes()
    assert stored["activations"] == k.cost.operand_bytes["activations"]
    if w == "int8" and a == "bf16":
        # per-channel bf16 scales: N x 2 bytes the INT8 format leaves out (0.2% here)
        assert stored["weights"] == k.cost.operand_bytes["weights"] + 4096 * 2
    else:
        assert stored["weights"] == k.cost.operand_bytes["weights"]  # INT4: packed nibbles + scales + zeros


def test_int4_is_really_packed_4_bit():
    k = make_gemv(4096, 4096, weight="int4_tinygemm", act="bf16")
    assert k.storage_bytes()["weights"] == 4096 * 4096 * 4.25 / 8
    assert k.storage_bytes()["weights"] < 4096 * 4096 * 0.6  # not int8 storage in disguise


def test_storage_only_precision_defaults_to_bf16_activations():
    assert make_gemv(256, 256, precision="int4_tinygemm").precision == "int4_tinygemm/bf16"


@pytest.mark.parametrize("kwargs, needle", [
    (dict(precision="nvfp4"), "Blackwell"),
    (dict(precision="mxfp4"), "Blackwell"),
    (dict(precision="int4"), "int4_tinygemm"),
    (dict(weight="int4_tinygemm", act="fp32"), "no kernel"),
    (dict(weight="nf4", act="bf16"), "no kernel"),
])
def test_unsupported_pairs_name_precision_and_device(kwargs, needle):
    with pytest.raises(UnsupportedKernel) as e:
        make_gemv(256, 256, **kwargs)
    assert e.value.device == "cpu" and "cpu" in str(e.value) and needle in str(e.value)
    assert e.value.precision.split("/")[0] in str(e.value)


def test_int4_shape_rules_are_a_clear_unsupported():
    with pytest.raises(UnsupportedKernel, match=f"K % {INT4_GROUP}"):
        make_gemv(256, 200, weight="int4_tinygemm", act="bf16")


def test_bad_dims_use_the_theorys_message():
    with pytest.raises(ValueError, match="allowed: integers"):
        make_gemm(0, 16, 16, "fp32")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        make_gemm(1, 16, 16, "fp32", device="tpu")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(2, 8, 2, 1, 300, 64), (1, 4, 4, 1, 128, 32), (1, 8, 2, 96, 96, 64)],
                         ids=["decode_gqa", "decode_mha", "prefill_causal_gqa"])
def test_attention_matches_reference_and_theory(precision, shape):
    k = make_attention(*shape, precision=precision)
    assert k.check() <= max(k.rtol, k.atol)
    b, h, hkv, sq, skv, d = shape
    assert k.cost.operand_bytes == attention(b, h, hkv, sq, skv, d, act=precision, causal=sq > 1).operand_bytes
    stored = k.storage_bytes()
    assert {n: stored[n] for n in ("q", "k", "v")} == {n: k.cost.operand_bytes[n] for n in ("q", "k", "v")}


@pytest.mark.parametrize("kwargs, msg", [(dict(precision="int8"), "SDPA runs"), (dict(precision="bf16", kv="fp8"),
                                                                                 "quantized KV cache")])
def test_attention_unsupported(kwargs, msg):
    with pytest.raises(UnsupportedKernel, match=msg):
        make_attention(1, 8, 2, 1, 64, 64, **kwargs)


def test_chunked_prefill_is_refused_not_mis_masked():
    with pytest.raises(UnsupportedKernel, match="top-left"):
        make_attention(1, 8, 2, 16, 64, 64, precision="fp32")
