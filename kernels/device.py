"""Which machine is this, mapped to a roofline registry key, and what a report needs to know about it.

Order: an explicit override always wins; then a CUDA device (by name); then a Jetson board
(``/etc/nv_tegra_release`` or ``/proc/device-tree/model``); else the host CPU. The parsing is done
by pure functions over strings and a filesystem root, so fake trees test it without the hardware.

The host CPU has no datasheet in the registry: ``host_cpu_hardware`` derives its compute peaks from
core count x max clock x SIMD FLOPs per cycle (marked derived and unverified) and leaves bandwidth to
calibration.
"""
from __future__ import annotations

import dataclasses
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from roofline import Hardware, Spec, get_hardware

# (pattern in the CUDA device name, registry key): first match wins, so specific names come first.
CUDA_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"GB10", "gb10"),
    (r"H200", "h200"),
    (r"H100.*PCIe", "h100_pcie"),
    (r"H100", "h100_sxm"),
    (r"A100", "a100"),
    (r"B200", "b200"),
    (r"RTX 4090", "rtx4090"),
    (r"RTX 5090", "rtx5090"),
    (r"Orin", "jetson_orin_nano"),  # integrated GPU of a Jetson; refined by the board model
)


def hardware_key_from_cuda_name(name: str) -> str | None:
    for pattern, key in CUDA_NAME_RULES:
        if re.search(pattern, name, re.IGNORECASE):
            return key
    return None


def hardware_key_from_jetson(model: str, nvpmodel_conf: str = "") -> str | None:
    """``/proc/device-tree/model`` text (and ``/etc/nvpmodel.conf`` for the Super clocks) -> key."""
    m = model.lower()
    if "orin" not in m:
        return None
    if "agx" in m:
        return "jetson_agx_orin"
    if "nano" in m or "nx" in m:
        return "jetson_orin_nano_super" if ("super" in m or "MAXN_SUPER" in nvpmodel_conf) else "jetson_orin_nano"
    return "jetson_agx_orin"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").replace("\x00", "").strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class CpuInfo:
    model: str
    cores: int
    threads: int
    max_mhz: float | None
    flags: frozenset[str]
    caches: dict[str, int]  # "L1d", "L2", "L3" -> bytes (per instance, from sysfs)
    clock_source: str = "unknown"

    @property
    def llc_bytes(self) -> int:
        return max(self.caches.values()) if self.caches else 32 * 2**20


SIMD_FLAG_PREFIXES = ("avx", "amx", "fma", "sse4", "asimd", "sve", "neon")


def _size_bytes(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([KMG]?)", text.strip().upper())
    if not m:
        return 0
    return int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)]


def read_cpu_info(root: str | os.PathLike = "/") -> CpuInfo:
    root = Path(root)
    cpuinfo = _read(root / "proc/cpuinfo")
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields.setdefault(k.strip(), v.strip())
    threads = len(re.findall(r"^processor\s*:", cpuinfo, re.M)) or os.cpu_count() or 1
    cores = int(fields.get("cpu cores", 0)) * max(1, len(set(re.findall(r"^physical id\s*:\s*(\d+)", cpuinfo, re.M)))) \
        or threads
    caches: dict[str, int] = {}
    for index in sorted((root / "sys/devices/system/cpu/cpu0/cache").glob("index*")):
        level, kind = _read(index / "level"), _read(index / "type")
        if kind == "Instruction" or not level:
            continue
        caches[f"L{level}{'d' if kind == 'Data' else ''}"] = _size_bytes(_read(index / "size"))
    max_khz = _read(root / "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_khz.isdigit():
        max_mhz, clock_source = int(max_khz) / 1000, "cpufreq cpuinfo_max_freq"
    elif "cpu MHz" in fields:  # VMs: often the base clock; boost can be well above it
        max_mhz, clock_source = float(fields["cpu MHz"]), "/proc/cpuinfo 'cpu MHz' (base or current, not boost)"
    else:
        max_mhz, clock_source = None, "unknown"
    return CpuInfo(model=fields.get("model name", platform.processor() or "unknown CPU"), cores=cores,
                   threads=threads, max_mhz=max_mhz, flags=frozenset(fields.get("flags", "").split()), caches=caches,
                   clock_source=clock_source)


def fp32_flops_per_cycle(flags: frozenset[str]) -> int:
    """Per core, assuming two FMA pipes of the widest vector the CPU advertises."""
    if "avx512f" in flags:
        return 2 * 2 * 16
    if "avx2" in flags and "fma" in flags:
        return 2 * 2 * 8
    if "asimd" in flags or "sse2" in flags:
        return 2 * 2 * 4
    return 2


def host_cpu_hardware(cpu: CpuInfo, threads: int | None = None) -> Hardware:
    """A registry-shaped entry for the host CPU with derived compute peaks and no datasheet bandwidth."""
    used = threads or cpu.cores
    native = {"fp32"}
    peaks: dict[str, Spec] = {}
    if cpu.max_mhz:
        fp32 = used * cpu.max_mhz * 1e6 * fp32_flops_per_cycle(cpu.flags) / 1e12
        how = (f"{used} cores x {cpu.max_mhz:g} MHz ({cpu.clock_source}) x {fp32_flops_per_cycle(cpu.flags)} "
               "FLOP/cycle: a guess; calibrate for the real ceiling")
        peaks["fp32"] = Spec(fp32, "derived from /proc/cpuinfo", how, derived=True, unverified=True)
        if {"avx512_bf16", "amx_bf16"} & cpu.flags:
            native.add("bf16")
            peaks["bf16"] = Spec(2 * fp32, "derived from /proc/cpuinfo", "2x fp32 (VDPBF16PS pairs)", True, True)
        if {"avx512_vnni", "avx_vnni", "amx_int8"} & cpu.flags:
            native.add("int8")
            peaks["int8"] = Spec(4 * fp32, "derived from /proc/cpuinfo", "4x fp32 (VPDPBUSD quads)", True, True)
        if {"avx512_fp16", "amx_fp16"} & cpu.flags:
            native.add("fp16")
            peaks["fp16"] = Spec(2 * fp32, "derived from /proc/cpuinfo", "2x fp32 (AVX512-FP16)", True, True)
    base = get_hardware("cpu")
    return dataclasses.replace(base, name=f"host CPU: {cpu.model} ({used} threads)", peaks=peaks,
                               native=frozenset(native), l2_mb=cpu.caches.get("L2", 0) / 2**20 or None,
                               source="derived from /proc/cpuinfo and sysfs; bandwidth: calibrate")


@dataclass(frozen=True)
class DeviceInfo:
    hardware_key: str
    kind: str  # "cuda", "jetson", "cpu"
    name: str
    detected_by: str
    cpu: CpuInfo
    compute_capability: str | None = None
    sm_count: int | None = None
    l2_bytes: int | None = None
    memory_bytes: int | None = None
    driver: str | None = None
    cuda: str | None = None
    versions: dict = field(default_factory=dict)

    @property
    def torch_device(self) -> str:
        return "cpu" if self.kind == "cpu" else "cuda"

    @property
    def flush_bytes(self) -> int:
        """A cache-flush buffer comfortably larger than the last-level cache (do_bench uses 256 MB).

        Measured here (AMD EPYC VM, 32 MB L3): a cold int8 GEMV with 16 MB of weights still ran at
        53.6 GB/s after a 64 MB flush, 51.2 after 128 MB and 44.9 after 256 MB; smaller flushes
        leave part of the working set cached and make "cold" numbers beat the DRAM roof.
        """
        llc = self.l2_bytes if self.kind != "cpu" and self.l2_bytes else self.cpu.llc_bytes
        return max(4 * llc, 256 * 2**20)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["cpu"]["flags"] = sorted(f for f in self.cpu.flags if f.startswith(SIMD_FLAG_PREFIXES))
        d["flush_bytes"] = self.flush_bytes
        return d


def _versions() -> dict:
    from importlib import metadata
    out = {"python": platform.python_version()}
    for dist in ("torch", "torchao", "numpy", "nvidia-ml-py"):
        try:  # metadata, not import: importing torchao just to read its version is slow and noisy
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def detect(override: str | None = None, root: str | os.PathLike = "/") -> DeviceInfo:
    cpu = read_cpu_info(root)
    versions = _versions()
    root = Path(root)
    cuda = _detect_cuda()
    if cuda is not None:
        key = hardware_key_from_cuda_name(cuda["name"]) or "cpu"
        if key.startswith("jetson"):
            key = hardware_key_from_jetson(_read(root / "proc/device-tree/model"),
                                           _read(root / "etc/nvpmodel.conf")) or key
        info = DeviceInfo(hardware_key=key, kind="jetson" if key.startswith("jetson") else "cuda",
                          detected_by=f"CUDA device name {cuda.pop('name')!r}", cpu=cpu, versions=versions,
                          name=cuda.pop("display_name"), **cuda)
    else:
        model = _read(root / "proc/device-tree/model")
        jetson = hardware_key_from_jetson(model, _read(root / "etc/nvpmodel.conf")) if (
            model or (root / "etc/nv_tegra_release").exists()) else None
        if jetson:
            info = DeviceInfo(hardware_key=jetson, kind="jetson", name=model, cpu=cpu, versions=versions,
                              detected_by="/proc/device-tree/model (no CUDA device visible to torch)")
        else:
            info = DeviceInfo(hardware_key="cpu", kind="cpu", name=cpu.model, cpu=cpu, versions=versions,
                              detected_by="no CUDA device, not a Jetson: the host CPU")
    if override:
        key = get_hardware(override).key
        info = dataclasses.replace(info, hardware_key=key, detected_by=f"--hardware {override} (detected: "
                                   f"{info.hardware_key}, {info.detected_by})")
    return info


def _detect_cuda() -> dict | None:
    """CUDA device 0 as torch sees it, or None (no torch, CPU build, no device)."""
    try:
        import torch
        if not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(0)
        return {"name": props.name, "display_name": props.name,
                "compute_capability": f"{props.major}.{props.minor}", "sm_count": props.multi_processor_count,
                "l2_bytes": getattr(props, "L2_cache_size", None), "memory_bytes": props.total_memory,
                "cuda": torch.version.cuda, "driver": _nvml_driver()}
    except Exception:
        return None


def _nvml_driver() -> str | None:
    try:
        import pynvml
        pynvml.nvmlInit()
        return pynvml.nvmlSystemGetDriverVersion()
    except Exception:
        return None
