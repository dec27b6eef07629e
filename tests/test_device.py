"""Device detection: CUDA names, Jetson boards and CPU facts, on simulated devices (tests/fakes) and fake trees."""
import dataclasses

import pytest

from roofline_kernels import telemetry

from roofline_kernels.device import DeviceInfo, detect, host_cpu_hardware, read_cpu_info
from roofline_kernels.identify import hardware_key_from_cuda_name, hardware_key_from_jetson, identify_cuda
from tests.fakes.cuda import install_fake_cuda
from tests.fakes.devices import SIMULATED
from tests.fakes.host import fake_cpu_tree, write
from tests.fakes.install import install_device
from tests.fakes.jetson import install_fake_nvpmodel, path_with

JETSONS = [k for k, d in SIMULATED.items() if d.is_jetson]


@pytest.mark.parametrize("name, key", [
    ("NVIDIA GB10", "gb10"), ("NVIDIA H100 80GB HBM3", "h100_sxm"), ("NVIDIA H100 PCIe", "h100_pcie"),
    ("NVIDIA H100 NVL", "h100_nvl"), ("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-80GB", "a100"),
    ("NVIDIA B200", "b200"), ("NVIDIA GeForce RTX 4090", "rtx4090"), ("NVIDIA GeForce RTX 5090", "rtx5090"),
    ("Orin", None), ("Tesla T4", None),  # a Jetson's GPU is named by identify_jetson, never by its CUDA name
    ("NVIDIA GH200 480GB", None),  # Grace Hopper: not the registry's H200 SXM (its "H200" was matched)
])
def test_cuda_device_names(name, key):
    assert hardware_key_from_cuda_name(name) == key


@pytest.mark.parametrize("name, gib, variant", [("NVIDIA A100-SXM4-40GB", 39.4, True), ("NVIDIA A100-SXM4-80GB", 79.2, False),
                                               ("NVIDIA H100 80GB HBM3", 79.1, False), ("NVIDIA H200", 139.8, False)])
def test_a_memory_variant_the_registry_lacks_is_said(name, gib, variant):
    """An A100 40GB (1555 GB/s) was held to the A100 80GB SXM's roofs (2039 GB/s) without a word: its healthy
    memory-bound cases read ~76% of what they should and could fail the floors. The stand-in is now said, with the
    way out (an entry of its own); boards at their own memory (90-99% of nominal visible) say nothing."""
    found = identify_cuda(name, sm_count=132 if "H" in name.split()[1] else 108, memory_bytes=int(gib * 2**30))
    said = [e for e in found.evidence if "a variant the registry lacks" in e]
    assert bool(said) == variant, found.evidence
    if variant:
        assert said[0].startswith("39.4 GiB of memory where a100 (NVIDIA A100 80GB SXM) has 80 GB")


@pytest.mark.parametrize("name, gib, folder", [
    ("NVIDIA A100-SXM4-80GB", 79.2, "a100"), ("NVIDIA A100-SXM4-40GB", 39.4, "a100-40gb"),
    ("NVIDIA A100-SXM4-40GB MIG 1g.10gb", 9.75, "a100-40gb-mig-1g.10gb"),
    ("NVIDIA A100-SXM4-80GB MIG 1g.10gb", 9.75, "a100-mig-1g.10gb")])
def test_a_memory_variant_keeps_a_timing_history_of_its_own(tmp_path, monkeypatch, name, gib, folder):
    """An A100 40GB (1555 GB/s) was gated against the A100 80GB's runs (2039 GB/s), and a 40GB board's 1g.10gb (2
    of 8 memory slices) against an 80GB board's (1 of 8): one folder each now."""
    from roofline_kernels.device import history_dir
    dev = SIMULATED["a100"].replace(cuda_name=name, memory_bytes=int(gib * 2**30),
                                    sm_count=14 if "MIG" in name else 108)
    install_device(monkeypatch, "a100", tmp_path, device=dev)
    assert history_dir(detect(root=tmp_path)) == folder


def test_sm_count_and_memory_correct_an_ambiguous_name():
    """An H100 named without its form factor is told apart by what CUDA reports about it."""
    pcie = identify_cuda("NVIDIA H100", sm_count=114, memory_bytes=80 * 2**30)
    assert pcie.key == "h100_pcie" and "114 SMs" in pcie.evidence[-1]
    nvl = identify_cuda("NVIDIA H100", sm_count=132, memory_bytes=94 * 2**30)
    assert nvl.key == "h100_nvl"
    assert identify_cuda("NVIDIA H100 80GB HBM3", sm_count=132, memory_bytes=80 * 2**30).key == "h100_sxm"


@pytest.mark.parametrize("model, conf, key", [
    ("NVIDIA Jetson Orin Nano Developer Kit", "", "jetson_orin_nano"),
    ("NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "", "jetson_orin_nano_super"),
    ("NVIDIA Jetson Orin Nano Developer Kit", "< POWER_MODEL ID=2 NAME=MAXN_SUPER >", "jetson_orin_nano_super"),
    ("NVIDIA Jetson AGX Orin Developer Kit", "", "jetson_agx_orin"),
    ("Raspberry Pi 5 Model B", "", None),
    ("NVIDIA Jetson Xavier NX Developer Kit", "", None),
])
def test_jetson_models(model, conf, key):
    assert hardware_key_from_jetson(model, conf) == key


# --- every simulated device is detected as itself ---------------------------------------------------

@pytest.mark.parametrize("key", sorted(SIMULATED))
def test_every_simulated_device_is_detected_as_itself(key, tmp_path, monkeypatch):
    install_device(monkeypatch, key, tmp_path)
    info = detect(root=tmp_path)
    dev = SIMULATED[key]
    assert info.hardware_key == key, info.detected_by
    assert info.kind == ("jetson" if dev.is_jetson else "cuda") and info.torch_device == "cuda"
    assert (info.uuid, info.sm_count, info.memory_bytes) == (dev.uuid, dev.sm_count, dev.memory_bytes)
    assert info.compute_capability == "{}.{}".format(*dev.capability) and info.unavailable is None
    assert info.sysfs_root == str(tmp_path)


@pytest.mark.parametrize("profile, sms, gib, slices", [("1g.10gb", 16, 9.75, 1), ("3g.40gb", 60, 39.4, 4),
                                                      ("1c.3g.40gb", 16, 39.4, 4),  # a compute instance of a 3g
                                                      ("7g.80gb", 132, 79.2, 8)])
def test_a_mig_slice_is_held_to_its_share_of_the_board(tmp_path, monkeypatch, profile, sms, gib, slices):
    """CUDA names a MIG slice by its board and profile ("NVIDIA H100 80GB HBM3 MIG 1g.10gb") with the slice's SMs
    and memory. Before: it was held to the whole H100's roofs (3350 GB/s, every SM), so a healthy 1g.10gb read ~1/8
    of its roof and failed the sourced floors, and its timing history was gated against the whole board's. Now its
    compute scales with its SMs and its bandwidth with its memory slices (NVIDIA MIG User Guide, "Supported MIG
    Profiles"), and its history has a folder of its own."""
    import dataclasses
    from roofline import get_hardware
    from roofline_kernels.device import history_dir
    from roofline_kernels.measure import hardware_for
    whole = SIMULATED["h100_sxm"]
    mig = whole.replace(cuda_name=f"NVIDIA H100 80GB HBM3 MIG {profile}", sm_count=sms,
                        memory_bytes=int(gib * 2**30), uuid="MIG-0b8e9a3c-8f2e-5b1a-9f0e-1c2d3e4f5a6b")
    install_device(monkeypatch, "h100_sxm", tmp_path / "mig", device=mig)
    info = detect(root=tmp_path / "mig")
    gi = profile.split(".", 1)[1] if profile.count(".") == 2 else profile  # a compute instance's GPU instance
    assert info.hardware_key == "h100_sxm" and f"a MIG slice ({gi}) of h100_sxm" in info.detected_by
    assert "variant" not in info.detected_by
    hw, board = hardware_for(info), get_hardware("h100_sxm")
    assert hw.bandwidth.value == pytest.approx(board.bandwidth.value * slices / 8)
    assert hw.peaks["bf16"].value == pytest.approx(board.peaks["bf16"].value * sms / 132)
    assert hw.memory.value == float(profile.rsplit(".", 1)[1][:-2])  # a slice plans against its own memory
    assert f"mig-{gi}" in history_dir(info)
    install_device(monkeypatch, "h100_sxm", tmp_path / "whole", device=whole)
    full = detect(root=tmp_path / "whole")
    assert hardware_for(full).bandwidth.value == board.bandwidth.value


@pytest.mark.parametrize("key", JETSONS)
def test_a_jetson_in_a_container_is_still_its_board(key, tmp_path, monkeypatch):
    """No device tree (docker masks it): SM count, memory, power mode and GPU clocks name the board.
    Before: every Orin became an Orin Nano (the CUDA name is just "Orin")."""
    install_device(monkeypatch, key, tmp_path, docker=True)
    info = detect(root=tmp_path)
    assert info.hardware_key == key and "device tree masked" in info.detected_by, info.detected_by


@pytest.mark.parametrize("key, mode", [("jetson_agx_orin", "MODE_30W"), ("jetson_agx_orin", "MODE_15W"),
                                       ("jetson_orin_nx_16gb", "15W"), ("jetson_orin_nx_8gb", "10W")])
def test_a_masked_jetson_showing_only_its_powered_sms_is_still_its_board(key, mode):
    """If CUDA counts only the SMs a power mode leaves powered (no source says it does not; the fakes show the full
    count), a masked board was named by that count: an AGX Orin in MODE_30W (8 SMs) became an NX 16GB at a quarter
    of its memory and half its bandwidth, and an NX 16GB in 15W (4 SMs) matched no entry and took the first 8-SM
    one, an Orin Nano (68 GB/s for 102). Memory a board shows is never more than it has, and a mode's SMs are the
    board's own: with the GPU's top clock, they name it with no mode reading at all (a container without nvpmodel)."""
    from roofline import get_hardware
    from roofline.clocks import POWER_MODES
    from roofline_kernels.identify import JetsonFacts, identify_jetson
    sms = POWER_MODES[key][mode][2]
    visible = int(get_hardware(key).memory.value * 0.93 * 2**30)  # carve-outs: a board shows less than it has
    top = get_hardware(key).gpu_clock.value  # the devfreq table's top clock, which a container still shows
    found = identify_jetson(JetsonFacts(sm_count=sms, memory_bytes=visible, gpu_max_mhz=top))
    assert found.key == key, found.evidence
    assert identify_jetson(JetsonFacts(sm_count=get_hardware(key).sm_count, memory_bytes=visible,
                                       gpu_max_mhz=top)).key == key
    # without the memory, the mode's SM count alone must still admit the board (an AGX in MODE_15W shows 6 SMs,
    # which no board has outside a mode: the nearest entry by SMs was an 8-SM one)
    assert identify_jetson(JetsonFacts(sm_count=sms, gpu_max_mhz=top)).key == key


def test_an_sm_count_alone_names_a_board_that_has_it_before_one_that_gates_to_it():
    """With nothing but 8 SMs, an 8-SM board comes before an AGX Orin that shows 8 only in MODE_30W (after the
    mode counts joined, the last tie-break took the AGX by name)."""
    from roofline import REGISTRY
    from roofline_kernels.identify import JetsonFacts, identify_jetson
    assert REGISTRY[identify_jetson(JetsonFacts(sm_count=8)).key].sm_count == 8


@pytest.mark.parametrize("key", ["jetson_orin_nx_16gb", "jetson_orin_nx_8gb"])
def test_orin_nx_is_not_an_orin_nano(key, tmp_path, monkeypatch):
    """Orin NX has 102 GB/s: held to the Nano's 68 GB/s roof, its cases would "beat" it. Before: nano."""
    install_device(monkeypatch, key, tmp_path)
    info = detect(root=tmp_path)
    assert info.hardware_key == key
    from roofline import get_hardware
    assert get_hardware(info.hardware_key).bandwidth.value > get_hardware("jetson_orin_nano").bandwidth.value


def test_super_follows_the_current_power_mode_not_the_config_text(tmp_path, monkeypatch):
    """The mode the board runs decides Super vs not; the config file's text is only the last resort."""
    install_device(monkeypatch, "jetson_orin_nano_super", tmp_path, docker=True, mode="MAXN_SUPER")
    assert not (tmp_path / "etc/nvpmodel.conf").exists()  # a container: no config to read
    info = detect(root=tmp_path)
    assert info.hardware_key == "jetson_orin_nano_super" and "MAXN_SUPER" in info.detected_by
    assert info.power_mode == {"mode": "MAXN_SUPER", "id": 2}


def test_a_config_mentioning_super_does_not_override_a_non_super_mode(tmp_path, monkeypatch):
    install_device(monkeypatch, "jetson_orin_nano", tmp_path, mode="7W")
    write(tmp_path, "etc/nvpmodel.conf", "< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n")  # a stale Super config
    info = detect(root=tmp_path)
    assert info.hardware_key == "jetson_orin_nano" and info.power_mode == {"mode": "7W", "id": 1}
    from roofline import apply_power_mode  # the current mode must exist in the key's table
    assert apply_power_mode(info.hardware_key, info.power_mode["mode"]).sm_count == 4


def test_power_mode_and_driver_are_recorded(tmp_path, monkeypatch):
    install_device(monkeypatch, "jetson_agx_orin", tmp_path, mode="MODE_50W")
    info = detect(root=tmp_path)
    assert info.power_mode == {"mode": "MODE_50W", "id": 3} and info.driver == "540.4.0"
    assert info.to_dict()["power_mode"] == {"mode": "MODE_50W", "id": 3}


def test_a_jetson_without_cuda_torch_is_unavailable_with_the_reason(tmp_path, monkeypatch):
    """Before: kind jetson, torch_device "cuda", and every case errored on a CPU-only torch."""
    install_device(monkeypatch, "jetson_orin_nano", tmp_path, cuda=False)
    import torch
    info = detect(root=tmp_path)
    assert info.kind == "jetson" and info.hardware_key == "jetson_orin_nano"
    assert info.torch_device == "cpu"
    assert "Jetson Orin Nano" in info.unavailable and f"torch {torch.__version__} has no CUDA" in info.unavailable
    assert "JetPack torch wheel" in info.unavailable
    # naming the board changes nothing there: no --hardware gives torch CUDA
    assert "has no CUDA" in detect("jetson_orin_nano", root=tmp_path).unavailable


def test_a_jetson_the_registry_lacks_without_cuda_stays_unavailable_under_an_override(tmp_path, monkeypatch):
    """An unknown Jetson (a Xavier) whose torch has no CUDA carried only "the registry lacks" it, which an override
    clears: it then ran as a CUDA device without CUDA. Both reasons are said, and the override clears neither."""
    install_device(monkeypatch, "jetson_orin_nano", tmp_path, cuda=False)
    write(tmp_path, "proc/device-tree/model", "NVIDIA Jetson AGX Xavier\x00")
    bare = detect(root=tmp_path)
    assert "a Jetson the registry lacks" in bare.unavailable and "has no CUDA" in bare.unavailable
    named = detect("jetson_orin_nano", root=tmp_path)
    assert "has no CUDA" in named.unavailable and named.torch_device == "cpu"


def test_an_unknown_gpu_is_unavailable_not_a_cpu(tmp_path, monkeypatch):
    dev = SIMULATED["h100_sxm"].replace(cuda_name="Tesla T4", sm_count=40)
    install_device(monkeypatch, "h100_sxm", tmp_path, device=dev)
    info = detect(root=tmp_path)
    assert info.kind == "cuda" and "'Tesla T4' has no registry entry" in info.unavailable
    assert info.torch_device == "cpu"


def test_a_gpu_the_registry_lacks_is_measured_against_the_entry_named(tmp_path, monkeypatch):
    """Its refusal says "pass --hardware KEY naming one that describes it", and doing so still left it unavailable
    (the suite skipped, measure refused). A GH200 ("H200" in its name was taken for the H200 SXM) is one."""
    dev = SIMULATED["h200"].replace(cuda_name="NVIDIA GH200 480GB", memory_bytes=95 * 2**30)
    install_device(monkeypatch, "h200", tmp_path, device=dev)
    assert "has no registry entry: pass --hardware KEY" in detect(root=tmp_path).unavailable
    info = detect("h200", root=tmp_path)
    assert info.hardware_key == "h200" and info.unavailable is None and info.torch_device == "cuda"


def test_the_cuda_device_torch_uses_is_the_one_described(tmp_path, monkeypatch):
    gpus = [SIMULATED["h100_sxm"].replace(uuid=f"GPU-0000000{i}-0000-0000-0000-000000000000",
                                          pci_bus_id=f"00000000:{0x18 + i:02X}:00.0") for i in range(2)]
    install_fake_cuda(monkeypatch, gpus, current=1)
    info = detect(root=tmp_path)
    assert info.uuid == gpus[1].uuid and info.pci_bus_id == "0000:19:00.0"


# --- --hardware --------------------------------------------------------------------------------------

@pytest.fixture
def cpu_only_host(tmp_path, monkeypatch):
    """A host with no CUDA device and no Jetson tree, whatever machine runs the test (a GB10 runner included)."""
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return fake_cpu_tree(tmp_path)


def test_an_override_of_another_kind_is_refused(cpu_only_host):
    """Before: `--hardware b10` on a CPU host relabelled the CPU as a GB10 and measured the CPU."""
    with pytest.raises(ValueError) as e:
        detect("b10", root=cpu_only_host)
    msg = str(e.value)
    assert "'b10'" in msg and "gb10" in msg and "detected as a cpu device" in msg and "kind cpu or custom" in msg


def test_the_cpu_entry_on_a_gpu_host_measures_the_host_cpu_and_a_sibling_gpu_is_allowed(tmp_path, monkeypatch):
    """`pytest -m cpu` on a GPU host: `--hardware cpu` selects the CPU that is really there, never a GPU
    measured under the CPU's key."""
    install_device(monkeypatch, "h100_sxm", tmp_path)
    cpu = detect("cpu", root=tmp_path)
    assert (cpu.hardware_key, cpu.kind, cpu.torch_device) == ("cpu", "cpu", "cpu") and "also present" in cpu.detected_by
    forced = detect("h100_pcie", root=tmp_path)
    assert forced.hardware_key == "h100_pcie" and "detected: h100_sxm" in forced.detected_by


def test_a_cpu_host_is_detected_and_unknown_overrides_name_the_known(cpu_only_host):
    info = detect(root=cpu_only_host)
    assert info.hardware_key == "cpu" and info.kind == "cpu" and info.torch_device == "cpu"
    assert info.versions["torch"] and info.cpu.model == "Fake CPU 9000" and info.unavailable is None
    assert detect("host", root=cpu_only_host).hardware_key == "cpu"
    with pytest.raises(ValueError, match="unknown hardware 'tpu'"):
        detect("tpu", root=cpu_only_host)


def test_torch_device_is_cpu_when_simulated_or_unavailable():
    info = DeviceInfo("cpu", "cpu", "x", "y", read_cpu_info("/nonexistent"))  # not this host: built, not detected
    assert info.torch_device == "cpu"
    gpu = dataclasses.replace(info, kind="cuda", hardware_key="gb10")
    assert gpu.torch_device == "cuda"
    assert dataclasses.replace(gpu, simulated="gb10").torch_device == "cpu"
    assert dataclasses.replace(gpu, unavailable="no CUDA").torch_device == "cpu"
    assert dataclasses.replace(gpu, simulated="gb10").to_dict()["simulated"] == "gb10"


def test_device_info_keeps_its_old_constructor():
    info = DeviceInfo("cpu", "cpu", "x", "y", read_cpu_info("/nonexistent"))
    assert (info.uuid, info.pci_bus_id, info.power_mode, info.sysfs_root, info.unavailable, info.simulated) == \
        (None, None, None, "/", None, None)


# --- the host CPU --------------------------------------------------------------------------------------

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




def test_a_bare_jetson_tree_without_cuda_is_detected_as_the_board(tmp_path, monkeypatch):
    root = fake_cpu_tree(tmp_path)
    write(root, "proc/device-tree/model", "NVIDIA Jetson AGX Orin Developer Kit\x00")
    install_fake_nvpmodel(tmp_path / "bin", "MODE_30W", 2)
    monkeypatch.setenv("PATH", path_with(tmp_path / "bin"))
    info = detect(root=root)
    assert info.hardware_key == "jetson_agx_orin" and info.kind == "jetson" and info.torch_device == "cpu"
    assert info.power_mode == {"mode": "MODE_30W", "id": 2}


def test_a_cpu_hosts_ram_is_its_devices_memory(cpu_only_host):
    """/proc/meminfo's MemTotal: what `predict model` plans a model against with a CPU profile (it had no capacity)."""
    assert detect(root=cpu_only_host).memory_bytes == 32768000 * 1024
    assert detect("cpu", root=cpu_only_host).memory_bytes == 32768000 * 1024
    (cpu_only_host / "proc/meminfo").unlink()
    assert detect(root=cpu_only_host).memory_bytes is None


def test_a_gpu_hosts_cpu_asked_by_hardware_cpu_has_the_hosts_ram_not_the_gpus(tmp_path, monkeypatch):
    install_device(monkeypatch, "h100_sxm", tmp_path)
    fake_cpu_tree(tmp_path)
    gpu, host = detect(root=tmp_path), detect("cpu", root=tmp_path)
    assert gpu.kind == "cuda" and host.kind == "cpu" and host.memory_bytes == 32768000 * 1024 != gpu.memory_bytes


def test_caches_count_every_instance_the_cpus_have(tmp_path):
    # cpu0's L3 alone was read: an EPYC's twelve 32 MiB L3s made a "cold" rotation of 2x 32 MiB that stayed hot
    from tests.fakes.host import write

    def cache(root, cpu, index, level, kind, size, shared):
        for name, value in (("level", level), ("type", kind), ("size", size), ("shared_cpu_list", shared)):
            write(root, f"sys/devices/system/cpu/cpu{cpu}/cache/{index}/{name}", f"{value}\n")
    root = fake_cpu_tree(tmp_path / "epyc")
    for cpu in range(4):
        cache(root, cpu, "index0", 1, "Data", "32K", cpu)
        cache(root, cpu, "index2", 2, "Unified", "1024K", cpu)
        cache(root, cpu, "index3", 3, "Unified", "16384K", "0-1" if cpu < 2 else "2-3")
    assert read_cpu_info(root).caches == {"L1d": 4 * 32 * 2**10, "L2": 4 * 2**20, "L3": 2 * 16 * 2**20}
    # a DynamIQ-style mix: cpu0 (a little core) has no L2 of its own and its index2 is the shared L3, the big
    # core's index2 is its 2 MiB L2 and its index3 that same L3: grouped by level, not by cpu0's index names
    import shutil
    root = fake_cpu_tree(tmp_path / "dynamiq")
    shutil.rmtree(root / "sys/devices/system/cpu/cpu0/cache")
    cache(root, 0, "index0", 1, "Data", "32K", 0)
    cache(root, 0, "index2", 3, "Unified", "3072K", "0-1")
    cache(root, 1, "index0", 1, "Data", "64K", 1)
    cache(root, 1, "index2", 2, "Unified", "2048K", 1)
    cache(root, 1, "index3", 3, "Unified", "3072K", "0-1")
    assert read_cpu_info(root).caches == {"L1d": 96 * 2**10, "L2": 2 * 2**20, "L3": 3 * 2**20}


def test_an_arm_host_reads_its_features_and_gets_arm_ceilings(tmp_path):
    """arm64's /proc/cpuinfo names its extensions "Features": read as no flags, a Neoverse was a scalar CPU
    (2 FLOP/cycle), and every compute-bound GEMM on it "beat" physics."""
    from tests.fakes.host import write
    root = fake_cpu_tree(tmp_path)
    write(root, "proc/cpuinfo", "".join(
        f"processor\t: {i}\nBogoMIPS\t: 2000.00\nFeatures\t: fp asimd evtstrm aes asimdhp asimddp sve bf16 i8mm\n"
        f"CPU implementer\t: 0x41\n\n" for i in range(4)))
    cpu = read_cpu_info(root)
    assert {"asimd", "bf16", "i8mm", "asimdhp"} <= cpu.flags
    from roofline.cpu_ceiling import flops_per_cycle
    per = flops_per_cycle(cpu.flags)
    assert per["fp32"][0] == 64 and per["bf16"][0] == 4 * 64 and per["int8"][0] == 8 * 64 and per["fp16"][0] == 128
    assert all(per[c][2] for c in ("fp32", "bf16", "fp16", "int8"))
    # without the matrix extensions: dot product and FP16 arithmetic alone, and a bare NEON core
    assert flops_per_cycle(frozenset({"asimd", "asimddp"}))["int8"][0] == 4 * 48
    assert flops_per_cycle(frozenset({"asimd"}))["bf16"][0] == 48  # converted: the FP32 rate
    # a ceiling must bound: A64FX's two 512-bit SVE pipes (64 FP32 FLOP/cycle), an SME outer-product unit
    assert flops_per_cycle(frozenset({"asimd", "sve"}))["fp32"][0] >= 64
    assert flops_per_cycle(frozenset({"asimd", "sve", "sme"}))["fp32"][0] >= 512


@pytest.mark.parametrize("name, sms, gib, key, slices, board_gb", [
    ("NVIDIA H100XM-1-10C", 16, 9.75, "h100_sxm", 1, 80),     # MIG-backed: MIG 1g.10gb of an H100 SXM5 80GB
    ("NVIDIA H100XM-3-40C", 60, 39.4, "h100_sxm", 4, 80),     # MIG 3g.40gb: 4 of 8 memory slices
    ("NVIDIA H100-1-10C", 14, 9.75, "h100_pcie", 1, 80),      # "H100" is the PCIe board, not the SXM
    ("NVIDIA H100L-3-47C", 60, 46.0, "h100_nvl", 4, 94),      # "H100L": the H100 NVL
    ("GRID A100X-2-10C", 28, 9.75, "a100", 2, 40),            # "A100X": the 40GB HGX board: 10 of 40 GB is 2 slices
    ("NVIDIA H200X-1-18C", 16, 17.5, "h200", 1, 141),
    ("NVIDIA H100-1-10CME", 14, 9.75, "h100_pcie", 1, 80),    # with the media engines (MIG 1g.10gb+me)
    ("GRID A100-1-5CME", 14, 4.75, "a100", 1, 40)])
def test_a_mig_backed_vgpu_is_held_to_its_slice(tmp_path, monkeypatch, name, sms, gib, key, slices, board_gb):
    """A guest VM names its vGPU by its type (the driver's name table, NVIDIA/open-gpu-kernel-modules
    g_nv_name_released.h: "NVIDIA H100XM-1-10C", "GRID A100X-1-5C"); a type with a slice count is MIG-backed ("Slices
    per vGPU", "Corresponding GPU Instance Profile": MIG 1g.10gb). Before: "H100XM-1-10C" was an H100 SXM held to the
    whole board's roofs (132 SMs, 3350 GB/s) with a "10 GiB variant" note, so a healthy slice read an eighth of its
    roof; "H100-1-10C" (a PCIe board) was taken for an SXM; "A100X-2-10C" was sized against 80 GB (1 slice, not 2)."""
    from roofline import get_hardware
    from roofline_kernels.device import history_dir
    from roofline_kernels.measure import hardware_for
    dev = SIMULATED[key].replace(cuda_name=name, sm_count=sms, memory_bytes=int(gib * 2**30))
    install_device(monkeypatch, key, tmp_path, device=dev)
    info = detect(root=tmp_path)
    profile = name.split("-", 1)[1].rsplit("C", 1)[0].split("-")
    assert info.hardware_key == key, info.detected_by
    # the guest's one NVML device, a GPU to it: "GPU-<uuid>", found by it (not by the other prefix, nor the bus id)
    assert info.uuid.startswith("GPU-")
    assert telemetry.snapshot(info.kind, busy_interval_s=0, info=info)["nvml"]["matched_by"] == f"UUID {info.uuid}"
    assert f"a MIG-backed vGPU ({name.split()[1]})" in info.detected_by
    hw, board = hardware_for(info), get_hardware(key)
    assert hw.bandwidth.value == pytest.approx(board.bandwidth.value * slices / 8)
    assert hw.peaks["bf16"].value == pytest.approx(board.peaks["bf16"].value * sms / board.sm_count)
    assert hw.memory.value == float(profile[1])
    assert history_dir(info).endswith(f"mig-{profile[0]}g.{profile[1]}gb-vgpu-{name.split()[1].lower()}")
    assert ("a variant the registry lacks" in info.detected_by) == (board_gb != board.memory.value)


def test_a_time_sliced_vgpu_is_its_whole_board_shared_in_time(tmp_path, monkeypatch):
    """"NVIDIA H100XM-20C": no slice count, so time-sliced (NVIDIA: "Each vGPU gets full access to all streaming
    multiprocessors (SMs) ... but only for a specific time slice"), 20 GB of the board's frame buffer. Before: its 20
    GiB read as "a variant the registry lacks" (bandwidth perhaps lower: wrong, it is the board's), and its runs,
    slowed by other VMs it cannot see, were gated against the bare board's history. Now the record says what it is,
    the roofs are the board's, and its history is its own."""
    from roofline import get_hardware
    from roofline_kernels.device import history_dir
    from roofline_kernels.measure import hardware_for
    dev = SIMULATED["h100_sxm"].replace(cuda_name="NVIDIA H100XM-20C", memory_bytes=20 * 2**30)
    install_device(monkeypatch, "h100_sxm", tmp_path, device=dev)
    info = detect(root=tmp_path)
    assert info.hardware_key == "h100_sxm" and "a time-sliced vGPU (H100XM-20C) of h100_sxm" in info.detected_by
    assert "variant" not in info.detected_by and "other VMs" in info.detected_by
    assert hardware_for(info).bandwidth.value == get_hardware("h100_sxm").bandwidth.value
    assert history_dir(info) == "h100_sxm-vgpu-h100xm-20c"


@pytest.mark.parametrize("name", ["NVIDIA A100-SXM4-40GB", "NVIDIA H100 80GB HBM3", "NVIDIA H100 NVL", "NVIDIA H200",
                                  "NVIDIA H100 80GB HBM3 MIG 1g.10gb", "NVIDIA GB10", "NVIDIA B200",
                                  "NVIDIA A100-PCIE-40GB", "NVIDIA A100-SXM4-80GB MIG 1g.10gb", "NVIDIA A100 80GB PCIe",
                                  "NVIDIA H100 PCIe", "NVIDIA H800", "NVIDIA H200 NVL",
                                  # not vGPU types of these boards: no such slice count, a graphics series
                                  "NVIDIA H100XM-9-10C", "NVIDIA H100XM-0-10C", "NVIDIA H100XM-20Q"])
def test_bare_metal_names_are_no_vgpu_type(name):
    from roofline.hardware import vgpu_type
    assert vgpu_type(name) is None


@pytest.mark.parametrize("override, folder", [("h100_pcie", "h100_pcie-on-h100_sxm"), ("h200", "h200-on-h100_sxm"),
                                              ("h100_sxm", "h100_sxm")])
def test_a_board_measured_under_another_entry_keeps_a_history_of_its_own(tmp_path, monkeypatch, override, folder):
    """``--hardware h100_pcie`` on an H100 SXM: before, its runs went to the real PCIe boards' folder and were gated
    against theirs (2000 against 3350 GB/s); under ``--hardware h200`` they read "h200-80gb", an H200 that is not.
    The folder now names the entry and the board measured; naming the detected entry itself changes nothing."""
    from roofline_kernels.device import history_dir
    install_device(monkeypatch, "h100_sxm", tmp_path)
    info = detect(override, root=tmp_path)
    assert info.hardware_key == override and history_dir(info) == folder
    assert info.detected_as == (None if override == "h100_sxm" else "h100_sxm")


def test_a_board_no_entry_names_is_said_by_its_cuda_name_under_an_override(tmp_path, monkeypatch):
    from roofline_kernels.device import history_dir
    l40s = SIMULATED["h100_pcie"].replace(cuda_name="NVIDIA L40S", sm_count=142, memory_bytes=48 * 2**30)
    install_device(monkeypatch, "h100_pcie", tmp_path, device=l40s)
    info = detect("h100_pcie", root=tmp_path)
    assert info.unavailable is None and history_dir(info) == "h100_pcie-on-nvidia-l40s"


@pytest.mark.parametrize("name, shared", [
    ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", True), ("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me", True),
    ("NVIDIA H100 80GB HBM3 MIG 1c.7g.80gb", True), ("NVIDIA H100 80GB HBM3 MIG 7c.7g.80gb", False),
    ("NVIDIA H100 80GB HBM3 MIG 7g.80gb", False), ("NVIDIA H100 80GB HBM3", False),
    ("NVIDIA H100XM-1-10C", True), ("NVIDIA H100XM-7-80C", False), ("NVIDIA H100XM-20C", True),
    ("NVIDIA H100XM-80C", False), ("GRID A100X-40C", False)])
def test_which_devices_share_their_board(name, shared):
    """The board's power limit is other tenants' too where the device is a part of it: a GPU instance under 7 slices,
    a compute instance under its GPU instance, a vGPU under its board's slices or frame buffer."""
    from roofline.hardware import shares_board
    assert shares_board(name) is shared
