"""Device detection: CUDA names, Jetson boards and CPU facts, parsed from strings and fake trees."""
import pytest

from kernels.device import (detect, fp32_flops_per_cycle, hardware_key_from_cuda_name, hardware_key_from_jetson,
                            host_cpu_hardware, read_cpu_info)


@pytest.mark.parametrize("name, key", [
    ("NVIDIA GB10", "gb10"), ("NVIDIA H100 80GB HBM3", "h100_sxm"), ("NVIDIA H100 PCIe", "h100_pcie"),
    ("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-80GB", "a100"), ("NVIDIA B200", "b200"),
    ("NVIDIA GeForce RTX 4090", "rtx4090"), ("NVIDIA GeForce RTX 5090", "rtx5090"), ("Orin", "jetson_orin_nano"),
    ("Tesla T4", None),
])
def test_cuda_device_names(name, key):
    assert hardware_key_from_cuda_name(name) == key


@pytest.mark.parametrize("model, conf, key", [
    ("NVIDIA Jetson Orin Nano Developer Kit", "", "jetson_orin_nano"),
    ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "", "jetson_orin_nano_super"),
    ("NVIDIA Jetson Orin Nano Developer Kit", "< POWER_MODEL ID=2 NAME=MAXN_SUPER >", "jetson_orin_nano_super"),
    ("NVIDIA Jetson AGX Orin Developer Kit", "", "jetson_agx_orin"),
    ("Raspberry Pi 5 Model B", "", None),
])
def test_jetson_models(model, conf, key):
    assert hardware_key_from_jetson(model, conf) == key


def fake_cpu_tree(root, flags="fpu sse2 avx2 fma", max_khz="3500000"):
    (root / "proc").mkdir(parents=True)
    (root / "proc/cpuinfo").write_text("".join(
        f"processor\t: {i}\nmodel name\t: Fake CPU 9000\ncpu MHz\t\t: 2000.000\nphysical id\t: 0\n"
        f"cpu cores\t: 4\nflags\t\t: {flags}\n\n" for i in range(8)))
    cache = root / "sys/devices/system/cpu/cpu0/cache"
    for i, (level, kind, size) in enumerate([(1, "Data", "32K"), (1, "Instruction", "32K"), (2, "Unified", "1024K"),
                                             (3, "Unified", "16384K")]):
        d = cache / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    if max_khz:
        freq = root / "sys/devices/system/cpu/cpu0/cpufreq"
        freq.mkdir(parents=True)
        (freq / "cpuinfo_max_freq").write_text(max_khz + "\n")
    return root


def test_cpu_info_from_a_fake_tree(tmp_path):
    cpu = read_cpu_info(fake_cpu_tree(tmp_path))
    assert (cpu.model, cpu.cores, cpu.threads, cpu.max_mhz) == ("Fake CPU 9000", 4, 8, 3500.0)
    assert cpu.caches == {"L1d": 32 * 2**10, "L2": 2**20, "L3": 16 * 2**20} and cpu.llc_bytes == 16 * 2**20
    assert cpu.clock_source == "cpufreq cpuinfo_max_freq"


def test_cpu_clock_falls_back_to_cpuinfo_and_says_so(tmp_path):
    cpu = read_cpu_info(fake_cpu_tree(tmp_path, max_khz=""))
    assert cpu.max_mhz == 2000.0 and "not boost" in cpu.clock_source


def test_host_cpu_peaks_are_derived_and_flagged(tmp_path):
    cpu = read_cpu_info(fake_cpu_tree(tmp_path, flags="avx2 fma avx512f avx512_bf16 avx512_vnni"))
    hw = host_cpu_hardware(cpu)
    assert hw.peaks["fp32"].value == pytest.approx(4 * 3500e6 * 64 / 1e12)
    assert hw.peaks["bf16"].value == 2 * hw.peaks["fp32"].value and hw.peaks["int8"].value == 4 * hw.peaks["fp32"].value
    assert all(s.derived and s.unverified for s in hw.peaks.values())
    assert hw.bandwidth is None and hw.native == {"fp32", "bf16", "int8"} and hw.family == "cpu"


def test_flops_per_cycle_by_simd_width():
    assert fp32_flops_per_cycle(frozenset({"avx512f"})) == 64
    assert fp32_flops_per_cycle(frozenset({"avx2", "fma"})) == 32
    assert fp32_flops_per_cycle(frozenset({"asimd"})) == 16


def test_this_machine_is_detected_and_the_override_wins():
    info = detect()
    assert info.hardware_key == "cpu" and info.kind == "cpu" and info.torch_device == "cpu"
    assert info.versions["torch"] and info.cpu.cores >= 1
    assert info.flush_bytes >= 2 * info.cpu.llc_bytes
    forced = detect("b10")
    assert forced.hardware_key == "gb10" and "detected: cpu" in forced.detected_by
    with pytest.raises(ValueError, match="unknown hardware 'tpu'"):
        detect("tpu")


def test_a_jetson_tree_without_cuda_is_detected_as_the_board(tmp_path):
    root = fake_cpu_tree(tmp_path)
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_text("NVIDIA Jetson AGX Orin Developer Kit\x00")
    info = detect(root=root)
    assert info.hardware_key == "jetson_agx_orin" and info.kind == "jetson"
