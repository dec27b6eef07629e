"""The energy model (roofline/energy.py): hand-checked joules, provenance of every cost, the fit from measured
energy, energy profiles, and the power budgets of the nvpmodel modes (roofline/clocks.py)."""
import json

import pytest

from roofline import get_model_config, gemv, model_step, predict
from roofline.clocks import POWER_MODES, apply_power_mode, power_budget_w
from roofline.energy import (DEFAULT_PJ_PER_FLOP, DRAM_PJ_PER_BYTE, STATIC_W, EnergySample, default_costs,
                             energy_costs, fit_energy, load_energy_profile, predict_energy)

SUPER = "jetson_orin_nano_super"


def test_a_gemv_at_15w_by_hand():
    """fp16 GEMV 4096x4096 on the Orin Nano Super at 15W: EMC 2133 MHz -> 102 x 2133/3199 GB/s; bytes = the
    weights plus x and y (2 bytes each), FLOPs 2 per weight; 86 pJ/byte (the LPDDR5 estimate, range 48-160),
    0.75 pJ/FLOP (FP16 FMA 1.1 + 0.4 pJ per 2 FLOPs), 2.18 W static (the forum's lower bound)."""
    hw = apply_power_mode(SUPER, "15W")
    p = predict(gemv(4096, 4096, precision="fp16"), hw)
    nbytes, flops = 2 * 4096 * 4096 + 2 * 4096 * 2, 2 * 4096 * 4096
    t = nbytes / (102e9 * 2133 / 3199)
    e = predict_energy(p, energy_costs(hw), tokens=1, budget_w=15)
    assert p.bytes == nbytes and p.time_s == pytest.approx(t)
    assert e.dram_j == pytest.approx(nbytes * 86e-12)
    assert e.compute_j == pytest.approx(flops * 0.75e-12)
    assert e.static_j == pytest.approx(2.18 * t)
    assert e.energy_j == pytest.approx(nbytes * 86e-12 + flops * 0.75e-12 + 2.18 * t)
    # the DRAM figure is an estimate: the power it spans over its range is part of the prediction
    rest = flops * 0.75e-12 + 2.18 * t
    assert e.energy_range_j == pytest.approx((nbytes * 48e-12 + rest, nbytes * 160e-12 + rest))
    assert e.power_range_w == pytest.approx((e.energy_range_j[0] / t, e.energy_range_j[1] / t))
    assert any("DRAM 86 pJ/byte is an estimate, range 48-160" in n for n in e.notes)
    assert e.tokens_per_j == pytest.approx(1 / e.energy_j) and e.power_w == pytest.approx(e.energy_j / t)
    assert not e.over_budget and any("lower bound" in n for n in e.notes)


def test_a_model_steps_energy_is_the_sum_of_its_kernels():
    cfg = get_model_config("llama3-8b")
    hw = apply_power_mode(SUPER, "25W")
    step = predict(model_step(cfg, "decode", 4, 1024, weight="int4_tinygemm", act="fp16"), hw)
    costs = energy_costs(hw)
    whole = predict_energy(step, costs, tokens=4)
    parts = [(predict_energy(p, costs), m) for p, m in step.flat()]
    assert whole.energy_j == pytest.approx(sum(e.energy_j * m for e, m in parts))
    assert whole.dram_j == pytest.approx(sum(e.dram_j * m for e, m in parts))
    assert whole.tokens_per_j == pytest.approx(4 / whole.energy_j)
    # a kernel slower than its roof burns static energy for longer, never more dynamic energy
    slow = predict_energy(step, costs, tokens=4, time_s=2 * step.time_s)
    assert slow.dram_j == whole.dram_j and slow.static_j == pytest.approx(2 * whole.static_j)


def test_unknown_static_power_is_said_and_energy_is_the_dynamic_part():
    p = predict(gemv(8192, 8192, precision="fp16"), "h100_sxm")
    e = predict_energy(p, energy_costs("h100_sxm"))
    assert e.static_j is None and e.energy_j == pytest.approx(e.dram_j + e.compute_j)
    assert any("static power unknown for h100_sxm" in n for n in e.notes)


def test_every_default_cost_names_its_source_and_is_flagged_unverified():
    specs = [*DEFAULT_PJ_PER_FLOP.values(), *DRAM_PJ_PER_BYTE.values(), *STATIC_W.values(),
             default_costs("gb10").dram_pj_per_byte]
    assert all(s.source and s.note and s.unverified for s in specs), [s for s in specs if not s.unverified]
    assert {"fp32", "fp16", "bf16", "int8", "int4"} <= set(DEFAULT_PJ_PER_FLOP)


def test_a_bad_time_is_refused():
    p = predict(gemv(64, 64, precision="fp16"), "gb10")
    with pytest.raises(ValueError, match="time_s=0"):
        predict_energy(p, energy_costs("gb10"), time_s=0)


# --- power budgets ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key, mode, watts", [(SUPER, "15W", 15), (SUPER, "25W", 25), (SUPER, "MAXN_SUPER", None),
                                              ("jetson_orin_nano", "7W", 7), ("jetson_agx_orin", "MODE_30W", 30),
                                              ("jetson_agx_orin", 0, None)])
def test_each_mode_has_the_budget_its_nvpmodel_name_states(key, mode, watts):
    spec = power_budget_w(key, mode)
    assert (spec.value if spec else None) == watts
    if spec:
        assert "POWER_MODEL NAME=" in spec.source and "nvpmodel" in spec.source


def test_every_board_mode_has_a_budget_or_is_maxn():
    for key, modes in POWER_MODES.items():
        for name in modes:
            assert (power_budget_w(key, name) is None) == name.upper().startswith("MAXN"), (key, name)


def test_a_mode_the_board_does_not_have_is_refused_with_the_known_ones():
    # 7W is an Orin Nano (original config) mode; the Super's trusted table has 15W, 25W and MAXN_SUPER
    with pytest.raises(ValueError, match=r"unknown power mode '7W' for jetson_orin_nano_super; known: 15W \(0\)"):
        power_budget_w(SUPER, "7W")


# --- calibration from measured energy --------------------------------------------------------------

def _samples(static_w, pj_byte, pj_flop):
    out = []
    for nbytes, flops, t in ((33.6e6, 33.5e6, 5e-4), (8.4e6, 6.9e10, 8e-3), (134e6, 1.1e9, 2e-3), (2e6, 4e9, 6e-4)):
        out.append(EnergySample(nbytes * pj_byte * 1e-12 + flops * pj_flop * 1e-12 + static_w * t, t, nbytes,
                                flops, "fp16"))
    return out


@pytest.mark.parametrize("idle_w", [3.1, None])
def test_the_fit_recovers_the_costs_that_made_the_energy(idle_w):
    costs = fit_energy(_samples(3.1, 42.0, 1.3), default_costs(SUPER), idle_w=idle_w, source="test rails")
    assert costs.dram_pj_per_byte.value == pytest.approx(42.0, rel=1e-6)
    assert costs.pj_per_flop["fp16"].value == pytest.approx(1.3, rel=1e-6)
    assert costs.static_w.value == pytest.approx(3.1, rel=1e-6)
    assert costs.pj_per_flop["int8"] == DEFAULT_PJ_PER_FLOP["int8"]  # no sample ran int8: its default stands
    assert costs.basis.startswith("calibrated: test rails")


def test_the_fit_never_returns_a_negative_cost():
    # energy below the idle draw alone: an unconstrained fit would make pJ/byte negative
    samples = [EnergySample(0.5 * 3.0 * s.time_s, s.time_s, s.bytes, s.flops, "fp16") for s in _samples(3, 40, 1)]
    costs = fit_energy(samples, default_costs(SUPER), idle_w=3.0)
    assert costs.dram_pj_per_byte.value >= 0 and costs.pj_per_flop["fp16"].value >= 0


def test_a_profile_round_trips_and_applies_to_its_mode_only(tmp_path):
    fitted = fit_energy(_samples(3.1, 42.0, 1.3), default_costs(apply_power_mode(SUPER, "15W")), idle_w=3.1)
    path = tmp_path / "energy.json"
    path.write_text(json.dumps({"hardware": SUPER, "modes": {"15W": fitted.to_dict()}}))
    profile = load_energy_profile(path)
    at15 = energy_costs(apply_power_mode(SUPER, "15W"), profile)
    assert at15.dram_pj_per_byte.value == pytest.approx(42.0) and at15.basis.startswith("calibrated")
    assert energy_costs(apply_power_mode(SUPER, "25W"), profile).basis.startswith("defaults")
    path.write_text(json.dumps({"modes": {"15W": {"hardware": SUPER}}}))
    with pytest.raises(ValueError, match="energy.json mode 15W is malformed"):
        load_energy_profile(path)


def test_predict_json_carries_energy_and_tokens_per_joule_of_a_model_step():
    """`predict model --json` prices the step's energy with the same costs `roofline energy` uses."""
    import io
    import json as _json
    from roofline import get_hardware as _hw, get_model_config, model_step, predict as _predict
    from roofline.cli import main
    from roofline.energy import energy_costs, predict_energy
    out = io.StringIO()
    assert main(["predict", "model", "--model", "llama3-8b", "--hardware", "jetson_orin_nano_super", "--precision",
                 "fp16", "--seq-kv", "512", "--json"], out=out) == 0
    d = _json.loads(out.getvalue())
    hw = _hw("jetson_orin_nano_super")
    step = _predict(model_step(get_model_config("llama3-8b"), "decode", 1, 512, precision="fp16"), hw)
    e = predict_energy(step, energy_costs(hw), 1)
    assert d["energy_j"] == pytest.approx(e.energy_j) and d["tokens_per_j"] == pytest.approx(1 / e.energy_j)
    assert "unverified" in d["energy_note"]
