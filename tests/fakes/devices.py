"""One simulated device per registry entry of kind gpu or jetson: what torch, NVML and a Jetson's files say.

Numbers come from the registry (``roofline.REGISTRY``) wherever it has them: SM count, memory, L2,
clocks, compute capability (from ``arch``: sm_121 -> (12, 1)), a Jetson's power modes. What the
registry does not hold is stated below with where it was seen. Identifiers (UUID, PCI bus id) are
made up, stable and distinct per device.
"""
from __future__ import annotations

import dataclasses
import uuid as _uuid
from dataclasses import dataclass

from roofline import REGISTRY
from roofline.hardware import capability_of as roofline_capability_of
from roofline.clocks import DEFAULT_POWER_MODE, POWER_MODES

# torch.cuda.get_device_name on each device, as public lists of CUDA device names spell them
# ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200" side by side).
CUDA_NAMES = {
    "gb10": "NVIDIA GB10", "h100_sxm": "NVIDIA H100 80GB HBM3", "h100_pcie": "NVIDIA H100 PCIe",
    "h100_nvl": "NVIDIA H100 NVL", "h200": "NVIDIA H200", "a100": "NVIDIA A100-SXM4-80GB", "b200": "NVIDIA B200",
    "rtx4090": "NVIDIA GeForce RTX 4090", "rtx5090": "NVIDIA GeForce RTX 5090",
}
JETSON_CUDA_NAME = "Orin"  # every Orin module's integrated GPU (deviceQuery: Device 0: "Orin")

# /proc/device-tree/model per board. The NX modules share the Nano's carrier ("Engineering Reference
# Developer Kit"); a Super device tree appends " Super". The model never says 8GB or 16GB.
DEVICE_TREE_MODELS = {
    "jetson_orin_nano": "NVIDIA Jetson Orin Nano Developer Kit",
    "jetson_orin_nano_super": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
    "jetson_agx_orin": "NVIDIA Jetson AGX Orin Developer Kit",
    "jetson_orin_nx_16gb": "NVIDIA Jetson Orin NX Engineering Reference Developer Kit",
    "jetson_orin_nx_8gb": "NVIDIA Jetson Orin NX Engineering Reference Developer Kit",
    "jetson_orin_nx_16gb_super": "NVIDIA Jetson Orin NX Engineering Reference Developer Kit Super",
    "jetson_orin_nx_8gb_super": "NVIDIA Jetson Orin NX Engineering Reference Developer Kit Super",
}
# JetPack 6.2 (L4T 36.4.3), the release that brought the Super configs; widely quoted verbatim
TEGRA_RELEASE = ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
                 "DATE: Wed Jan  8 01:49:37 UTC 2025")
JETSON_DRIVER = "540.4.0"  # /proc/driver/nvidia/version "NVRM version: 540.4.0" on JetPack 6
JETSON_VISIBLE_MEMORY = 14486 / 16384  # an Orin NX 16GB shows 14486 MiB to CUDA (deviceQuery)
JETSON_L2_BYTES = 2 * 2**20  # deviceQuery on an Orin NX: L2 Cache Size 2097152 bytes (the registry has none)
CUDA_RUNTIME = "13.0"  # torch.version.cuda of the simulated build: stated, not detected

# Fixture values for NVML readings, not specs and not measurements: what a busy, healthy GPU might read.
FAKE_POWER_W, FAKE_TEMPERATURE_C, FAKE_UTILIZATION_PCT = 250.0, 60, 97


@dataclass(frozen=True)
class FakeDevice:
    key: str
    kind: str  # registry kind: "gpu" or "jetson"
    cuda_name: str
    capability: tuple[int, int]
    sm_count: int
    memory_bytes: int
    l2_bytes: int | None
    uuid: str  # NVML spelling "GPU-..."; torch reports it bare
    pci_bus_id: str  # NVML spelling "00000000:41:00.0"
    gpu_clock_mhz: float | None  # the maximum SM clock, where the registry has one
    device_tree_model: str | None = None
    tegra_release: str | None = None
    nvpmodel_mode: tuple[str, int] | None = None  # the board's default mode (name, id)
    power_w: float = FAKE_POWER_W
    temperature_c: int = FAKE_TEMPERATURE_C
    utilization_pct: int = FAKE_UTILIZATION_PCT

    @property
    def is_jetson(self) -> bool:
        return self.kind == "jetson"

    def replace(self, **kw) -> "FakeDevice":
        return dataclasses.replace(self, **kw)


def capability_of(arch: str) -> tuple[int, int]:
    """"sm_121" -> (12, 1), "sm_87" -> (8, 7), "sm_100" -> (10, 0): the product's reading of a registry arch
    (``roofline.hardware.capability_of``), which a fake device needs one of."""
    cap = roofline_capability_of(arch)
    if cap is None:
        raise ValueError(f"arch {arch!r} is not sm_<major><minor>; expected e.g. sm_90, sm_121")
    return cap


def fake_device(key: str, index: int = 0) -> FakeDevice:
    hw = REGISTRY[key]
    if hw.kind not in ("gpu", "jetson"):
        raise ValueError(f"{key} is a {hw.kind} entry; fake devices exist for kinds gpu and jetson")
    jetson = hw.kind == "jetson"
    memory = int(hw.memory.value * 2**30 * (JETSON_VISIBLE_MEMORY if jetson else 1))
    l2 = int(hw.l2_mb * 2**20) if hw.l2_mb else (JETSON_L2_BYTES if jetson else None)
    mode = DEFAULT_POWER_MODE.get(key)
    return FakeDevice(
        key=key, kind=hw.kind, cuda_name=JETSON_CUDA_NAME if jetson else CUDA_NAMES[key],
        capability=capability_of(hw.arch), sm_count=hw.sm_count, memory_bytes=memory, l2_bytes=l2,
        uuid=f"GPU-{_uuid.uuid5(_uuid.NAMESPACE_URL, f'roofline-fake/{key}/{index}')}",
        # an Orin's GPU sits at 00000000:00:00 (nvbandwidth on an AGX Orin: "Orin (00000000:00:00)")
        pci_bus_id="00000000:00:00.0" if jetson else f"00000000:{0x18 + 0x10 * index:02X}:00.0",
        gpu_clock_mhz=hw.gpu_clock.value if hw.gpu_clock else None,
        device_tree_model=DEVICE_TREE_MODELS.get(key), tegra_release=TEGRA_RELEASE if jetson else None,
        nvpmodel_mode=(mode, POWER_MODES[key][mode][0]) if mode else None)


def multi_gpu(key: str, count: int) -> list[FakeDevice]:
    """``count`` GPUs of one kind with distinct UUIDs and PCI bus ids (a multi-GPU node)."""
    return [fake_device(key, i) for i in range(count)]


SIMULATED: dict[str, FakeDevice] = {k: fake_device(k) for k, hw in REGISTRY.items() if hw.kind in ("gpu", "jetson")}
