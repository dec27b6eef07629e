"""Memory plans: weights, KV cache and workspace of a model against the device's capacity."""
import pytest

from roofline import get_model_config, tensor_bytes
from roofline.memory import _total, memory_plan
from roofline.models import step_formats


def test_weights_are_every_stored_parameter_in_its_format():
    cfg = get_model_config("llama3-8b")
    plan = memory_plan(cfg, "decode", 1, 1024, formats=step_formats(cfg, "bf16"))
    assert plan.total_weights_bytes == 2 * sum(cfg.param_counts().values())
    assert plan.total_weights_bytes == pytest.approx(16.06e9, rel=1e-3)  # 8.03B parameters in bf16
    # MoE: every expert is stored, whatever a step reads (gpt-oss-120b as published: ~60.8 GiB checkpoint)
    oss = get_model_config("gpt-oss-120b")
    plan = memory_plan(oss, "decode", 1, 1024, precision="bf16")
    assert plan.weights_bytes["experts"] == pytest.approx(tensor_bytes("mxfp4", oss.param_counts()["experts"]))
    assert plan.total_weights_bytes / 2**30 == pytest.approx(60.8, rel=0.01)


def test_kv_cache_counts_every_layer_and_sliding_layers_keep_only_their_window():
    cfg = get_model_config("llama3-8b")
    plan = memory_plan(cfg, "decode", 2, 8192, precision="bf16")
    assert plan.kv_cache_bytes == 32 * 2 * 8 * 128 * 8192 * 2 * 2  # layers, K and V, kv heads, head dim, ...
    fp8 = memory_plan(cfg, "decode", 2, 8192, precision="bf16", kv="fp8_e4m3")
    assert fp8.kv_cache_bytes == plan.kv_cache_bytes / 2
    oss = get_model_config("gpt-oss-120b")
    kv = memory_plan(oss, "decode", 1, 65536, precision="bf16").kv_cache_bytes
    per_position = 2 * oss.kv_heads * oss.dim_per_head * 2
    assert kv == 18 * per_position * 65536 + 18 * per_position * 128


def test_a_tied_head_shares_the_table_only_while_both_are_in_one_format():
    cfg = get_model_config("llama3.2-1b")
    table = tensor_bytes("bf16", cfg.vocab * cfg.hidden)
    assert memory_plan(cfg, "decode", 1, 64, precision="bf16").weights_bytes["lm_head"] == 0
    q = memory_plan(cfg, "decode", 1, 64, weight="int4_tinygemm", act="bf16")
    assert q.weights_bytes["embedding"] == table  # roofline_quantize/ never quantizes the embedding
    assert q.weights_bytes["lm_head"] == tensor_bytes("int4_tinygemm", cfg.vocab * cfg.hidden)


def test_a_70b_model_does_not_fit_a_24_gb_card_and_nothing_of_it_does():
    plan = memory_plan(get_model_config("llama3-70b"), "decode", 1, 4096, "rtx4090", weight="int4_tinygemm",
                       act="bf16")
    assert plan.fits is False and plan.total_bytes > 24e9
    assert plan.max_context is None and plan.max_batch is None  # the weights alone exceed the card
    assert "rtx4090 memory 24 GB" in plan.capacity_source


def test_largest_context_and_batch_sit_exactly_on_the_capacity_boundary():
    cfg = get_model_config("llama3.1-8b")  # 131072 positions: the search ends on the capacity, not the model
    f = step_formats(cfg, "bf16")
    plan = memory_plan(cfg, "decode", 4, 8192, "rtx4090", formats=f)
    assert plan.fits is True
    cap = plan.capacity_gb * 1e9
    assert _total(cfg, f, "decode", plan.max_context, 4) <= cap < _total(cfg, f, "decode", plan.max_context + 1, 4)
    assert _total(cfg, f, "decode", 8192, plan.max_batch) <= cap < _total(cfg, f, "decode", 8192, plan.max_batch + 1)
    # a limit under the device's memory wins; the model's max context caps the search
    tight = memory_plan(cfg, "decode", 4, 8192, "rtx4090", memory_limit_gb=18, formats=f)
    assert tight.capacity_gb == 18 and tight.max_context < plan.max_context
    oss = memory_plan(get_model_config("gpt-oss-20b"), "decode", 1, 1024, "h100", precision="bf16")
    assert oss.max_context == 131072 and "131072 (the model's max_context)" in oss.summary()


def test_prefill_workspace_grows_with_the_prompt():
    cfg = get_model_config("llama3-8b")
    short, long = (memory_plan(cfg, "prefill", 1, n, precision="bf16").workspace_bytes for n in (512, 8192))
    assert long > 8 * short
    assert memory_plan(cfg, "decode", 1, 8192, precision="bf16").workspace_bytes < short


@pytest.mark.parametrize("kwargs, match", [
    (dict(memory_limit_gb=-1), "memory_limit_gb=-1 is invalid; allowed: a positive number"),
    (dict(phase="train"), "unknown phase 'train'; allowed: prefill, decode"),
    (dict(context=0), "context=0 is invalid"),
])
def test_bad_plan_inputs_name_the_value_and_what_is_allowed(kwargs, match):
    args = dict(phase="decode", batch=1, context=64, hardware="gb10")
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        memory_plan(get_model_config("llama3-8b"), **args)


def test_a_cpu_profile_plans_a_model_against_its_hosts_ram():
    """The registry's `cpu` entry has no memory (a host has no datasheet): a profile's device (MemTotal) is it."""
    from roofline import Calibration, get_hardware
    cal = Calibration("cpu", {"fp32": 0.2}, 40.0, device={"memory_bytes": 24 * 10**9}, timestamp="t0")
    hw = get_hardware("cpu").with_calibration(cal)
    big = memory_plan(get_model_config("llama3-70b"), "decode", 1, 1024, hw, precision="bf16")
    small = memory_plan(get_model_config("llama3.2-1b"), "decode", 1, 1024, hw, precision="bf16")
    assert big.fits is False and small.fits is True and big.capacity_gb == small.capacity_gb == 24.0
    assert "MemTotal" in big.capacity_source and "calibration profile t0" in big.capacity_source
    bare = get_hardware("cpu").with_calibration(Calibration("cpu", {"fp32": 0.2}, 40.0))
    assert memory_plan(get_model_config("llama3-70b"), "decode", 1, 1024, bare, precision="bf16").fits is None
    assert get_hardware("gb10").with_calibration(Calibration("gb10", {"bf16": 50.0}, 230.0, device={
        "memory_bytes": 10**9})).memory.value == get_hardware("gb10").memory.value  # a datasheet's stands
