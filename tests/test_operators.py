"""Operator FLOPs and compulsory bytes, with hand-checked numbers."""
import io

import numpy as np
import pytest

from roofline import (attention, elementwise, ffn, gemm, gemv, get_model_config, model_step, operand_formats, predict,
                      sweep_attention, transformer_layer)
from roofline.cli import main


def test_gemv_is_gemm_with_m_1():
    v, g = gemv(4096, 11008, "fp16"), gemm(1, 4096, 11008, "fp16")
    assert (v.flops, v.bytes) == (g.flops, g.bytes)


def test_gemv_fp16_bytes_by_hand():
    c = gemv(4096, 4096, "fp16")
    assert c.flops == 2 * 4096 * 4096
    assert c.operand_bytes == {"weights": 4096 * 4096 * 2, "activations": 4096 * 2, "output": 4096 * 2}


def test_mixed_operand_precisions_w4a16():
    c = gemm(16, 4096, 4096, weight="int4_g128", act="bf16")
    assert c.operand_bytes["weights"] == 4096 * 4096 * 4.15625 / 8
    assert c.operand_bytes["activations"] == 16 * 4096 * 2
    assert c.out_format == "bf16"


@pytest.mark.parametrize("act, out", [("fp32", "fp32"), ("bf16", "bf16"), ("fp8_e4m3", "fp16"), ("int8", "fp16"),
                                      ("nvfp4", "fp16")])
def test_default_output_precision(act, out):
    assert gemm(2, 2, 2, weight=act, act=act).out_format == out


def test_storage_only_precision_means_weight_only_with_fp16_activations():
    w, a, o = operand_formats("nf4")
    assert (w.name, a.name, o.name) == ("nf4", "fp16", "fp16")


def test_attention_decode_gqa_by_hand():
    c = attention(1, 32, 8, 1, 4096, 128, precision="fp16")
    assert c.flops == 4 * 32 * 4096 * 128
    assert c.operand_bytes == {"q": 32 * 128 * 2, "k": 8 * 4096 * 128 * 2, "v": 8 * 4096 * 128 * 2,
                               "output": 32 * 128 * 2}


def test_attention_kv_cache_in_its_own_precision():
    c = attention(1, 32, 8, 1, 4096, 128, act="bf16", kv="fp8_e4m3")
    assert c.operand_bytes["k"] == 8 * 4096 * 128 and c.operand_bytes["q"] == 32 * 128 * 2


def test_causal_prefill_counts_the_visible_pairs():
    # seq 4, causal: query i sees i+1 keys -> 1+2+3+4 = 10 pairs per head
    assert attention(1, 1, 1, 4, 4, 1, causal=True).flops == 4 * 10
    assert attention(1, 1, 1, 4, 4, 1, causal=False).flops == 4 * 16
    # 2 new queries at the end of an 8-long sequence see 7 and 8 keys
    assert attention(1, 1, 1, 2, 8, 1).flops == 4 * 15


@pytest.mark.parametrize("kwargs, msg", [
    (dict(heads=32, kv_heads=5), "not a multiple"),
    (dict(seq_q=10, seq_kv=5), "seq_q <= seq_kv"),
])
def test_attention_rejects_impossible_shapes(kwargs, msg):
    args = dict(batch=1, heads=32, kv_heads=8, seq_q=1, seq_kv=64, head_dim=128) | kwargs
    with pytest.raises(ValueError, match=msg):
        attention(**args)


@pytest.mark.parametrize("bad", [0, -1, 1.5, float("nan"), float("inf"), 2**40, "8", True, None])
def test_bad_dimensions_are_rejected_with_the_allowed_range(bad):
    with pytest.raises(ValueError, match="allowed: integers 1..2147483647"):
        gemm(bad, 16, 16)


def test_ffn_is_gate_up_act_down():
    f = ffn(1, 4096, 14336, "fp16")
    names = [p.name for p in f.parts]
    assert names == ["gate_proj", "up_proj", "silu_mul", "down_proj"]
    assert f.flops == 3 * 2 * 4096 * 14336 + 5 * 14336
    assert f.bytes == sum(p.bytes for p in f.parts)


def test_elementwise_bytes():
    assert elementwise(100, "fp16", n_inputs=2).bytes == 3 * 100 * 2


def test_llama2_7b_parameter_count():
    # HF reports 6,738,415,616 parameters; minus 266,240 norm weights, the linear layers plus the
    # embedding (same size as the LM head) account for the rest.
    cfg = get_model_config("llama2-7b")
    assert cfg.linear_params + cfg.vocab * cfg.hidden == 6_738_415_616 - 266_240


def test_model_decode_weights_dominate_and_scale_with_the_weight_format():
    cfg = get_model_config("llama3-8b")
    fp16 = model_step(cfg, "decode", 1, 1024, "fp16")
    int4 = model_step(cfg, "decode", 1, 1024, weight="int4_tinygemm", act="fp16")
    # every linear weight is read once per decode step
    assert fp16.bytes > cfg.linear_params * 2 and fp16.bytes < cfg.linear_params * 2 * 1.05
    assert int4.bytes < fp16.bytes * 0.3


def test_layer_and_model_compose():
    cfg = get_model_config("llama3-8b")
    layer = transformer_layer(cfg, "prefill", 1, 512, "bf16")
    step = model_step(cfg, "prefill", 1, 512, "bf16")
    assert step.flops > cfg.layers * layer.flops
    assert [p.name for p in layer.parts][:3] == ["attn_norm", "qkv_proj", "attention"]


def test_custom_model_dims_override_a_named_config():
    cfg = get_model_config("llama3-8b", hidden=2048, layers=4)
    assert (cfg.hidden, cfg.layers, cfg.intermediate) == (2048, 4, 14336)
    with pytest.raises(ValueError, match="unknown model 'gpt5'"):
        get_model_config("gpt5")
    with pytest.raises(ValueError, match="not a multiple"):
        get_model_config("llama3-8b", kv_heads=7)


def test_unknown_phase_is_rejected():
    with pytest.raises(ValueError, match="unknown phase 'train'"):
        model_step(get_model_config("7b"), "train", 1, 16)


def test_element_counts_past_2_31_are_not_capped_only_dimensions_are():
    # 300000 tokens x 14336: the SwiGLU product has 4.3e9 elements while every dimension is legal
    f = ffn(300000, 4096, 14336, "fp16")
    silu = next(p for p in f.parts if p.name == "silu_mul")
    assert silu.shape["numel"] == 300000 * 14336 and silu.bytes == 3 * 300000 * 14336 * 2
    # Llama-3-8B prefill of 64 sequences of 4096 tokens (262144 x 14336 = 3.8e9 elements)
    step = model_step(get_model_config("llama3-8b"), "prefill", 64, 4096, "bf16")
    assert step.flops > 2 * 64 * 4096 * get_model_config("llama3-8b").linear_params
    assert elementwise(2**40, "fp16").bytes == 2 * 2**41
    with pytest.raises(ValueError, match="allowed: positive integers"):
        elementwise(0, "fp16")
    with pytest.raises(ValueError, match="allowed: integers 1..2147483647"):
        gemm(2**31, 16, 16)  # a dimension keeps its cap


def test_cli_predicts_an_ffn_of_300000_tokens():
    assert main(["predict", "ffn", "--m", "300000"], out=io.StringIO()) == 0


def test_vectorised_attention_does_not_wrap_around_int64():
    # 2**16 in all six dimensions: Q has 2**64 elements, which an int64 product wraps to 0
    big = np.full(1, 2**16, dtype=np.int64)
    vec = sweep_attention(big, big, big, big, big, big, "h100", precision="fp16")
    p = predict(attention(*[2**16] * 6, precision="fp16"), "h100")
    assert vec["bytes"][0] == p.bytes == 2 * 4 * 2.0**64
