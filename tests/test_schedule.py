"""The scheduler (roofline/schedule.py) against hand-checked cases, and its command line.

Llama-3-8B by hand: per layer QKV 4096 x (32 + 2 x 8) x 128, O 4096 x 4096, FFN 3 x 4096 x 14336 = 218,103,808
weights, x 32 layers, plus the LM head 128256 x 4096: 7,504,658,432 linear weights. In torchao INT4 group-128
(4.25 bits) that is 3.987 GB; a decode step at context 1024 also reads the KV cache, 32 layers x K and V x
1024 positions x 8 heads x 128 x 2 bytes = 134 MB. Only INT4 fits 8 GB (fp16 16 GB, int8 8.0 GB + the
16-bit embedding), so every choice on an 8 GB Orin Nano is INT4.
"""
import io
import json

import pytest

from roofline.cli import main
from roofline.schedule import price_options, schedule

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
    assert any("25W (25 W)" in line for line in s.excluded)
    assert any("MAXN_SUPER" in line and "predicted" in line for line in s.excluded)


def test_throughput_takes_the_largest_batch_whose_kv_cache_fits():
    s = schedule("llama3-8b", SUPER, "throughput")
    # INT4 weights 3.99 GB + the 16-bit embedding 1.05 GB + 134 MB of KV cache per sequence: 16 fit in 8 GB, 32 do not
    assert (s.choice.precision, s.choice.batch) == ("int4_tinygemm/fp16", 16)
    assert 7.0 < s.choice.memory_gb <= 8.0
    assert any("int4_tinygemm/fp16 from batch 32" in line for line in s.excluded)
    assert s.choice.tokens_per_s == pytest.approx(16 / s.choice.time_s)


def test_energy_with_a_limit_on_predicted_power_admits_an_unbudgeted_mode_only_under_it():
    options = price_options("llama3-8b", SUPER)
    s = schedule("llama3-8b", SUPER, "energy", max_power_w=20)
    from roofline.schedule import _admit
    admitted_maxn = [o for o in s.options if o.mode == "MAXN_SUPER" and not o.excluded and not _admit(o, 20, None)]
    assert admitted_maxn and all(o.power_w <= 20 for o in admitted_maxn)  # non-empty: all() of nothing proves nothing
    shown = [o for o in s.runners_up + (s.choice,) if o.mode == "MAXN_SUPER"]
    assert all(o.power_w <= 20 for o in shown)
    assert any(o.mode == "MAXN_SUPER" and not o.excluded and o.power_w > 20 for o in options)
    assert s.choice.budget_w is not None and s.choice.budget_w <= 20


def test_modes_tie_when_the_roof_they_share_binds():
    """The original Orin Nano runs EMC at 2133 MHz in both 7W and 15W: a memory-bound decode is as fast in
    7W, so latency and energy both choose it (the tie goes to the smaller budget)."""
    for target in ("latency", "energy"):
        s = schedule("llama3.2-1b", "jetson_orin_nano", target, batches=(1,))
        other = next(o for o in price_options("llama3.2-1b", "jetson_orin_nano", batches=(1,))
                     if o.mode == "15W" and o.precision == s.choice.precision)
        assert s.choice.mode == "7W" and other.time_s == s.choice.time_s


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
    assert rc == 0 and "choice: 15W / int4_tinygemm/fp16 / batch 16" in text
    assert "why: energy:" in text and "excluded: mode budget over the power limit: 25W (25 W)" in text
    rc, text = run("schedule", "--model", "llama3-8b", "--target", "throughput", "--json")
    d = json.loads(text)
    assert rc == 0 and d["choice"]["batch"] == 16 and len(d["runners_up"]) == 3
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
    token at batch 16, 15W spends 3 W x 92 ms and 25W 12 W x 62 ms of static energy beside the same DRAM
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
    assert (c.mode, c.batch) == ("15W", 16) and s.basis.startswith("calibrated: test")
    assert c.energy.energy_j == pytest.approx(c.energy.dram_j + 3.0 * c.time_s)
    assert c.power_w == pytest.approx(3.0 + c.energy.dram_j / c.time_s)
