"""MoE experts as grouped GEMMs: their cost, their expected time (read from the GEMM model at one expert's shape), and
the kernel that measures them. Until stop 40 a model step's experts had no expected time ("grouped_gemm: not
modelled"): 88% of Mixtral 8x7B's decode bound stood at its bound."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roofline import Calibration, gemm, get_hardware, get_model_config, model_step, predict
from roofline.efficiency import EfficiencyModel, expected_fields, expected_for, expected_time
from roofline.moe import grouped_gemm, per_expert, routed_gemm
from roofline_kernels.ops import UnsupportedKernel, make_gemm, make_grouped_gemm

PAIRS = [("fp32", "fp32"), ("bf16", "bf16"), ("int8", "int8"), ("int8", "bf16"), ("int4_tinygemm", "bf16"),
         ("nvfp4", "nvfp4"), ("mxfp4", "mxfp4"), ("fp8_e4m3", "fp8_e4m3")]


@settings(max_examples=60, deadline=None)
@given(groups=st.integers(1, 128), m=st.integers(1, 4096), n=st.integers(1, 20000), k=st.integers(1, 20000),
       pair=st.sampled_from(PAIRS))
def test_a_grouped_gemm_costs_its_experts_gemms(groups, m, n, k, pair):
    w, a = pair
    g, one = grouped_gemm(groups, m, n, k, weight=w, act=a), gemm(m, n, k, weight=w, act=a)
    assert g.op == "grouped_gemm" and g.shape == {"groups": groups, "m": m, "n": n, "k": k}
    assert g.flops == pytest.approx(groups * one.flops)
    assert g.operand_bytes.keys() == one.operand_bytes.keys()
    for name, b in one.operand_bytes.items():
        assert g.operand_bytes[name] == pytest.approx(groups * b), name
    assert per_expert(g.shape) == (groups, m, n, k)


@given(per_token=st.integers(1, 8), extra=st.integers(0, 120), n=st.integers(1, 20000), k=st.integers(1, 20000))
def test_a_decode_token_routes_one_row_to_each_of_its_experts(per_token, extra, n, k):
    """At batch 1 the routing's expected experts are exactly the token's k: the routed cost is the grouped one."""
    routed = routed_gemm(1, per_token, per_token + extra, n, k, "bf16", "bf16", "bf16")
    grouped = grouped_gemm(per_token, 1, n, k, weight="bf16", act="bf16", out="bf16")
    assert routed.flops == grouped.flops
    assert routed.operand_bytes == pytest.approx(grouped.operand_bytes)
    assert per_expert(routed.shape) == pytest.approx((per_token, 1.0, n, k))


def test_a_prefill_spreads_its_rows_over_the_experts_it_touches():
    cost = routed_gemm(512, 2, 8, 14336, 4096, "bf16", "bf16", "bf16")  # Mixtral: 1024 rows, all 8 experts touched
    groups, rows, n, k = per_expert(cost.shape)
    assert groups == pytest.approx(8.0) and rows == pytest.approx(128.0) and (n, k) == (14336, 4096)


@pytest.mark.parametrize("shape", [{"groups": 8, "n": 5, "k": 5}, {"tokens": 1, "n": 5, "k": 5}, {"groups": "x"}])
def test_a_grouped_shape_without_its_axes_is_refused_naming_them(shape):
    with pytest.raises(ValueError, match="groups, m, n, k, or tokens, experts_per_token, experts_touched"):
        per_expert(shape)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_a_grouped_kernel_needs_a_whole_number_of_experts(bad):
    with pytest.raises(ValueError, match=f"groups={bad!r} is (invalid|not a number); allowed: integers 1"):
        make_grouped_gemm(bad, 1, 256, 256, precision="fp32")


# --- expected time: the GEMM model at one expert's shape -------------------------------------------------------------

CAL = Calibration("gb10", {"bf16": 60.0, "fp16": 60.0, "int8": 120.0, "fp8": 120.0, "fp4": 240.0}, 230.0,
                  timestamp="t0")


def device():
    return get_hardware("gb10").with_calibration(CAL)


def efficiency(shape):
    """A made-up GB10: GEMVs stream at 60-80% of the bandwidth, more rows lose efficiency (no real device's figure)."""
    m, n, k = shape.get("m", 1), shape["n"], shape["k"]
    return 0.6 * (n * k / 2**20) ** 0.03 * m ** -0.1


def fitted(ms=(1, 2, 4, 8, 16, 32, 64, 128, 256), ns=(512, 1024, 2048, 4096, 8192, 16384),
           ks=(1024, 2048, 4096, 8192, 16384)):
    model = EfficiencyModel(meta={"calibration": "t0"})
    for m in ms:
        for n in ns:
            for k in ks:
                s = {"m": m, "n": n, "k": k}
                model.add("gemm", "bf16", s, efficiency(s))
    return model


@pytest.mark.parametrize("cost, one", [
    # Qwen3-30B-A3B decode: 8 experts of one row each
    (grouped_gemm(8, 1, 768, 2048, precision="bf16"), gemm(1, 768, 2048, precision="bf16")),
    (routed_gemm(1, 8, 128, 768, 2048, "bf16", "bf16", "bf16"), gemm(1, 768, 2048, precision="bf16")),
    # Mixtral 8x7B prefill of 512 tokens: all 8 experts, 128 rows each
    (routed_gemm(512, 2, 8, 14336, 4096, "bf16", "bf16", "bf16"), gemm(128, 14336, 4096, precision="bf16")),
])
def test_a_grouped_gemm_is_expected_to_take_its_experts_gemms_times(cost, one):
    hw, model = device(), fitted()
    groups = per_expert(cost.shape)[0]
    p, q = predict(cost, hw, "calibrated"), predict(one, hw, "calibrated")
    got, each = expected_for(p, hw, model), expected_for(q, hw, model)
    assert got.source == "profile" and got.efficiency == pytest.approx(each.efficiency)
    assert got.uncertainty == each.uncertainty  # the GEMM model's own, at that shape
    assert expected_time(p, hw, model) == pytest.approx(groups * expected_time(q, hw, model), rel=1e-9)
    m = one.shape["m"]
    assert got.note.startswith(f"its experts' GEMMs, {groups:.3g} x {m}x{one.shape['n']}x{one.shape['k']} one after "
                               "another"), got.note


def test_where_one_experts_gemm_was_not_measured_near_neither_are_its_experts():
    hw, model = device(), fitted(ms=(1, 2), ns=(512, 1024), ks=(1024, 2048))
    p = predict(routed_gemm(512, 2, 8, 14336, 4096, "bf16", "bf16", "bf16"), hw, "calibrated")
    e = expected_for(p, hw, model)
    assert e.efficiency is None and expected_time(p, hw, model) is None
    assert e.note.startswith("not measured near its experts' GEMMs (8 x 128x14336x4096; nearest: "), e.note


def test_a_moe_step_counts_its_experts_where_the_gemm_model_covers_them():
    """Mixtral 8x7B decode: its experts (88% of the bound) now have an expected time; before, they stood at their
    bound as 'grouped_gemm: not modelled'."""
    hw, model = device(), fitted()
    step = predict(model_step(get_model_config("mixtral-8x7b"), "decode", 1, 1024, precision="bf16"), hw, "calibrated")
    d = expected_fields(step, hw, model)
    experts = [(p, mult) for p, mult in step.flat() if p.op == "grouped_gemm"]
    assert experts and all(expected_time(p, hw, model) for p, _ in experts)
    share = sum(p.time_s * mult for p, mult in experts) / step.time_s
    assert share > 0.8
    assert "expert_gate" not in d["expected_note"] and "grouped_gemm" not in d["expected_note"], d["expected_note"]
    assert d["expected_time_s"] == pytest.approx(sum((expected_time(p, hw, model) or p.time_s) * mult
                                                     for p, mult in step.flat()))


# --- the kernel ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("label, kwargs", [("fp32", dict(precision="fp32")), ("bf16", dict(precision="bf16")),
                                           ("int8", dict(precision="int8")),
                                           ("int8/bf16", dict(weight="int8", act="bf16")),
                                           ("int4_tinygemm/bf16", dict(weight="int4_tinygemm", act="bf16"))])
def test_the_grouped_kernel_runs_each_expert_on_its_own_weights_and_stores_what_it_is_charged(label, kwargs):
    groups, m, n, k = 3, 2, 256, 384
    kernel = make_grouped_gemm(groups, m, n, k, **kwargs)
    one = make_gemm(m, n, k, **kwargs)
    assert kernel.op == "grouped_gemm" and kernel.precision == label
    assert kernel.check() <= max(kernel.rtol, kernel.atol)  # every expert's output against its own reference
    outs = kernel.fn()
    assert len(outs) == groups and not any(bool((outs[0] == o).all()) for o in outs[1:])  # distinct experts' weights
    assert kernel.cost == grouped_gemm(groups, m, n, k, weight=one.cost.weight_format, act=one.cost.act_format,
                                       out=one.cost.out_format)
    assert kernel.weight_bits_per_element() == pytest.approx(one.weight_bits_per_element())
    assert kernel.storage_bytes()["weights"] == groups * one.storage_bytes()["weights"]
    assert kernel.launches == groups * one.launches


def test_a_grouped_kernel_refuses_what_its_experts_kernel_refuses():
    with pytest.raises(UnsupportedKernel, match="K % 128 == 0"):
        make_grouped_gemm(2, 1, 768, 2880, weight="int4_tinygemm", act="bf16")  # gpt-oss's K on the packed kernel


def test_measure_reads_a_grouped_kernels_expected_time_and_does_not_learn_it(tmp_path):
    """The real kernel on this host, measured against a made-up profile whose model covers one expert's GEMV: the
    measurement carries the grouped reading (the bound over that GEMV's efficiency), and ``learn`` refuses it (a
    loop of experts is not a sample of one GEMM)."""
    from roofline_kernels.device import detect
    from roofline_kernels.efficiency import learn
    from roofline_kernels.measure import hardware_for, measure_kernel

    info = detect()
    kernel = make_grouped_gemm(4, 1, 768, 1024, precision="fp32")
    path = tmp_path / "calibration-cpu-test.json"  # a store's profile: one that learns, where a kernel may join it
    cal = Calibration("cpu", {"fp32": 0.1}, 20.0, timestamp="t0", path=str(path))
    hw = hardware_for(info, cal)
    model = EfficiencyModel(meta={"calibration": "t0"})
    for n in (512, 1024):
        for k in (512, 1024, 2048):
            model.add("gemv", "fp32", {"n": n, "k": k}, 0.5)
    m = measure_kernel(kernel, info, hw, "cold", "calibrated", rep_ms=20, with_telemetry=False, model=model)
    assert m.expected_source == "profile" and m.expected_efficiency == pytest.approx(0.5)
    assert m.expected_time_s == pytest.approx(m.predicted_time_s / 0.5)
    assert m.expected_note.startswith("its experts' GEMMs, 4 x 1x768x1024")
    why = learn(cal, kernel, m, info)
    assert why and why.startswith("a grouped_gemm: its expected time is read from the GEMM model"), why
    assert not path.exists()


def test_the_score_measures_grouped_held_out_shapes_and_scores_them_apart():
    """``calibrate --score`` holds each GEMM path's grouped reading against a real loop of experts, scored under its own
    key (``grouped_gemm:fp32``), so a device where the reading fails says so without blurring the GEMM path's score."""
    from roofline.efficiency import score
    from roofline_kernels import efficiency as keff
    from roofline_kernels.device import detect
    from roofline_kernels.measure import hardware_for

    assert keff.GROUPED_HELD_OUT and all(len(s) == 4 and s[2] % 128 == 0 and s[3] % 128 == 0 and s[2] not in
                                         keff.GRID_NK and s[3] not in keff.GRID_NK for s in keff.GROUPED_HELD_OUT)
    assert set(keff.GROUPED_HELD_OUT) <= set(keff.held_out_shapes({"precision": "bf16"}))
    info = detect()
    hw = hardware_for(info, Calibration("cpu", {"fp32": 0.1}, 20.0, timestamp="t0"))
    model = EfficiencyModel(meta={"calibration": "t0"})
    for n in (256, 512):
        for k in (256, 512, 1024):
            model.add("gemv", "fp32", {"n": n, "k": k}, 0.25)
    rows = keff.measure_held_out(model, info, hw, [("fp32", {"precision": "fp32"})], shapes=[(3, 1, 384, 640)],
                                 passes=2)
    assert [(r[0], r[1], r[2]) for r in rows] == [("grouped_gemm", "fp32", {"groups": 3, "m": 1, "n": 384, "k": 640})]
    bound_s, runs = rows[0][3], rows[0][4]
    assert bound_s == pytest.approx(predict(grouped_gemm(3, 1, 384, 640, precision="fp32"),
                                            hw, "calibrated").time_s)
    got = score(model, rows)
    assert set(got) == {"gemm:fp32", "grouped_gemm:fp32"}  # the GEMM model's own leave-one-out, and the grouped key
    shape = got["grouped_gemm:fp32"]["held_out"]["shapes"][0]
    assert shape["shape"] == "3 x 1x384x640" and shape["expected_s"] == pytest.approx(bound_s / 0.25)
    assert "held_out" not in got["gemm:fp32"]


# --- the commands --------------------------------------------------------------------------------------------------

def run(*argv):
    import io

    from roofline.__main__ import main  # every layer's commands (measure is the kernels layer's)
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_predict_grouped_gemm_prices_its_experts_gemms():
    import json
    rc, text = run("predict", "grouped_gemm", "--groups", "8", "--m", "1", "--n", "768", "--k", "2048",
                   "--precision", "bf16", "--hardware", "h100_sxm", "--json")
    one_rc, one_text = run("predict", "gemv", "--n", "768", "--k", "2048", "--precision", "bf16",
                           "--hardware", "h100_sxm", "--json")
    assert rc == one_rc == 0
    got, one = json.loads(text), json.loads(one_text)
    assert got["op"] == "grouped_gemm" and got["shape"] == {"groups": 8, "m": 1, "n": 768, "k": 2048}
    assert got["flops"] == pytest.approx(8 * one["flops"]) and got["bytes"] == pytest.approx(8 * one["bytes"])
    assert got["time_s"] == pytest.approx(8 * one["time_s"])
    # launches: the fused kernel's two where torch._grouped_mm runs it (bf16 on sm_90), else one an expert
    for hw, prec, launches in (("h100_sxm", "bf16", 2), ("h100_sxm", "fp32", 8), ("a100", "bf16", 8)):
        rc, text = run("predict", "grouped_gemm", "--groups", "8", "--m", "1", "--n", "768", "--k", "2048",
                       "--precision", prec, "--hardware", hw, "--launch-overhead-us", "5", "--json")
        got = json.loads(text)
        assert rc == 0 and got["launch_overhead_s"] == pytest.approx(launches * 5e-6), (hw, prec)
        assert got["launches"] == launches, (hw, prec)


def test_a_model_step_counts_the_launches_its_overhead_is_charged_for():
    # a grouped GEMM is one kernel of the step but two launches fused (H100 bf16), or one an expert touched (an
    # A100 has no fused kernel: a 512-token prefill touches nearly all 8 of Mixtral's): the overhead is per launch,
    # and the step says how many, so overhead / kernels is not read as a per-kernel cost
    cfg = get_model_config("mixtral")
    for hw, phase, tokens, lo, hi in (("h100_sxm", "decode", 1, 2, 2), ("a100", "prefill", 512, 7.9, 8)):
        step = predict(model_step(cfg, phase, 1, tokens, precision="bf16"), hw, launch_overhead_s=4e-6)
        grouped = [(p, mult) for p, mult in step.flat() if p.op == "grouped_gemm"]
        assert grouped and all(lo <= p.launches <= hi for p, _ in grouped), (hw, [p.launches for p, _ in grouped])
        extra = sum(mult * (p.launches - 1) for p, mult in grouped)
        assert step.launches == pytest.approx(step.kernels + extra) and extra > 0
        assert step.launch_overhead_s == pytest.approx(4e-6 * step.launches)
        rc, text = run("predict", "model", "--model", "mixtral", "--phase", phase, "--seq-kv", str(tokens),
                       "--precision", "bf16", "--hardware", hw, "--launch-overhead-us", "4")
        assert rc == 0 and f"{step.kernels} kernels" in text and f"({step.launches:.4g} launches)" in text, text
    # a step without grouped GEMMs: launches are its kernels, and nothing extra is said
    rc, text = run("predict", "model", "--model", "llama3-8b", "--phase", "decode", "--precision", "bf16",
                   "--hardware", "h100_sxm", "--launch-overhead-us", "4")
    assert rc == 0 and "launches" not in text


@pytest.mark.parametrize("argv, says", [
    (["measure", "grouped_gemm", "--groups", "0", "--n", "256", "--k", "256"], "--groups"),
    (["predict", "grouped_gemm", "--groups", "-3"], "--groups"),
    (["energy", "grouped_gemm"], "invalid choice: 'grouped_gemm'"),
    (["predict", "gemm", "--groups", "4"], "--groups 4: gemm does not use it (it takes "),
    (["measure", "gemv", "--groups", "4", "--n", "256", "--k", "256", "--precision", "all"],
     "--groups 4: gemv does not use it (it takes "),
    (["measure", "grouped_gemm", "--groups", "100000", "--n", "4096", "--k", "4096", "--precision", "fp32"],
     "groups=100000: 100000 experts of 1x4096x4096 need about"),
])
def test_bad_grouped_input_is_one_line_on_stderr_and_exit_2(argv, says, capsys):
    """``--groups 100000`` at 4096 x 4096 once ran the host out of memory (exit 137, no word): each expert was built
    on its own until the OOM killer ended the process. It is refused before anything is built, naming how many fit."""
    rc, out = run(*argv)
    err = capsys.readouterr().err
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert says in err, err


@pytest.mark.parametrize("groups, fused", [(80, True), (2000, False)])
def test_measure_grouped_gemm_on_a_simulated_h100_names_its_experts_not_the_probes(groups, fused):
    """On a simulated board the kernel is built at a probe shape with two of its experts; what it says (its path: fused
    or not, decided at the full count, 1024 groups being the fused kernel's limit) is of the full kernel."""
    import json
    rc, text = run("measure", "grouped_gemm", "--groups", str(groups), "--m", "1", "--n", "768", "--k", "256",
                   "--precision", "fp32,bf16,int8/bf16", "--simulate", "h100_sxm", "--json")
    assert rc == 0
    doc = json.loads(text)
    recs = {r["precision"]: r for r in doc["records"]}
    assert doc["SIMULATED"] and set(recs) == {"fp32", "bf16", "int8/bf16"}
    for prec, r in recs.items():
        assert r["status"] == "ok" and "(probe: 2 experts)" in r["path"], r
        loop = f"{groups} x " if prec != "bf16" or not fused else None
        assert r["path"].startswith(loop) if loop else \
            r["path"].startswith(f"torch._grouped_mm (fused CUTLASS grouped GEMM: {groups} experts in one call)"), r
        if prec == "bf16" and not fused:
            assert "fewer than 1024 groups" in r["path"], r
        w = prec.split("/")[0]
        assert r["bytes"] == pytest.approx(grouped_gemm(groups, 1, 768, 256, weight=w, act="bf16" if w != "fp32" else w
                                                        ).bytes, rel=0.02)


def test_a_planted_wrong_result_fails_a_grouped_kernels_check():
    """The simulated fault scales every expert's output (a grouped kernel returns one output an expert): the
    correctness check fails it, where multiplying the list raised a TypeError that errored the case."""
    from tests.simulation import Simulation
    sim = Simulation.__new__(Simulation)
    sim.fault = "wrong-result"
    kernel = sim.wrap_kernel(make_grouped_gemm(2, 1, 256, 256, precision="fp32"))
    with pytest.raises(AssertionError, match="relative error"):
        kernel.check()


@pytest.mark.parametrize("rows, m", [(2.5, 3), (3.5, 4), (1.49, 1), (1.55, 2)])
def test_rows_per_expert_round_halves_up_to_the_gemm_the_model_is_read_at(rows, m):
    """Qwen3-30B-A3B at decode batch 16 spreads 128 rows over ~82 experts (1.55 each): read at M = 2. ``round()``
    took 2.5 rows to 2 and 3.5 to 4 (halves to even)."""
    from roofline.efficiency import expert_gemm
    op, one, words = expert_gemm({"tokens": 10, "experts_per_token": 1, "experts_touched": 10 / rows,
                                  "n": 768, "k": 2048})
    assert one == {"m": m, "n": 768, "k": 2048} and op == ("gemv" if m == 1 else "gemm")
    experts = 10 / rows
    assert words == (f"{experts:.0f}" if experts == int(experts) else f"{experts:.2f}") + f" x {m}x768x2048"


@pytest.mark.parametrize("shape", [{"groups": 0, "m": 1, "n": 8, "k": 8}, {"groups": 2, "m": 0, "n": 8, "k": 8},
                                   {"groups": -2, "m": -3, "n": 8, "k": 8}, {"groups": 2, "m": 1, "n": 0, "k": 8}])
def test_an_impossible_grouped_shape_has_no_expected_time_but_an_error(shape):
    from roofline.efficiency import expert_gemm
    with pytest.raises(ValueError, match="allowed: experts > 0 and every other >= 1"):
        expert_gemm(shape)


def test_the_sweeps_registry_cover_aims_at_the_gemm_each_moe_layer_is_read_at():
    """A full sweep's registry seeds cover the GEMMs the registry's models run; an MoE layer is read at one expert's
    GEMM, so that GEMM is a target too (Qwen3-30B-A3B's 1 x 768 x 2048 decode and 64 x 768 x 2048 prefill experts,
    Mixtral's 256 x 14336 x 4096 prefill experts), not the grouped op, which no sweep measures."""
    from roofline import MODEL_CONFIGS, model_step
    from roofline.efficiency import expert_gemm
    from roofline.models import DEFAULT_CONTEXT
    from roofline_kernels.efficiency import registry_gemms
    targets = set(registry_gemms())
    want = {tuple(expert_gemm(p.shape)[1][a] for a in "mnk")
            for cfg in MODEL_CONFIGS.values() if cfg.experts for phase in ("decode", "prefill")
            for p, _ in model_step(cfg, phase, 1, DEFAULT_CONTEXT).flat() if p.op == "grouped_gemm"}
    assert {(1, 768, 2048), (64, 768, 2048), (256, 14336, 4096)} <= want <= targets


def test_a_step_lists_its_bare_kernels_under_short_reasons_not_their_notes():
    """A composite lists the kernels at their bound under why (``Expected.reason``), not under each note: the notes name
    a nearest shape each, and would split one reason into as many entries as kernels. The reason was parsed out of the
    note's text before; now each ``Expected`` without a number carries its own."""
    hw, model = device(), fitted(ms=(512,), ns=(1024,), ks=(4096,))  # near the attention projections alone
    step = predict(model_step(get_model_config("mixtral-8x7b"), "prefill", 1, 512, precision="bf16"), hw, "calibrated")
    note = expected_fields(step, hw, model)["expected_note"]
    assert "expert_gate, expert_up, expert_down (" in note and "; not measured near its experts' GEMMs)" in note, note
    assert "nearest:" not in note, note


def test_a_simulated_boards_experts_are_not_held_to_this_hosts_memory(capsys):
    """A simulated board builds a small probe of its experts: the room check (before calibrating, on a real device)
    held a simulated H100's 20000 experts to this host's memory and refused them."""
    rc, _ = run("measure", "grouped_gemm", "--groups", "20000", "--m", "1", "--n", "768", "--k", "256", "--precision",
                "fp32,bf16", "--simulate", "h100_sxm", "--mode", "hot")
    assert rc == 0, capsys.readouterr().err
