"""Tiling traffic model and clock / power-mode scaling."""
import pytest

from roofline import apply_power_mode, best_tiling, gemm, get_hardware, predict, scale_clocks, tiled_gemm_traffic


def test_tiles_covering_the_problem_give_the_compulsory_bytes():
    t = tiled_gemm_traffic(512, 1024, 256, 512, 1024, precision="fp16")
    assert t.dram_bytes == gemm(512, 1024, 256, "fp16").bytes and t.excess == 1.0


def test_rereads_by_hand():
    # 1024x1024x1024 fp16, 128x256 tiles: A read 1024/256 = 4 times, B 1024/128 = 8 times
    t = tiled_gemm_traffic(1024, 1024, 1024, 128, 256, precision="fp16")
    mb = 1024 * 1024 * 2
    assert (t.a_reads, t.b_reads) == (4, 8)
    assert t.dram_bytes == 4 * mb + 8 * mb + mb
    assert t.ai == pytest.approx(2 * 1024**3 / (13 * mb))


def test_traffic_shrinks_toward_compulsory_as_tiles_grow():
    sizes = [16, 32, 64, 128, 256, 512, 1024, 2048]
    traffic = [tiled_gemm_traffic(2048, 2048, 2048, s, s, precision="bf16").dram_bytes for s in sizes]
    assert traffic == sorted(traffic, reverse=True)
    assert traffic[-1] == gemm(2048, 2048, 2048, "bf16").bytes


def test_partial_tiles_round_up():
    t = tiled_gemm_traffic(100, 100, 64, 64, 64, precision="fp16")
    assert (t.a_reads, t.b_reads) == (2, 2)


def test_capacity_limits_the_tile():
    with pytest.raises(ValueError, match="on chip"):
        tiled_gemm_traffic(4096, 4096, 4096, 1024, 1024, precision="fp16", onchip_bytes=228 * 1024)
    best = best_tiling(4096, 4096, 4096, 228 * 1024, precision="fp16")
    assert best.tile_working_set_bytes <= 228 * 1024 and best.excess > 1


def test_clock_scaling():
    hw = scale_clocks("jetson_orin_nano_super", gpu_clock_mhz=510, mem_clock_mhz=2133)
    base = get_hardware("jetson_orin_nano_super")
    assert hw.peaks["fp16"].value == pytest.approx(base.peaks["fp16"].value / 2)
    assert hw.bandwidth.value == pytest.approx(102 * 2133 / 3199)
    assert hw.peaks["fp16"].derived and "scaled" in hw.peaks["fp16"].note
    assert base.peaks["fp16"].value == 16.7  # registry untouched


def test_power_modes():
    nano_7w = apply_power_mode("jetson_orin_nano", "7W")
    assert nano_7w.peaks["fp16"].value == pytest.approx(10.2 * 408 / 625 * 4 / 8)
    assert nano_7w.sm_count == 4 and nano_7w.family == "jetson"
    super15 = apply_power_mode("jetson_orin_nano_super", "15w")
    assert super15.bandwidth.value == pytest.approx(68, rel=0.01)
    assert apply_power_mode("jetson_agx_orin", 2).peaks["fp16"].value == pytest.approx(42.6 * 612 / 1300.5 * 8 / 16)
    slower = predict(gemv_cost(), super15).time_s / predict(gemv_cost(), "jetson_orin_nano_super").time_s
    assert slower == pytest.approx(3199 / 2133, rel=1e-6)


def gemv_cost():
    return gemm(1, 4096, 4096, "fp16")


@pytest.mark.parametrize("call, msg", [
    (lambda: apply_power_mode("h100", "MAXN"), "no power modes known for h100_sxm"),
    (lambda: apply_power_mode("jetson_orin_nano", "99W"), "unknown power mode '99W'"),
    (lambda: scale_clocks("h100", gpu_clock_mhz=1000), "no nominal gpu_clock_mhz"),
    (lambda: scale_clocks("gb10", gpu_clock_mhz=-1), "positive"),
    (lambda: scale_clocks("jetson_orin_nano", active_sms=99), "exceeds"),
])
def test_bad_scaling_input(call, msg):
    with pytest.raises(ValueError, match=msg):
        call()


def test_a_scaled_entry_keeps_its_registry_key_and_power_mode_as_fields():
    """Issue 20: callers read these fields; none parses them back out of the key any more."""
    hw = apply_power_mode("jetson_orin_nano_super", "15W")
    assert (hw.key, hw.base_key, hw.power_mode) == ("jetson_orin_nano_super@nvpmodel 15W", "jetson_orin_nano_super", "15W")
    both = scale_clocks(hw, gpu_clock_mhz=500)
    assert (both.base_key, both.power_mode) == ("jetson_orin_nano_super", "15W") and both.key.count("@") == 2
    plain = get_hardware("gb10")
    assert (plain.base_key, plain.power_mode) == ("gb10", None)
    assert scale_clocks(plain, active_sms=24).base_key == "gb10"


def test_resolve_applies_the_mode_then_the_clocks_then_the_calibration():
    from roofline import Calibration
    from roofline.clocks import resolve
    cal = Calibration("jetson_orin_nano_super", {"fp16": 10.0}, 60.0)
    got = resolve("jetson_orin_nano_super", "15W", gpu_clock_mhz=400, calibration=cal)
    want = scale_clocks(apply_power_mode("jetson_orin_nano_super", "15W"), gpu_clock_mhz=400).with_calibration(cal)
    assert got == want and got.calibration is cal
    assert resolve("h100_sxm") == get_hardware("h100_sxm")


def test_one_unknown_power_mode_error_for_every_caller(tmp_path):
    from roofline.clocks import power_budget_w
    from roofline_kernels.power_modes import PowerModes
    messages = set()
    for call in (lambda: apply_power_mode("jetson_orin_nano_super", "7W"),
                 lambda: power_budget_w("jetson_orin_nano_super", "7W"),
                 lambda: PowerModes("jetson_orin_nano_super", tmp_path, allow_change=True, is_root=False).resolve("7W")):
        with pytest.raises(ValueError) as e:
            call()
        messages.add(str(e.value))
    assert messages == {"unknown power mode '7W' for jetson_orin_nano_super; known: 15W (0), 25W (1), MAXN_SUPER (2)"}


@pytest.mark.parametrize("key, name, slices, sms", [
    ("h100_sxm", "NVIDIA H100 80GB HBM3 MIG 1g.10gb", 1, 16), ("h100_sxm", "NVIDIA H100 80GB HBM3 MIG 1g.20gb", 2, 16),
    ("h100_sxm", "NVIDIA H100 80GB HBM3 MIG 3g.40gb", 4, 60), ("h100_sxm", "NVIDIA H100 80GB HBM3 MIG 1g.10gb+me", 1, 16),
    ("h100_sxm", "NVIDIA H100 80GB HBM3 MIG 1c.3g.40gb", 4, 16),   # a compute instance: its GPU instance's memory
    ("a100", "NVIDIA A100-SXM4-40GB MIG 1g.5gb", 1, 14),            # the name's 40GB board, not the entry's 80
    ("a100", "NVIDIA A100-SXM4-40GB MIG 1g.10gb", 2, 14),
    ("h200", "NVIDIA H200 MIG 1g.18gb", 1, 16), ("h200", "NVIDIA H200 MIG 2g.35gb", 2, 32),  # no GB in the name:
    ("h200", "NVIDIA H200 MIG 3g.71gb", 4, 60), ("h200", "NVIDIA H200 MIG 7g.141gb", 8, 132),  # the entry's 141
    ("h100_nvl", "NVIDIA H100 NVL MIG 1g.12gb", 1, 16), ("b200", "NVIDIA B200 MIG 1g.23gb", 1, 18),
    ("h200", "NVIDIA GH200 480GB MIG 1g.18gb", 1, 16)])             # "480GB" counts LPDDR: not the board's HBM
def test_a_mig_slice_owns_its_memory_slices_and_its_sms(key, name, slices, sms):
    """MIG User Guide, "Supported MIG Profiles": each profile's fraction of memory (of 8 memory slices, each with its
    memory controllers and L2) and its SMs. Bandwidth, memory and L2 scale with the memory slices, compute with the
    SMs CUDA reports."""
    from roofline.clocks import mig_profile, mig_slice
    board = get_hardware(key)
    hw = mig_slice(key, name, sms)
    assert mig_profile(hw.key) == mig_profile(name)
    assert hw.bandwidth.value == pytest.approx(board.bandwidth.value * slices / 8)
    assert hw.l2_mb == (pytest.approx(board.l2_mb * slices / 8) if board.l2_mb else None)
    assert hw.peaks["bf16"].value == pytest.approx(board.peaks["bf16"].value * sms / board.sm_count)
    assert f"{slices} of 8 memory slices" in hw.key


def test_a_profile_is_held_to_the_partition_it_was_measured_on():
    """A slice's calibration beside the whole board's roofs (or the reverse) gave numbers of neither: refused. The
    theory's --calibration with a slice's profile takes that slice's roofs."""
    from roofline import Calibration
    from roofline.clocks import mig_slice, resolve
    name = "NVIDIA H100 80GB HBM3 MIG 1g.10gb"
    on_slice = Calibration("h100_sxm", {"bf16": 100.0}, 380.0, device={"name": name, "sm_count": 16})
    on_board = Calibration("h100_sxm", {"bf16": 700.0}, 3000.0, device={"name": "NVIDIA H100 80GB HBM3"})
    sliced = mig_slice("h100_sxm", name, 16)
    with pytest.raises(ValueError, match="measured on the whole GPU, and this is a MIG 1g.10gb slice"):
        sliced.with_calibration(on_board)
    with pytest.raises(ValueError, match="measured on a MIG 1g.10gb slice, and this is the whole GPU"):
        get_hardware("h100_sxm").with_calibration(on_slice)
    assert sliced.with_calibration(on_slice).calibration is on_slice
    theory = resolve("h100_sxm", calibration=on_slice)
    assert theory.bandwidth.value == pytest.approx(get_hardware("h100_sxm").bandwidth.value / 8)
    assert theory.calibration is on_slice
