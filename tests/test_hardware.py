"""Hardware registry: dense peaks with sources, custom hardware, calibration beside the datasheet."""
import dataclasses
import json

import pytest

from roofline import REGISTRY, apply_power_mode, gemv, get_hardware, load_calibration, load_hardware_file, predict
from roofline.hardware import Calibration, hardware_from_dict

REQUIRED_KEYS = ["gb10", "jetson_orin_nano", "jetson_orin_nano_super", "jetson_agx_orin", "jetson_orin_nx_16gb",
                 "jetson_orin_nx_8gb", "jetson_orin_nx_16gb_super", "jetson_orin_nx_8gb_super", "h100_sxm", "h100_pcie",
                 "h100_nvl", "h200", "a100", "b200", "rtx4090", "rtx5090"]


def test_registry_has_the_required_keys_and_aliases():
    for key in REQUIRED_KEYS:
        assert key in REGISTRY
    assert get_hardware("b10").key == "gb10"
    assert get_hardware("H100").key == "h100_sxm"


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_every_number_carries_a_source(key):
    hw = REGISTRY[key]
    assert hw.bandwidth and hw.bandwidth.source and hw.memory
    assert hw.peaks, "a datasheet entry without peaks"
    for cls, spec in hw.peaks.items():
        assert spec.value > 0 and spec.source, (key, cls)


@pytest.mark.parametrize("key, cls, dense", [
    ("h100_sxm", "fp16", 989.4),   # 1979 is the sparse figure
    ("h100_sxm", "fp8", 1979),     # 3958 sparse
    ("b200", "fp16", 2250),        # 4500 sparse
    ("gb10", "fp4", 500),          # 1 PFLOP sparse
    ("jetson_orin_nano", "int8", 20),
])
def test_dense_peaks_not_sparse_ones(key, cls, dense):
    assert REGISTRY[key].peaks[cls].value == dense


@pytest.mark.parametrize("key, gbs", [("gb10", 273), ("jetson_orin_nano", 68), ("jetson_orin_nano_super", 102),
                                      ("h100_sxm", 3350), ("h200", 4800)])
def test_bandwidths_match_the_reference(key, gbs):
    assert REGISTRY[key].bandwidth.value == gbs


@pytest.mark.parametrize("key, family", [
    ("jetson_orin_nx_16gb", "jetson"), ("jetson_orin_nx_8gb", "jetson"), ("jetson_orin_nx_16gb_super", "jetson"),
    ("jetson_orin_nx_8gb_super", "jetson"), ("h100_nvl", "h100")])
def test_boards_the_detector_names_have_entries_in_their_family(key, family):
    assert REGISTRY[key].family == family


def test_orin_nx_peaks_follow_the_orin_per_sm_rate_and_say_where_from():
    """The NX GPU is the Nano's 8 SMs at a higher clock: its peaks scale from the Nano's by the clock ratio."""
    nano, nx = REGISTRY["jetson_orin_nano"], REGISTRY["jetson_orin_nx_16gb"]
    ratio = nx.gpu_clock.value / nano.gpu_clock.value
    for cls in ("fp32", "fp16", "int8"):
        assert nx.peaks[cls].value == pytest.approx(nano.peaks[cls].value * ratio, rel=0.03)
        assert nx.peaks[cls].derived and "SMs x" in nx.peaks[cls].note
    assert nx.bandwidth.value > nano.bandwidth.value and nx.bandwidth.unverified
    assert "nvpmodel_p3767_0000.conf" in nx.source and "DLA" in nx.source


def test_h100_nvl_is_dense_and_unverified_where_not_read_from_the_sheet():
    nvl = REGISTRY["h100_nvl"]
    assert nvl.peaks["fp16"].value * 2 == pytest.approx(1671, abs=1) and "sparse / 2" in nvl.peaks["fp16"].note
    assert all(s.unverified for s in nvl.peaks.values()) and nvl.bandwidth.unverified


def test_every_jetson_has_power_modes_and_a_default_among_them():
    from roofline.clocks import DEFAULT_POWER_MODE, POWER_MODES, find_power_mode
    jetsons = {k for k, hw in REGISTRY.items() if hw.kind == "jetson"}
    assert jetsons == set(POWER_MODES) == set(DEFAULT_POWER_MODE)
    for key in jetsons:
        assert find_power_mode(key, DEFAULT_POWER_MODE[key]) is not None
        for name, (mode_id, gpu_mhz, sms, emc_mhz) in POWER_MODES[key].items():
            assert gpu_mhz <= REGISTRY[key].gpu_clock.value and (sms is None or sms <= REGISTRY[key].sm_count)


def test_power_modes_accept_the_names_nvpmodel_prints():
    """`nvpmodel -q` on an AGX Orin prints MODE_30W; the reference table says 30W: both name mode 2."""
    from roofline import apply_power_mode
    assert apply_power_mode("jetson_agx_orin", "MODE_30W").sm_count == 8
    assert apply_power_mode("jetson_agx_orin", "30W").key == apply_power_mode("jetson_agx_orin", 2).key
    nx_10w = apply_power_mode("jetson_orin_nx_16gb", "10W")
    assert nx_10w.sm_count == 4 and nx_10w.bandwidth.value == pytest.approx(102.4 * 2133 / 3199)


def test_derived_and_unverified_numbers_say_so():
    assert REGISTRY["gb10"].peaks["fp4"].derived
    assert REGISTRY["gb10"].peaks["int8"].unverified
    assert not REGISTRY["h100_sxm"].peaks["fp16"].derived


def test_unknown_hardware_lists_the_known_keys():
    with pytest.raises(ValueError) as e:
        get_hardware("tpu9")
    assert "'tpu9'" in str(e.value) and "gb10" in str(e.value) and "h100_sxm" in str(e.value)


def test_custom_hardware_from_json(tmp_path, isolated_registry):
    path = tmp_path / "asic.json"
    path.write_text(json.dumps({"key": "my_asic", "bandwidth_gbs": 100, "memory_gb": 16,
                                "peaks_tflops": {"fp16": 50, "int8": 100}, "native": ["fp16", "int8"]}))
    (hw,) = load_hardware_file(path)
    assert get_hardware("my_asic") is hw and hw.peaks["fp16"].source == "user-defined"
    p = predict(gemv(1000, 1000, "int8"), "my_asic")
    assert p.t_memory_s == p.bytes / 100e9


@pytest.mark.parametrize("bad, msg", [
    ({"key": "x", "bandwidth_gbs": -5}, "bandwidth_gbs"),
    ({"key": "x", "bandwidth_gbs": "fast"}, "not a number"),
    ({"key": "x", "native": ["fp9"]}, "unknown precision"),
    ({"bandwidth_gbs": 5}, "'key'"),
])
def test_bad_custom_hardware_is_a_clear_error(bad, msg):
    with pytest.raises(ValueError, match=msg):
        hardware_from_dict(bad)


def _profile(tmp_path, **over):
    d = {"hardware": "gb10", "bandwidth_gbs": 230.0, "peaks_tflops": {"fp16": 50.0, "fp4": 350.0},
         "timestamp": "2026-11-21T00:00:00Z", **over}
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(d))
    return path


def test_calibration_sits_beside_the_datasheet(tmp_path):
    hw = get_hardware("gb10").with_calibration(load_calibration(_profile(tmp_path)))
    assert hw.peak_tflops("fp16") == 125 and hw.peak_tflops("fp16", "calibrated") == 50.0
    assert hw.bandwidth_gbs() == 273 and hw.bandwidth_gbs("calibrated") == 230.0
    cal = predict(gemv(4096, 4096, "fp16"), hw, peaks="calibrated")
    sheet = predict(gemv(4096, 4096, "fp16"), hw)
    assert cal.peaks == "calibrated" and "cal.json" in cal.peak_source
    assert sheet.peaks == "datasheet" and sheet.peak_source.startswith("datasheet")
    assert cal.time_s == pytest.approx(sheet.time_s * 273 / 230)
    assert get_hardware("gb10").calibration is None  # the registry entry is untouched


def test_calibration_without_the_needed_class_falls_back_to_the_datasheet_or_says_what_was_measured(tmp_path):
    """The scalar and vectorised paths agree: both get the datasheet peak for a class the profile never measured
    (the sweep once raised where predict fell back), and both refuse a class with neither."""
    from roofline import gemm, sweep_gemm
    hw = get_hardware("gb10").with_calibration(load_calibration(_profile(tmp_path)))
    value, source = hw.peak("fp8", "calibrated")
    assert value == hw.peaks["fp8"].value and "has no measured fp8 peak" in source
    assert hw.peak_tflops("fp8", "calibrated") == value
    one = predict(gemm(4096, 4096, 4096, precision="fp8_e4m3"), hw, peaks="calibrated")
    many = sweep_gemm([4096], [4096], [4096], hw, "fp8_e4m3", peaks="calibrated")
    assert many["time_s"][0] == pytest.approx(one.time_s)
    bare = dataclasses.replace(hw, peaks={k: v for k, v in hw.peaks.items() if k != "fp8"})
    with pytest.raises(ValueError, match="no measured fp8 peak and there is no datasheet one; measured: fp16, fp4"):
        bare.peak_tflops("fp8", "calibrated")


@pytest.mark.parametrize("over", [{"bandwidth_gbs": 0}, {"peaks_tflops": "fast"}, {"hardware": None,
                                                                                   "bandwidth_gbs": None}])
def test_malformed_calibration_is_a_clear_error(tmp_path, over):
    with pytest.raises(ValueError, match="calibration profile"):
        load_calibration(_profile(tmp_path, **over))


def test_calibrated_peaks_without_a_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="no calibration loaded for gb10"):
        predict(gemv(64, 64), "gb10", peaks="calibrated")


def test_calibration_round_trips():
    cal = Calibration("cpu", {"fp32": 1.5}, 20.0, {"L2": 100.0}, {"name": "x"}, {"torch": "2.13"}, "now")
    assert Calibration.from_dict(cal.to_dict()) == cal


# Every flag shared/reference/hardware.md puts on a number, transcribed: (key, number, flag). "Sources
# disagree" counts as unverified (gb10's clock: 2418 MHz vs NVIDIA's 2.14 GHz; b200's 7700 vs 8000 GB/s).
REFERENCE_FLAGS = [
    ("gb10", "gpu_clock_mhz", "unverified"), ("gb10", "tf32", "unverified"), ("gb10", "fp16", "derived"),
    ("gb10", "bf16", "derived"), ("gb10", "fp8", "derived"), ("gb10", "int8", "unverified"), ("gb10", "fp4", "derived"),
    *[(k, c, "derived") for k in ("jetson_orin_nano", "jetson_orin_nano_super") for c in ("fp32", "tf32", "fp16", "bf16")],
    ("jetson_agx_orin", "bandwidth_gbs", "unverified"),
    *[("jetson_agx_orin", c, "derived") for c in ("tf32", "fp16", "bf16")],
    ("b200", "sm_count", "unverified"), ("b200", "bandwidth_gbs", "unverified"), ("b200", "memory_gb", "unverified"),
    ("rtx5090", "tf32", "derived"), ("rtx5090", "fp8", "derived"), ("rtx5090", "int8", "unverified"),
]


@pytest.mark.parametrize("key, number, flag", REFERENCE_FLAGS, ids=lambda v: str(v))
def test_every_flag_the_reference_puts_on_a_number_is_in_the_registry(key, number, flag):
    spec = REGISTRY[key].spec(number)
    assert getattr(spec, flag), f"{key} {number}={spec.value:g} lost its '{flag}' flag ({spec.flags or 'no flags'})"
    assert spec.source


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_sm_count_and_l2_carry_a_spec_like_every_other_number(key):
    hw = REGISTRY[key]
    for number, value in (("sm_count", hw.sm_count), ("l2_mb", hw.l2_mb), ("gpu_clock_mhz", hw.gpu_clock),
                          ("mem_clock_mhz", hw.mem_clock)):
        spec = hw.spec(number)
        assert (spec is None) == (value is None) and (spec is None or spec.source), (key, number)
    # a JSON round trip keeps the flags (custom hardware and `roofline hardware --json` go through it)
    again = hardware_from_dict(hw.to_dict())
    assert (again.sm_count, again.spec("sm_count"), again.spec("l2_mb")) == (hw.sm_count, hw.spec("sm_count"),
                                                                            hw.spec("l2_mb"))


def test_a_number_computed_from_an_unverified_one_is_unverified():
    """Orin peaks are SMs x clock x per-SM rate: where the clock is unverified, so is every peak."""
    for key, hw in REGISTRY.items():
        for cls, spec in hw.peaks.items():
            if "MHz x" in spec.note and hw.gpu_clock.unverified:
                assert spec.derived and spec.unverified, (key, cls, hw.gpu_clock.note)
    assert REGISTRY["jetson_orin_nx_16gb"].peaks["fp16"].unverified
    assert not REGISTRY["jetson_orin_nano"].peaks["fp16"].unverified  # its 625 MHz is the datasheet's


def test_a_scaled_sm_count_says_it_was_changed():
    seven_watt = apply_power_mode("jetson_orin_nano", "7W")
    assert seven_watt.sm_count == 4
    spec = seven_watt.spec("sm_count")
    assert spec.value == 4 and spec.derived and "8 in the registry" in spec.note
    with pytest.raises(ValueError, match="no number 'cores'; known: bandwidth_gbs"):
        seven_watt.spec("cores")


@pytest.mark.parametrize("key", ["rtx4090", "rtx5090"])
def test_consumer_fp8_peaks_are_the_fp32_accumulate_rate_like_their_fp16(key):
    """One convention: FP8 and FP16 peaks at FP32 accumulate (what torch._scaled_mm runs). GeForce parts
    double both with FP16 accumulate; the 5090 entry used to store FP8's FP16-accumulate 838 beside an FP16
    at FP32 accumulate (209.5), a 4x ratio where the 4090's sheet shows 2x."""
    peaks = REGISTRY[key].peaks
    assert peaks["fp16"].note.startswith("fp32 accumulate") and peaks["fp8"].note.startswith("fp32 accumulate")
    assert peaks["fp8"].value == pytest.approx(2 * peaks["fp16"].value, rel=1e-3)
    assert "with fp16 accumulate" in peaks["fp8"].note  # the other rate is named, not stored


def test_every_orin_gpus_tf32_ceiling_is_half_its_fp16():
    # GA10B runs TF32 at half its FP16 rate per SM per clock; the AGX entry took hardware.md's 10.6 (FP16 / 4), a
    # ceiling a real TF32 GEMM at 15 TFLOP/s would have "beaten"
    from roofline import REGISTRY
    orins = [hw for hw in REGISTRY.values() if hw.arch == "sm_87"]
    assert len(orins) >= 4
    for hw in orins:
        assert hw.peaks["tf32"].value == pytest.approx(hw.peaks["fp16"].value / 2, rel=0.01), hw.key
