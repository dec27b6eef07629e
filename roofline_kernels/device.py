"""Which machine is this, mapped to a roofline registry key, and what a report needs to know about it.

Order: an explicit override wins over the key (but must be of the detected kind: ``--hardware`` changes
the roofs, not the device measured); then the CUDA device torch uses (by name, SM count and memory);
a Jetson is recognised by its device tree, ``/etc/nv_tegra_release`` or an "Orin" CUDA device, and its
board named by roofline_kernels/identify.py from every fact there is (the device tree is masked in containers);
else the host CPU. Facts are read under a filesystem root, so fake trees test it without the hardware
(tests/fakes), and ``DeviceInfo.sysfs_root`` tells telemetry to read the same root.

A device detected but not measurable here (a Jetson whose torch has no CUDA, a GPU the registry lacks)
gets ``unavailable``: the reason, which the suite skips with.

The host CPU has no datasheet in the registry: ``host_cpu_hardware`` derives its compute peaks from
core count x max clock x SIMD FLOPs per cycle (marked derived and unverified) and leaves bandwidth to
calibration.
"""
from __future__ import annotations

import dataclasses
import math
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

from roofline import REGISTRY, Hardware, Spec, get_hardware
from roofline.clocks import mig_profile
from roofline.hardware import bare_metal_mig, vgpu_type
from roofline.cpu_ceiling import cpu_ceilings

from . import jetson as _jetson
from .cgroup import cpu_quota, own_cpus, usable_cpus
from .identify import JetsonFacts, check_override_kind, identify_cuda, identify_jetson, memory_variant


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
    caches: dict[str, int]  # "L1d", "L2", "L3" -> bytes, every instance this process may run on summed (sysfs)
    clock_source: str = "unknown"
    # a cgroup's CPU bandwidth limit on this process, in CPUs' worth of time (None: no limit); roofline_kernels/cgroup.py
    quota_cpus: float | None = None
    quota_source: str = ""
    quota_stat: str = ""  # the binding cgroup's cpu.stat (its throttle counters)
    # clock settings that move every roof while the hardware stays the same (None: not visible here): boost (cpufreq's
    # global ``boost``, or intel_pstate's ``no_turbo`` inverted) and a lowered ``scaling_max_freq`` (cpupower -u)
    boost: bool | None = None
    clock_cap_mhz: float | None = None

    @property
    def llc_bytes(self) -> int:
        return max(self.caches.values()) if self.caches else 32 * 2**20


SIMD_FLAG_PREFIXES = ("avx", "amx", "fma", "sse4", "asimd", "sve", "neon")


def _size_bytes(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([KMG]?)", text.strip().upper())
    if not m:
        return 0
    return int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)]


def _allowed_cpus(root: Path) -> list[Path]:
    """The sysfs directories of the CPUs this process may run on (its affinity; under a fake root, every one)."""
    cpus = sorted(Path(root, "sys/devices/system/cpu").glob("cpu[0-9]*"))
    mine = own_cpus(root)  # a container pinned to some CPUs: theirs alone
    return cpus if mine is None else [c for c in cpus if c.name in {f"cpu{i}" for i in mine}]


def _caches(root: Path) -> dict[str, int]:
    """Each data cache level's capacity over the CPUs this process may run on: every separate instance (distinct
    ``shared_cpu_list``) counted once at its own size, grouped by level and type, not by cpu0's index names (a
    DynamIQ part's cpu0 index2 is the shared L3 where a big core's is its private L2). An EPYC's 12 L3s of 32 MiB
    are 384 MiB a multithreaded kernel spreads over, where cpu0's one (32 MiB) left a "cold" rotation of 2x it hot.
    A CPU sysfs lists without a shared_cpu_list (a fake or old kernel) counts cpu0's caches once."""
    base = root / "sys/devices/system/cpu"
    seen: dict[tuple, dict[str, int]] = {}
    for cpu in _allowed_cpus(root):
        for index in sorted((cpu / "cache").glob("index*")):
            level, kind = _read(index / "level"), _read(index / "type")
            if kind == "Instruction" or not level:
                continue
            shared = _read(index / "shared_cpu_list") or f"{cpu.name}/{index.name}"
            if cpu.name != "cpu0" and not _read(index / "shared_cpu_list"):
                continue  # no sharing said: cpu0's own reading stands for the level
            seen.setdefault((level, kind), {})[shared] = _size_bytes(_read(index / "size"))
    return {f"L{level}{'d' if kind == 'Data' else ''}": sum(sizes.values())
            for (level, kind), sizes in sorted(seen.items())}


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
    caches = _caches(root)
    max_khz = _read(root / "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_khz.isdigit():
        max_mhz, clock_source = int(max_khz) / 1000, CPUFREQ_MAX
    elif "cpu MHz" in fields:  # VMs: often the base clock; boost can be well above it
        max_mhz, clock_source = float(fields["cpu MHz"]), "/proc/cpuinfo 'cpu MHz' (base or current, not boost)"
    else:
        max_mhz, clock_source = None, "unknown"
    quota = cpu_quota(root, usable_cpus(root, threads))  # only a quota below the CPUs this process may use binds
    boost, cap = _clock_settings(root)
    return CpuInfo(model=fields.get("model name", platform.processor() or "unknown CPU"), cores=cores,
                   threads=threads, max_mhz=max_mhz, caches=caches,
                   quota_cpus=quota.cpus if quota else None, quota_source=quota.source if quota else "",
                   quota_stat=quota.stat if quota else "", boost=boost, clock_cap_mhz=cap,
                   # x86 names its ISA extensions "flags", arm64 "Features" (asimd, asimdhp, bf16, i8mm, sve...): read
                   # as flags, so an Arm host is no longer a scalar CPU (2 FLOP/cycle) to the physics ceiling
                   flags=frozenset((fields.get("flags") or fields.get("Features", "")).split()),
                   clock_source=clock_source)


CPUFREQ_MAX = "cpufreq cpuinfo_max_freq"


def _clock_settings(root: Path) -> tuple[bool | None, float | None]:
    """(boost on?, the lowest ``scaling_max_freq`` in MHz of a CPU capped below its own ``cpuinfo_max_freq``). Each
    CPU against its own maximum: a hybrid part's E-cores and a part's favoured cores top out lower uncapped. Linux
    Documentation/admin-guide/pm/cpufreq.rst: ``cpufreq/boost`` (1 on, 0 off; acpi-cpufreq, amd-pstate);
    intel_pstate.rst: ``intel_pstate/no_turbo`` (1: turbo off). A VM shows neither: None, None."""
    base = root / "sys/devices/system/cpu"
    words = {"boost": _read(base / "cpufreq/boost"), "no_turbo": _read(base / "intel_pstate/no_turbo")}
    boost = (words["boost"] == "1") if words["boost"] in ("0", "1") else \
        (words["no_turbo"] == "0") if words["no_turbo"] in ("0", "1") else None
    caps = []
    for cpu in _allowed_cpus(root):
        cap, top = _read(cpu / "cpufreq/scaling_max_freq"), _read(cpu / "cpufreq/cpuinfo_max_freq")
        if cap.isdigit() and top.isdigit() and int(cap) < int(top):
            caps.append(int(cap) / 1000)
    return boost, (min(caps) if caps else None)


def host_limits(cpu: CpuInfo) -> dict:
    """The settings that slow this same CPU, for the profile's fingerprint and the timing history's folder (one list
    for both): a binding cgroup quota, boost switched off, a capped clock. Only those set appear, so a host without
    them keeps the key it had."""
    return {k: v for k, v in (("cpu_quota", cpu.quota_cpus), ("cpu_boost", False if cpu.boost is False else None),
                              ("cpu_clock_cap_mhz", cpu.clock_cap_mhz)) if v is not None}


def cpu_ceilings_of(cpu: CpuInfo, threads: int | None = None) -> dict:
    """``roofline.cpu_ceiling``'s per-class ceilings for this CPU (empty without a clock)."""
    if not cpu.max_mhz:
        return {}
    return cpu_ceilings(cpu.flags, threads or cpu.cores, cpu.max_mhz, cpu.clock_source == CPUFREQ_MAX,
                        cpu.clock_source)


def host_cpu_hardware(cpu: CpuInfo, threads: int | None = None) -> Hardware:
    """A registry-shaped entry for the host CPU with derived compute peaks (the classes its units run natively)
    and no datasheet bandwidth."""
    used = threads or cpu.cores
    ceilings = cpu_ceilings_of(cpu, threads)
    native = {"fp32"} | {c.compute_class for c in ceilings.values() if c.native}
    peaks = {c.compute_class: Spec(c.tflops, "derived from /proc/cpuinfo", c.how, derived=True, unverified=True)
             for c in ceilings.values() if c.native}
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
    driver: str | None = None  # NVML's driver version; on a Jetson the NVRM version, else the L4T release
    cuda: str | None = None
    versions: dict = field(default_factory=dict)
    uuid: str | None = None  # NVML spelling, "GPU-..." (telemetry finds the measured GPU by it)
    pci_bus_id: str | None = None  # "0000:41:00.0"
    power_mode: dict | None = None  # a Jetson's {"mode": NAME, "id": N} from `nvpmodel -q` at detection
    sysfs_root: str = "/"  # the root detection read; telemetry reads the same
    unavailable: str | None = None  # why measurement cannot run here (the suite skips with it)
    simulated: str | None = None  # the registry key a simulated run stands in for (tests/simulation.py)
    detected_as: str | None = None  # under --hardware naming another entry: the key detection found (or the CUDA name)

    @property
    def torch_device(self) -> str:
        return "cpu" if self.kind == "cpu" or self.simulated or self.unavailable else "cuda"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["cpu"]["flags"] = sorted(f for f in self.cpu.flags if f.startswith(SIMD_FLAG_PREFIXES))
        return d


def history_dir(info: DeviceInfo) -> str:
    """The folder a device's timing history (pytest-benchmark's saved runs) lives in beside other devices': its
    registry key, a Jetson's power mode, a CPU's model and torch's threads. One folder per board family let an H100 PCIe
    (2000 GB/s) be gated against an H100 SXM's last run (3350 GB/s), and a 15 W Orin against a MAXN one. Under
    ``--hardware`` naming another entry, the board measured is said too (``h100_pcie-on-h100_sxm``): an H100 SXM held
    to the PCIe entry's roofs shared the real PCIe boards' folder, and one held to the H200's read "h200-80gb"."""
    parts = [info.hardware_key] + ([f"on-{info.detected_as}"] if info.detected_as else [])
    if info.kind == "cuda":
        # a variant of the board measured (a board no entry names is named whole by its CUDA name already)
        variant = memory_variant(info.detected_as or info.hardware_key, info.name, info.memory_bytes) \
            if info.detected_as is None or info.detected_as in REGISTRY else None
        if variant:  # an A100 40GB is not gated against the 80GB's runs, nor its slices against theirs
            parts.append(f"{math.ceil(variant)}gb")  # a board shows a little under its nominal size
        if mig_profile(info.name):  # a MIG slice is gated against its own profile's runs
            parts.append(f"mig-{mig_profile(info.name)}")
        vgpu = vgpu_type(info.name)
        if vgpu is not None:  # through a hypervisor (a time-sliced one shares the board in time): a trend apart
            parts.append(f"vgpu-{vgpu.name}")
    if info.power_mode and info.power_mode.get("mode"):
        parts.append(str(info.power_mode["mode"]))
    if info.kind == "cpu":  # torch's threads, as the calibration's fingerprint: OMP_NUM_THREADS=1 is another trend
        import torch
        parts += [info.cpu.model or "unknown-cpu", f"{torch.get_num_threads()}t"]
        # a cgroup's CPU limit, boost off, a capped clock: another trend (a 1-CPU CI pod is not the 2-CPU one)
        limits = host_limits(info.cpu)
        parts += [f"{tag}{limits[k]:g}" if tag else word for k, tag, word in
                  (("cpu_quota", "q", ""), ("cpu_boost", "", "noboost"), ("cpu_clock_cap_mhz", "cap", ""))
                  if k in limits]
    return re.sub(r"[^a-z0-9._]+", "-", "-".join(parts).lower()).strip("-")


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
    cpu, versions, root = read_cpu_info(root), _versions(), Path(root)
    cuda = _detect_cuda()
    model = _read(root / "proc/device-tree/model")
    tegra = _jetson.l4t_release(root)
    if (cuda and "orin" in cuda["name"].lower()) or "orin" in model.lower() or (tegra and not cuda):
        info = _detect_jetson(cuda, model, tegra, root, cpu, versions)
    elif cuda is not None:
        info = _detect_gpu(cuda, cpu, versions)
    else:
        info = DeviceInfo(hardware_key="cpu", kind="cpu", name=cpu.model, cpu=cpu, versions=versions,
                          memory_bytes=_jetson.meminfo_total_bytes(root),
                          detected_by="no CUDA device, not a Jetson: the host CPU")
    info = dataclasses.replace(info, sysfs_root=str(root))
    if override and info.kind != "cpu" and get_hardware(override).kind == "cpu":
        # every GPU host has a CPU too: `--hardware cpu` measures it (the `cpu` cases), not the GPU
        return DeviceInfo(hardware_key=get_hardware(override).key, kind="cpu", name=cpu.model, cpu=cpu,
                          versions=versions, sysfs_root=str(root), memory_bytes=_jetson.meminfo_total_bytes(root),
                          detected_by=f"--hardware {override}: the host CPU (also present: {info.name})")
    if override:
        key = check_override_kind(override, info.kind, f"{info.hardware_key}: {info.name}; {info.detected_by}")
        # a device no entry named (a GPU or Jetson the registry lacks) is measurable against the entry the user names,
        # as its refusal says; a reason that is not about the registry (a Jetson's torch without CUDA) stands
        unnamed = info.kind != "cpu" and info.hardware_key == "cpu" and cuda is not None  # no entry: the only reason
        found = info.name if unnamed else info.hardware_key
        info = dataclasses.replace(info, hardware_key=key, detected_by=f"--hardware {override} (detected: "
                                   f"{info.hardware_key}, {info.detected_by})",
                                   unavailable=None if unnamed else info.unavailable,
                                   detected_as=found if found != key else None)
    return info


def _cuda_fields(cuda: dict) -> dict:
    return {k: cuda.get(k) for k in ("compute_capability", "sm_count", "l2_bytes", "memory_bytes", "cuda", "uuid",
                                     "pci_bus_id")}


def _detect_gpu(cuda: dict, cpu: CpuInfo, versions: dict) -> DeviceInfo:
    found = identify_cuda(cuda["name"], cuda["sm_count"], cuda["memory_bytes"])
    unavailable = None
    if found.key is None:
        unavailable = (f"CUDA device {cuda['name']!r} has no registry entry: pass --hardware KEY naming one that "
                       "describes it (e.g. from --hardware-file), or add it to roofline/hardware_data.py")
    return DeviceInfo(hardware_key=found.key or "cpu", kind="cuda", name=cuda["name"],
                      detected_by="; ".join(found.evidence), cpu=cpu, versions=versions, driver=_nvml_driver(),
                      unavailable=unavailable, **_cuda_fields(cuda))


def _detect_jetson(cuda: dict | None, model: str, tegra: str | None, root: Path, cpu: CpuInfo,
                   versions: dict) -> DeviceInfo:
    mode = _jetson.query_nvpmodel()
    freqs = _jetson.gpu_available_mhz(root)
    facts = JetsonFacts(model=model, sm_count=(cuda or {}).get("sm_count"),
                        memory_bytes=(cuda or {}).get("memory_bytes") or _jetson.meminfo_total_bytes(root),
                        power_mode=mode, nvpmodel_conf=_read(root / "etc/nvpmodel.conf"),
                        gpu_max_mhz=max(freqs) if freqs else (cuda or {}).get("clock_mhz"))
    found = identify_jetson(facts)
    seen = [f"device tree {model!r}" if model else "device tree masked",
            f"L4T {tegra}" if tegra else "no /etc/nv_tegra_release", f"CUDA {cuda['name']!r}" if cuda else "no CUDA"]
    detected_by = f"Jetson ({', '.join(seen)}): " + "; ".join(found.evidence)
    driver = _jetson.jetson_driver_version(root) or _nvml_driver() or (f"L4T {tegra}" if tegra else None)
    if found.key is None:
        return DeviceInfo(hardware_key="cpu", kind="jetson", name=model or "Jetson", detected_by=detected_by, cpu=cpu,
                          versions=versions, driver=driver, power_mode=mode,
                          unavailable=f"a Jetson the registry lacks ({model or 'unknown board'})" + (
                              "" if cuda else f"; and {_no_cuda(versions)}"),
                          **(_cuda_fields(cuda) if cuda else {}))
    name = get_hardware(found.key).name
    unavailable = None
    if cuda is None:
        unavailable = f"{name} detected ({', '.join(seen[:2])}) but {_no_cuda(versions)}"
    return DeviceInfo(hardware_key=found.key, kind="jetson", name=model or name, detected_by=detected_by, cpu=cpu,
                      versions=versions, driver=driver, power_mode=mode, unavailable=unavailable,
                      **(_cuda_fields(cuda) if cuda else {}))


def _no_cuda(versions: dict) -> str:
    """Why a Jetson's torch cannot measure its GPU, and the way out."""
    return f"torch {_torch_version(versions)} has no CUDA: install NVIDIA's JetPack torch wheel"


def _torch_version(versions: dict) -> str:
    try:
        import torch
        return torch.__version__
    except ImportError:
        return versions.get("torch") or "(not installed)"


def _uuid(props) -> str | None:
    """NVML's spelling of the UUID torch prints bare: a MIG slice's is its instance's (CUDA Driver API,
    cuDeviceGetUuid: "If the device is in MIG mode, returns its MIG UUID which uniquely identifies the subscribed MIG
    compute instance"), "MIG-..." to NVML; a GPU's is "GPU-..."."""
    raw = getattr(props, "uuid", None)
    text = str(raw).strip() if raw is not None else ""
    if not text or re.match(r"(?i)^(GPU|MIG)-", text):
        return text or None
    return f"{'MIG' if bare_metal_mig(getattr(props, 'name', None)) else 'GPU'}-{text}"


def _pci_bus_id(props) -> str | None:
    """"0000:41:00.0" from the ints pci_domain_id / pci_bus_id / pci_device_id of recent torch (2.13's own
    torch/numa/binding.py formats them so; its type stub lacks them); None where a build lacks them."""
    parts = [getattr(props, a, None) for a in ("pci_domain_id", "pci_bus_id", "pci_device_id")]
    if any(not isinstance(p, int) for p in parts):
        return None
    return f"{parts[0]:04x}:{parts[1]:02x}:{parts[2]:02x}.0"


def _detect_cuda() -> dict | None:
    """The CUDA device torch uses (its current device) as torch sees it, or None (no torch, CPU build, none)."""
    try:
        import torch
        if not torch.cuda.is_available():
            return None
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        clock_khz = getattr(props, "clock_rate", None)
        return {"name": props.name, "compute_capability": f"{props.major}.{props.minor}",
                "sm_count": props.multi_processor_count, "l2_bytes": getattr(props, "L2_cache_size", None) or None,
                "memory_bytes": props.total_memory, "cuda": torch.version.cuda, "uuid": _uuid(props),
                "pci_bus_id": _pci_bus_id(props), "clock_mhz": clock_khz / 1000 if clock_khz else None}
    except Exception:
        return None


def _nvml_driver() -> str | None:
    try:
        from .nvml import as_str, session
        with session() as pynvml:
            return as_str(pynvml.nvmlSystemGetDriverVersion())
    except Exception:
        return None
