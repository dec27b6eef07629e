"""The scheduler (roofline/schedule.py) against hand-checked cases, and its command line.

Llama-3-8B by hand: per layer QKV 4096 x (32 + 2 x 8) x 128, O 4096 x 4096, FFN 3 x 4096 x 14336 = 218,103,808
weights, x 32 layers, plus the LM head 128256 x 4096: 7,504,658,432 linear weights. In torchao INT4 group-128
(4.25 bits) that is 3.987 GB; a decode step at context 1024 also reads the KV cache, 32 layers x K and V x
1024 positions x 8 heads x 128 x 2 bytes = 134 MB. Only INT4 fits the 6.5 GB an 8 GB Orin Nano leaves a model
(fp16 16 GB, int8 8.0 GB + the 16-bit embedding), so every choice on it is INT4.

Power, by hand: at 15W the Orin Nano's EMC runs 2133 MHz (68 GB/s) and a memory-bound INT4 decode streams
68e9 B/s x 86 pJ/byte = 5.85 W of DRAM power, + 2.18 W static + ~0.2 W of FP16 math: 8.2 W, over the 7W
mode's budget, whose EMC runs the same 2133 MHz. So 7W cannot hold that speed: its board clocks down.
"""
import io
import json

import pytest

from roofline import get_model_config
from roofline.cli import main
from roofline.schedule import schedule

SUPER = "jetson_orin_nano_super"
LINEAR = 32 * (4096 * 48 * 128 + 4096 * 4096 + 3 * 4096 * 14336) + 128256 * 4096
STEP_BYTES = LINEAR * 4.25 / 8 + 32 * 2 * 1024 * 8 * 128 * 2  # + activations, a few MB


def test_latency_runs_batch_1_in_the_fastest_mode_and_ties_go_to_the_budgeted_one():
    s = schedule("llama3-8b", SUPER, "latency")
    c = s.choice
    # 25W and MAXN_SUPER both run EMC at 3199 MHz (102 GB/s) and the step is memory-bound: a tie that goes
    # to the mode with a budget
    assert (c.mode, c.precision, c.batch, c.bound) == ("25W", "int4_tinygemm/fp16", 1, "memory")
    assert c.time_s == pytest.approx(STEP_BYTES / 102e9, rel=0.005)
    maxn = next(o for o in s.runners_up if o.mode == "MAXN_SUPER" and o.batch == 1)
    assert maxn.time_s == c.time_s and "MAXN_SUPER" in s.reason and "tie-break" in s.reason
    assert any("does not fit in memory: fp16, int8" in line for line in s.excluded)


def test_a_15_w_limit_leaves_the_15w_mode_at_two_thirds_of_the_bandwidth():
    s = schedule("llama3-8b", SUPER, "latency", max_power_w=15)
    assert (s.choice.mode, s.choice.batch) == ("15W", 1)
    assert s.choice.time_s == pytest.approx(STEP_BYTES / (102e9 * 2133 / 3199), rel=0.005)  # 60.6 ms
    # 25W's caps do not hold it under 15 W: only its prediction could, and the top of the cost range is over
    assert any("predicted power over the limit: 25W (budget 25 W" in line and "MAXN_SUPER (no budget" in line
               for line in s.excluded)


def test_throughput_takes_the_largest_batch_whose_kv_cache_fits():
    s = schedule("llama3-8b", SUPER, "throughput")
    # INT4 weights 3.99 GB + the 16-bit embedding 1.05 GB + 134 MB of KV cache per sequence: 8 fit in the 6.5 GB
    # the board leaves a model (7.99 GB CUDA-visible less the OS's 1.5 GB), 16 do not
    assert (s.choice.precision, s.choice.batch) == ("int4_tinygemm/fp16", 8)
    assert 6.0 < s.choice.memory_gb <= 6.5
    assert any("int4_tinygemm/fp16 from batch 16" in line for line in s.excluded)
    assert s.choice.tokens_per_s == pytest.approx(8 / s.choice.time_s)


def test_energy_with_a_limit_on_predicted_power_admits_an_unbudgeted_mode_only_under_it():
    """Nothing caps MAXN_SUPER: it is admitted under 20 W only where its predicted power stays under 20 W across
    the DRAM estimate's range (batches 1-4, up to 19.5 W), not where only the estimate does (batch 8: 12.8 W,
    up to 20.4 W)."""
    s = schedule("llama3-8b", SUPER, "energy", max_power_w=20)
    from roofline.schedule import _admit
    maxn = [o for o in s.options if o.mode == "MAXN_SUPER" and not o.excluded]
    admitted = [o for o in maxn if not _admit(o, 20, None)]
    assert admitted and all(o.energy.power_range_w[1] <= 20 for o in admitted)  # non-empty: all() of nothing is True
    refused = [o for o in maxn if _admit(o, 20, None)]
    assert refused and all(o.power_w <= 20 < o.energy.power_range_w[1] for o in refused)
    shown = [o for o in s.runners_up + (s.choice,) if o.mode == "MAXN_SUPER"]
    assert shown and all(o.energy.power_range_w[1] <= 20 for o in shown)
    assert s.choice.power_w <= 20


def _profile(tmp_path, dram_pj, static_w, modes=("15W", "7W"), board="jetson_orin_nano"):
    """An energy profile as the power-mode sweep writes it: one DRAM cost and one static power for every mode."""
    from roofline.energy import load_energy_profile
    spec = lambda v: {"value": v, "source": "test profile"}  # noqa: E731
    path = tmp_path / "energy.json"
    path.write_text(json.dumps({"modes": {m: {"hardware": board, "mode": m, "basis": "calibrated: test",
                                              "dram_pj_per_byte": spec(dram_pj), "static_w": spec(static_w),
                                              "pj_per_flop": {"fp16": spec(0.0)}} for m in modes}}))
    return load_energy_profile(path)


def test_modes_tie_when_the_roof_they_share_binds_and_both_budgets_hold_it(tmp_path):
    """The original Orin Nano runs EMC at 2133 MHz in both 7W and 15W: where the step's power fits 7 W (a board
    measured at 40 pJ/byte and 2 W static: 68e9 x 40e-12 + 2 = 4.7 W), a memory-bound decode is as fast in 7W,
    so latency and energy both choose it (the tie goes to the smaller budget)."""
    cool = _profile(tmp_path, 40.0, 2.0)
    for target in ("latency", "energy"):
        s = schedule("llama3.2-1b", "jetson_orin_nano", target, batches=(1,), energy_profile=cool)
        other = next(o for o in s.options if o.mode == "15W" and o.precision == s.choice.precision)
        assert s.choice.mode == "7W" and s.choice.throttle == 1 and other.time_s == s.choice.time_s
        assert s.choice.power_w <= 7


def test_a_mode_is_priced_at_the_clocks_its_budget_allows():
    """Issue 22: with the default costs the 7W mode would draw 8.2 W at its clocks (see the top); the board holds
    it to 7 W, so the step stretches until dynamic energy / time + 2.18 W static = 7 W."""
    from roofline import apply_power_mode, get_hardware, model_step, predict
    from roofline.energy import energy_costs, predict_energy
    s = schedule("llama3-8b", "jetson_orin_nano", "latency")
    seven = next(o for o in s.options if o.mode == "7W" and o.batch == 1 and o.precision == s.choice.precision)
    hw = apply_power_mode(get_hardware("jetson_orin_nano"), "7W")
    roof = predict(model_step(get_model_config("llama3-8b"), "decode", 1, 1024, weight="int4_tinygemm", act="fp16"),
                   hw)
    e = predict_energy(roof, energy_costs(hw), 1)
    dynamic = e.dram_j + e.compute_j
    assert e.power_w == pytest.approx(8.22, abs=0.01)
    assert seven.throttle == pytest.approx(dynamic / ((7 - 2.18) * roof.time_s))
    assert seven.time_s == pytest.approx(roof.time_s * seven.throttle) and seven.power_w == pytest.approx(7)
    assert seven.bound == "power" and not seven.energy.over_budget
    # so 15W, at the same EMC clock and under its budget, is the faster; the reason says why 7W is slower
    assert (s.choice.mode, s.choice.batch) == ("15W", 1) and s.choice.power_w <= 15
    assert "7W" in s.reason and "power-bound" in s.reason


@pytest.mark.parametrize("hardware, target, limit", [
    ("jetson_orin_nano", "latency", None), ("jetson_orin_nano", "throughput", None),
    ("jetson_orin_nano", "energy", None), ("jetson_orin_nano", "latency", 10),
    ("jetson_orin_nano_super", "throughput", 15)])
def test_every_choice_fits_its_modes_budget_and_the_limit_by_its_predicted_power(hardware, target, limit):
    """Issue 22's commands: each chose a mode its own prediction put over budget (7W at 13.3 W; 7W under a 10 W
    limit at 13.3 W; 15W at 15.1 W under 15 W)."""
    s = schedule("llama3-8b", hardware, target, max_power_w=limit)
    c = s.choice
    assert not c.energy.over_budget and c.power_w <= c.budget_w * (1 + 1e-9)
    assert limit is None or c.power_w <= limit * (1 + 1e-9)
    budgeted = [o for o in s.options if o.budget_w is not None and not o.excluded]
    assert budgeted and all(not o.energy.over_budget for o in budgeted)


def test_under_a_limit_below_the_modes_budget_the_budgeted_mode_is_held_there(tmp_path):
    """Under 10 W the Orin Nano's 15W mode is refused (nothing holds it to 10 W but a prediction whose range
    reaches 13.3 W); 7W is held to 7 W by its caps. A mode whose idle power alone exceeds its budget is refused."""
    s = schedule("llama3-8b", "jetson_orin_nano", "latency", max_power_w=10)
    assert s.choice.mode == "7W" and s.choice.power_w == pytest.approx(7) and s.choice.bound == "power"
    assert any("predicted power over the limit: 15W (budget 15 W" in line for line in s.excluded)
    hot = schedule("llama3-8b", "jetson_orin_nano", "latency", energy_profile=_profile(tmp_path, 40.0, 8.0))
    assert hot.choice.mode == "15W" and any("7W: static power 8 W alone exceeds the mode's 7 W budget" in line
                                            for line in hot.excluded)


def test_compute_bound_prefill_is_faster_in_the_mode_with_more_sms_and_clock():
    s = schedule("llama3.2-1b", "jetson_orin_nano", "latency", phase="prefill", context=512, batches=(1,))
    assert s.choice.mode == "15W" and s.choice.bound == "compute"
    seven = next(o for o in s.options if o.mode == "7W" and o.precision == s.choice.precision)
    # 7W: 4 of 8 SMs at 408 of 625 MHz; the step's memory-bound kernels (norms) keep it a little under 3.06x
    assert 2.5 < seven.time_s / s.choice.time_s <= (625 / 408) * 2 + 1e-9


def test_nothing_meeting_the_constraints_is_refused_with_what_excluded_each():
    with pytest.raises(ValueError, match="nothing meets the constraints on jetson_orin_nano_super: does not fit"):
        schedule("llama3-8b", SUPER, "energy", max_power_w=15, min_tokens_per_s=200)


@pytest.mark.parametrize("kw, match", [(dict(target="speed"), "unknown target 'speed'; allowed: latency"),
                                       (dict(max_power_w=-3), "max_power_w=-3 must be a positive number"),
                                       (dict(modes=["7W"]), "unknown power mode '7W' for jetson_orin_nano_super")])
def test_bad_arguments_name_the_value_and_what_is_allowed(kw, match):
    with pytest.raises(ValueError, match=match):
        schedule("llama3-8b", SUPER, **kw)


def run(*argv):
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_the_command_prints_the_choice_its_runners_up_and_why():
    rc, text = run("schedule", "--hardware", SUPER, "--model", "llama3-8b", "--target", "energy", "--max-power-w",
                   "15")
    assert rc == 0 and "choice: 15W / int4_tinygemm/fp16 / batch 8" in text
    assert "why: energy:" in text and "excluded: predicted power over the limit: 25W (budget 25 W" in text
    assert "DRAM 86 pJ/byte is an estimate, range 48-160" in text  # the uncertainty is shown
    rc, text = run("schedule", "--model", "llama3-8b", "--target", "throughput", "--json")
    d = json.loads(text)
    assert rc == 0 and d["choice"]["batch"] == 8 and len(d["runners_up"]) == 3
    assert d["choice"]["power_range_w"][0] < d["choice"]["power_w"] < d["choice"]["power_range_w"][1]
    assert {"tokens_per_s", "power_w", "tokens_per_j", "energy_j"} <= set(d["choice"])


def test_a_model_given_by_its_dims_prices_as_the_named_one():
    dims = "hidden=4096,heads=32,kv_heads=8,intermediate=14336,layers=32,vocab=128256"
    _, named = run("schedule", "--model", "llama3-8b", "--json")
    _, custom = run("schedule", "--model", dims, "--json")
    assert json.loads(named)["choice"]["tokens_per_j"] == json.loads(custom)["choice"]["tokens_per_j"]


@pytest.mark.parametrize("argv, message", [
    (["--model", "hidden=4096"], "missing heads, kv_heads, intermediate, layers, vocab"),
    (["--target", "speed"], "invalid choice: 'speed'"),
    (["--batch", "0,4"], "--batch '0,4': expected positive integers"),
    (["--power-modes", "7W"], "unknown power mode '7W' for jetson_orin_nano_super; known: 15W (0), 25W (1)"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    rc, _ = run("schedule", *argv)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_the_energy_command_prices_a_model_step():
    rc, text = run("energy", "model", "--model", "llama3-8b", "--precision", "int4_tinygemm", "--hardware", SUPER,
                   "--power-mode", "15W", "--json")
    d = json.loads(text)
    assert rc == 0 and d["energy_j"] > 0 and d["budget"]["value"] == 15
    assert d["tokens_per_j"] == pytest.approx(1 / d["energy_j"])
    assert d["energy"]["time_s"] == pytest.approx(STEP_BYTES / (102e9 * 2133 / 3199), rel=0.005)


def test_a_measured_energy_profile_decides_the_energy_target(tmp_path):
    """A board whose 25W and MAXN modes idle at 12 W and 15W at 3 W (a profile as the sweep writes it): per
    token at batch 8, 15W spends 3 W x 76 ms and 25W 12 W x 50 ms of static energy beside the same DRAM
    energy, so 15W wins once the profile says so; with the defaults' one static power the faster 25W wins."""
    from roofline.energy import load_energy_profile

    def costs(mode, static_w):
        spec = lambda v: {"value": v, "source": "test profile"}  # noqa: E731
        return {"hardware": SUPER, "mode": mode, "basis": "calibrated: test", "dram_pj_per_byte": spec(40.0),
                "static_w": spec(static_w), "pj_per_flop": {"fp16": spec(0.0)}}
    path = tmp_path / "energy.json"
    path.write_text(json.dumps({"modes": {"15W": costs("15W", 3.0), "25W": costs("25W", 12.0),
                                          "MAXN_SUPER": costs("MAXN_SUPER", 12.0)}}))
    assert schedule("llama3-8b", SUPER, "energy").choice.mode == "25W"
    s = schedule("llama3-8b", SUPER, "energy", energy_profile=load_energy_profile(path))
    c = s.choice
    assert (c.mode, c.batch) == ("15W", 8) and s.basis.startswith("calibrated: test")
    assert c.energy.energy_j == pytest.approx(c.energy.dram_j + 3.0 * c.time_s)
    assert c.power_w == pytest.approx(3.0 + c.energy.dram_j / c.time_s)
