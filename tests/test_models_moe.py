"""Mixture-of-experts models, sliding-window layers and the LM head's own format, in theory."""
import itertools

import pytest

from roofline import get_model_config, model_step, predict, tensor_bytes, transformer_layer
from roofline.memory import weight_bytes
from roofline.models import LM_HEAD_FOLLOWS_WEIGHTS, MODEL_CONFIGS, ModelConfig, step_formats, window_pairs
from roofline.moe import experts_touched


def kernels(step, op=None, name=None):
    """(kernel, multiplicity) of a composite, filtered by op type or name."""
    from roofline.operators import Composite

    def walk(c, mult):
        for p in c.parts:
            if isinstance(p, Composite):
                yield from walk(p, mult * p.repeat)
            elif (op is None or p.op == op) and (name is None or p.name == name):
                yield p, mult
    return list(walk(step, step.repeat))


# Published totals: the gpt-oss model card (116.83B total / 5.13B active, 20.91B / 3.61B; active counts
# exclude the embedding, include the router), Qwen3-30B-A3B's model card (30.5B; 29.9B non-embedding) and
# Mistral's Mixtral announcement (46.7B total, 12.9B per token). Biases and attention sinks are left out.
@pytest.mark.parametrize("name, total, active", [
    ("gpt-oss-120b", 116.83e9, 5.13e9), ("gpt-oss-20b", 20.91e9, 3.61e9), ("qwen3-30b-a3b", 30.5e9, None),
    ("mixtral-8x7b", 46.7e9, 12.9e9)])
def test_moe_configs_add_up_to_their_published_parameter_counts(name, total, active):
    cfg = get_model_config(name)
    counts = cfg.param_counts()
    assert sum(counts.values()) == pytest.approx(total, rel=2e-3)
    if active is not None:
        extra = counts["router"] if name.startswith("gpt-oss") else counts["embedding"] + counts["router"]
        assert cfg.active_linear_params + extra == pytest.approx(active, rel=4e-3)
    assert cfg.source.startswith("https://huggingface.co/") and cfg.source.endswith("config.json")


def test_expected_experts_touched_matches_brute_force_over_every_routing():
    # 8 experts, top-2, 2 tokens: average the distinct experts over every pair of 2-subsets
    subsets = list(itertools.combinations(range(8), 2))
    exact = sum(len(set(a) | set(b)) for a, b in itertools.product(subsets, subsets)) / len(subsets) ** 2
    assert experts_touched(8, 2, 2) == pytest.approx(exact) == pytest.approx(3.5)
    assert experts_touched(128, 4, 1) == 4  # decode at batch 1: only the active experts
    assert experts_touched(8, 2, 4096) == pytest.approx(8)  # a long prefill reads them all
    with pytest.raises(ValueError, match="experts_per_token=9 is invalid; allowed: 1..experts"):
        experts_touched(8, 9, 1)


@pytest.mark.parametrize("name", ["gpt-oss-120b", "qwen3-30b-a3b", "mixtral-8x7b"])
def test_decode_at_batch_1_reads_only_the_active_experts(name):
    cfg = get_model_config(name)
    step = model_step(cfg, "decode", 1, 1024, "bf16", expert_weight="bf16")
    read = sum(p.operand_bytes["weights"] * m for p, m in kernels(step, op="grouped_gemm"))
    stored = weight_bytes(cfg, step_formats(cfg, "bf16", expert_weight="bf16"))["experts"]
    assert read == pytest.approx(stored * cfg.experts_per_token / cfg.experts, rel=1e-12)
    # ... and the FLOPs of a token are those of its k experts
    flops = sum(p.flops * m for p, m in kernels(step, op="grouped_gemm"))
    assert flops == pytest.approx(2 * cfg.experts_per_token * cfg.param_counts()["experts"] / cfg.experts)


def test_batched_decode_reads_the_expected_distinct_experts_and_prefill_reads_them_all():
    cfg = get_model_config("qwen3-30b-a3b")
    f = step_formats(cfg, "bf16")
    stored = weight_bytes(cfg, f)["experts"]

    def read(phase, batch, seq):
        return sum(p.operand_bytes["weights"] * m for p, m in kernels(model_step(cfg, phase, batch, seq, "bf16"),
                                                                       op="grouped_gemm"))
    assert read("decode", 16, 1024) == pytest.approx(stored * experts_touched(128, 8, 16) / 128)
    assert 8 / 128 * stored < read("decode", 16, 1024) < stored
    assert read("prefill", 1, 2048) == pytest.approx(stored)


def test_dense_param_counts_are_the_weights_a_step_reads():
    # the memory plan counts parameters; the step prices its GEMMs' shapes: they must agree
    for name, cfg in MODEL_CONFIGS.items():
        if cfg.is_moe:
            continue
        step = model_step(cfg, "decode", 1, 64, weight="int8", act="bf16")
        read = sum(p.operand_bytes["weights"] * m for p, m in kernels(step, op="gemm"))
        stored = weight_bytes(cfg, step_formats(cfg, weight="int8", act="bf16"))
        assert read == stored["attention"] + stored["ffn"] + stored["lm_head"], name


def test_sliding_window_layers_read_only_the_window_in_decode_and_see_fewer_pairs_in_prefill():
    cfg = get_model_config("gpt-oss-120b")
    full = transformer_layer(cfg, "decode", 1, 8192, "bf16")
    sliding = transformer_layer(cfg, "decode", 1, 8192, "bf16", sliding=True)
    attn = {c: next(p for p in layer.parts if p.op == "attention") for c, layer in (("full", full), ("sw", sliding))}
    assert attn["full"].shape["seq_kv"] == 8192 and attn["sw"].shape["seq_kv"] == 128
    assert attn["sw"].operand_bytes["k"] == attn["full"].operand_bytes["k"] * 128 / 8192
    step = model_step(cfg, "decode", 1, 8192, "bf16")
    assert [(p.name, p.repeat) for p in step.parts[1:3]] == [("layers", 18), ("sliding_layers", 18)]
    # prefill: each query sees min(i + 1, window) keys
    assert window_pairs(1000, 128) == sum(min(i + 1, 128) for i in range(1000))
    pre_full = next(p for p in transformer_layer(cfg, "prefill", 1, 1000, "bf16").parts if p.op == "attention")
    pre_sw = next(p for p in transformer_layer(cfg, "prefill", 1, 1000, "bf16", sliding=True).parts
                  if p.op == "attention")
    assert pre_sw.flops == pytest.approx(pre_full.flops * window_pairs(1000, 128) / (1000 * 1001 / 2))
    assert pre_sw.bytes == pre_full.bytes  # every K/V position is still read once
    assert window_pairs(100, 128) == 100 * 101 / 2


def test_a_checkpoint_ships_its_experts_quantized_until_told_otherwise():
    cfg = get_model_config("gpt-oss-20b")
    experts = lambda step: {p.weight_format for p, _ in kernels(step, op="grouped_gemm")}  # noqa: E731
    assert experts(model_step(cfg, "decode", 1, 64, "bf16")) == {"mxfp4"}
    assert experts(model_step(cfg, "decode", 1, 64, "bf16", expert_weight="int4_tinygemm")) == {"int4_tinygemm"}
    # the published layout runs weight-only on Hopper: MXFP4 weights beside bf16 activations
    p = predict(model_step(cfg, "decode", 1, 64, "bf16"), "h100")
    assert p.time_s > 0
    router = kernels(model_step(cfg, "decode", 1, 64, "nvfp4"), name="router")[0][0]
    assert router.weight_format == "fp16"  # the residual stream's format, never the low-bit one


def test_lm_head_follows_the_weights_by_default_and_takes_its_own_format_when_given():
    cfg = get_model_config("llama3-8b")
    w4 = model_step(cfg, "decode", 1, 1024, weight="int4_tinygemm", act="bf16")
    same = model_step(cfg, "decode", 1, 1024, weight="int4_tinygemm", act="bf16", lm_head=LM_HEAD_FOLLOWS_WEIGHTS)
    head16 = model_step(cfg, "decode", 1, 1024, weight="int4_tinygemm", act="bf16", lm_head="bf16")
    assert w4.bytes == same.bytes
    assert kernels(w4, name="lm_head")[0][0].weight_format == "int4_tinygemm"
    # a 16-bit LM head adds exactly its 16-bit weights minus their 4.25-bit copy: ~+20% for Llama-3-8B
    extra = tensor_bytes("bf16", cfg.vocab * cfg.hidden) - tensor_bytes("int4_tinygemm", cfg.vocab * cfg.hidden)
    assert head16.bytes - w4.bytes == pytest.approx(extra)
    assert 0.15 < extra / w4.bytes < 0.25
    # beside W4A4 weights a bf16 head reads bf16 activations (bf16 weights x nvfp4 activations cannot run)
    nv = model_step(cfg, "decode", 1, 1024, "nvfp4", lm_head="bf16")
    head = kernels(nv, name="lm_head")[0][0]
    assert (head.weight_format, head.act_format) == ("bf16", "bf16") and predict(nv, "gb10").time_s > 0


@pytest.mark.parametrize("fields, match", [
    (dict(experts=8, experts_per_token=9), "experts_per_token=9 is invalid; allowed: 1..experts"),
    (dict(experts_per_token=2), "need experts > 0"),
    (dict(sliding_layers=2), "sliding_layers=2 is invalid"),
    (dict(experts=8, experts_per_token=2, expert_format="fp9"), "unknown precision 'fp9'"),
])
def test_bad_moe_and_window_fields_name_the_value_and_what_is_allowed(fields, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig("x", 64, 4, 4, 128, 4, 100, **fields)


def test_a_layer_count_override_keeps_the_sliding_window_share():
    """gpt-oss alternates sliding-window and full attention layers: --layers 1 was refused ("sliding_layers=12 is
    invalid") and --layers 13 priced 1 full + 12 sliding. An override keeps the share."""
    from roofline import get_model_config
    base = get_model_config("gpt-oss-20b")
    assert (base.layers, base.sliding_layers) == (24, 12)
    for layers, sliding in ((1, 1), (2, 1), (3, 2), (13, 7), (48, 24)):  # even layers slide, layer 0 first
        assert get_model_config("gpt-oss-20b", layers=layers).sliding_layers == sliding
    assert get_model_config("gpt-oss-20b", layers=4, sliding_layers=4).sliding_layers == 4  # given: kept


def test_intermediate_size_sets_a_moe_models_expert_width():
    # it set the dense width, which a MoE model's experts do not use: mixtral priced alike with and without it
    import io
    import json
    from roofline.cli import main
    def flops(*extra):
        out = io.StringIO()
        assert main(["predict", "model", "--model", "mixtral", "--json", *extra], out=out) == 0
        return json.loads(out.getvalue())["flops"]
    from roofline import get_model_config, model_step
    narrow = model_step(get_model_config("mixtral", expert_intermediate=1024), "decode", 1, 1024)
    assert flops("--intermediate-size", "1024") == pytest.approx(narrow.flops) and flops() > 4 * narrow.flops
