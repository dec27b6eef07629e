"""Hardware entries: datasheet peaks with provenance, plus optional measured (calibrated) peaks.

1. A ``Hardware`` holds dense datasheet peaks per compute class (``fp16``, ``fp8``...), bandwidth,
   capacity and the formats its tensor cores run natively. Each number is a ``Spec`` carrying its
   source and whether it is derived or unverified.
2. A ``Calibration`` (measured peaks from ``roofline calibrate``) sits *beside* the datasheet numbers;
   it never replaces them. Predictions choose ``peaks="datasheet"`` or ``"calibrated"`` and say which.
3. Custom hardware (an ASIC, a board at reduced clocks) comes from a dict or JSON file with the same
   fields; plain numbers are recorded as user-defined.
4. SM count and L2 size stay plain numbers on the entry (device identification compares them), and their
   provenance is kept beside them: ``hw.spec("sm_count")`` returns the Spec with its flags, like every
   other number (``hw.spec("bandwidth_gbs")``, ``hw.spec("fp16")``).
5. A unified-memory device (GB10, Jetson) shares its memory with the OS and the carveouts: its
   ``usable_memory_gb`` is what a model can plan on (what CUDA sees, less what the stock OS holds at idle),
   and ``model_memory`` returns it where there is one, else ``memory_gb``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field

from .formats import get_format
from .hardware_data import HARDWARE_DATA

PEAK_SOURCES = ("datasheet", "calibrated")
_SPEC_FIELDS = {"bandwidth_gbs": "bandwidth", "memory_gb": "memory", "usable_memory_gb": "usable_memory",
                "gpu_clock_mhz": "gpu_clock", "mem_clock_mhz": "mem_clock"}
COUNT_FIELDS = ("sm_count", "l2_mb")


# A MIG slice in a CUDA device name: "NVIDIA H100 80GB HBM3 MIG 1g.10gb", a compute instance "... MIG 1c.3g.40gb"
MIG_PROFILE = re.compile(r"\bMIG\s+(?:(?P<ci>\d+)c\.)?(?P<gi>\d+)g\.(?P<gb>\d+)gb", re.IGNORECASE)
MIG_GPU_SLICES = 7  # GPU-instance slices of a whole A100, H100, H200 or B200 (7g): the most a MIG profile names

# A vGPU in a guest VM is named by its vGPU type (the driver's name table, NVIDIA/open-gpu-kernel-modules
# src/nvidia/generated/g_nv_name_released.h: "GRID A100X-1-5C", "NVIDIA H100XM-1-10C", "NVIDIA H100XM-20C"): the board's
# code, the GPU instance's slices where the vGPU is MIG-backed, its frame buffer in GB and its series letter (C compute;
# Q, B and A are graphics series, which these boards do not offer). NVIDIA AI Enterprise, "Virtual GPU Types for
# Supported GPUs": a MIG-backed type's row names its "Corresponding GPU Instance Profile" ("H100XM-1-10C | 10 | 7 | 1 |
# 1 | MIG 1g.10gb"); a time-sliced type has no slices, and "Each vGPU gets full access to all streaming multiprocessors
# (SMs) and engines, but only for a specific time slice". Board code -> (registry key, the board's GB), from those
# tables' headings; a board the registry lacks stands in by its nearest entry, and its GB says it is a variant.
VGPU_BOARDS = {
    "H100XM": ("h100_sxm", 80.0),  # H100 SXM5 80GB
    "H100XL": ("h100_sxm", 94.0),  # H100 SXM5 94GB: a variant the registry lacks
    "H100XS": ("h100_sxm", 64.0),  # H100 SXM5 64GB: a variant the registry lacks
    "H100L": ("h100_nvl", 94.0),  # H100 PCIe 94GB (H100 NVL)
    "H100": ("h100_pcie", 80.0),  # H100 PCIe 80GB
    "H200X": ("h200", 141.0),  # H200 SXM5 141GB
    "H200": ("h200", 141.0),  # H200 NVL: held to the SXM's entry, as its own CUDA name "NVIDIA H200 NVL" is
    "A100DX": ("a100", 80.0),  # A100 HGX 80GB
    "A100D": ("a100", 80.0),  # A100 PCIe 80GB
    "A100X": ("a100", 40.0),  # A100 HGX 40GB: a variant (the registry's A100 is the 80GB SXM)
    "A100": ("a100", 40.0),  # A100 PCIe 40GB: a variant
    "B200X": ("b200", 180.0),  # B200 (the driver's table: "NVIDIA B200X-1-23C" on device 0x2901, "NVIDIA B200")
}
VGPU_TYPE = re.compile(r"\b(?:GRID|NVIDIA)\s+(" + "|".join(sorted(VGPU_BOARDS, key=len, reverse=True))
                       + r")-(?:([1-47])-)?(\d+)C(?:ME)?\b", re.IGNORECASE)  # C: these boards' vGPUs are compute
# types; ME: a MIG-backed type with the media engines (MIG 1g.10gb+me); slices: the GPU-instance sizes 1, 2, 3, 4, 7


@dataclass(frozen=True)
class VgpuType:
    """A vGPU type a guest's device name carries (``VGPU_TYPE``)."""
    name: str  # "H100XM-1-10C"
    board: str  # the registry key that stands for its board
    board_gb: float  # the board's memory (the frame buffer it is cut from)
    slices: int | None  # GPU-instance slices of a MIG-backed type; None: time-sliced
    framebuffer_gb: int

    @property
    def time_sliced(self) -> bool:
        return self.slices is None


def vgpu_type(name: str | None) -> VgpuType | None:
    """The vGPU type in a CUDA device name ("NVIDIA H100XM-1-10C"); None for a GPU or a MIG slice on bare metal."""
    m = VGPU_TYPE.search(name or "")
    if not m:
        return None
    code = next(c for c in VGPU_BOARDS if c.upper() == m.group(1).upper())
    key, board_gb = VGPU_BOARDS[code]
    return VgpuType(m.group(0).split(None, 1)[1].upper(), key, board_gb, int(m.group(2)) if m.group(2) else None,
                    int(m.group(3)))


def mig_parts(name: str | None) -> tuple[int, int] | None:
    """(GPU-instance slices, GB) of the MIG slice a name carries: "MIG 1g.10gb" on bare metal, or a MIG-backed vGPU
    ("H100XM-1-10C": MIG 1g.10gb); None for a whole GPU or a time-sliced vGPU."""
    m = MIG_PROFILE.search(name or "")
    if m:
        return int(m["gi"]), int(m["gb"])
    v = vgpu_type(name)
    return (v.slices, v.framebuffer_gb) if v and v.slices else None


def bare_metal_mig(name: str | None) -> bool:
    """Whether a CUDA name is a MIG instance on bare metal, NVML's own MIG device ("... MIG 1g.10gb"); a guest's
    MIG-backed vGPU is its VM's one GPU to NVML there."""
    return mig_profile(name) is not None and vgpu_type(name) is None


def shares_board(name: str | None) -> bool:
    """Whether a device named so shares its board with tenants it cannot see, and with them the board's power limit:
    a MIG GPU instance of under 7 slices, a compute instance smaller than its GPU instance ("MIG 1c.3g.40gb"), a vGPU
    of fewer slices, or of less frame buffer, than its board."""
    m = MIG_PROFILE.search(name or "")
    if m:
        return int(m["gi"]) < MIG_GPU_SLICES or (m["ci"] is not None and int(m["ci"]) < int(m["gi"]))
    v = vgpu_type(name)
    if v is None:
        return False
    return v.slices < MIG_GPU_SLICES if v.slices else v.framebuffer_gb < v.board_gb


def mig_profile(name: str | None) -> str | None:
    """The MIG GPU-instance profile (``1g.10gb``) a CUDA device name (or a sliced entry's key) carries; None for a
    whole GPU."""
    parts = mig_parts(name)
    return f"{parts[0]}g.{parts[1]}gb" if parts else None


BYTES_PER_GB = 1e9  # GB is 1e9 bytes, as every byte figure in this package (predict, memory and plan use this one)


def capability_of(arch: str | None) -> tuple[int, int] | None:
    """``sm_121`` -> (12, 1), ``sm_90`` -> (9, 0): a registry arch as a CUDA compute capability (None: not an sm_)."""
    m = re.fullmatch(r"sm_(\d+)(\d)", arch or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def sm_name(capability) -> str:
    """A CUDA compute capability as the rules say it (``sm_90``); None is no CUDA device (``a CPU``)."""
    return "a CPU" if capability is None else f"sm_{capability[0]}{capability[1]}"


@dataclass(frozen=True)
class Spec:
    value: float
    source: str
    note: str = ""
    derived: bool = False
    unverified: bool = False

    @property
    def flags(self) -> str:
        return ",".join(f for f, on in (("derived", self.derived), ("unverified", self.unverified)) if on)


@dataclass(frozen=True)
class Calibration:
    """Measured ceilings for one device (written by roofline_kernels.calibrate, loaded from JSON)."""
    hardware: str
    peaks_tflops: dict[str, float]
    bandwidth_gbs: float
    cache_bandwidth_gbs: dict[str, float] = field(default_factory=dict)
    device: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    timestamp: str = ""
    path: str = ""
    details: dict = field(default_factory=dict)  # raw sweeps, skipped precisions, settings

    @classmethod
    def from_dict(cls, d: dict, path: str = "") -> "Calibration":
        where = f"calibration profile {path or '<dict>'}"
        if not isinstance(d, dict):
            raise ValueError(f"{where} is a JSON {type(d).__name__}, not an object")
        try:
            peaks = {str(k): float(v) for k, v in d["peaks_tflops"].items()}
            bw = float(d["bandwidth_gbs"])
            hw = str(d["hardware"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{where} is malformed ({e!r}); it needs "
                             "'hardware', 'bandwidth_gbs' and 'peaks_tflops' {class: TFLOP/s}") from None
        for name in ("cache_bandwidth_gbs", "device", "versions", "details"):
            if not isinstance(d.get(name, {}), dict):
                raise ValueError(f"{where}: {name!r} must be an object, got {type(d[name]).__name__} {d[name]!r:.60}")
        try:
            caches = {str(k): float(v) for k, v in d.get("cache_bandwidth_gbs", {}).items()}
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: 'cache_bandwidth_gbs' must map levels to GB/s ({e})") from None
        efficiency = d.get("details", {}).get("efficiency")
        if efficiency is not None and not (isinstance(efficiency, dict)
                                           and isinstance(efficiency.get("meta", {}), dict)):
            raise ValueError(f"{where}: details.efficiency must be an object (the efficiency model), got "
                             f"{type(efficiency).__name__} {efficiency!r:.60}")
        for name, v in [("bandwidth_gbs", bw), *peaks.items()]:
            if not (v > 0 and v < float("inf")):
                raise ValueError(f"calibration profile {path or '<dict>'}: {name}={v} must be a positive number")
        return cls(hardware=hw, peaks_tflops=peaks, bandwidth_gbs=bw, cache_bandwidth_gbs=caches,
                   device=dict(d.get("device", {})), versions=dict(d.get("versions", {})),
                   timestamp=str(d.get("timestamp", "")), path=path, details=dict(d.get("details", {})))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("path")
        return d


def load_calibration(path: str | os.PathLike) -> Calibration:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read calibration profile {os.fspath(path)!r}: {e}") from None
    return Calibration.from_dict(data, path=os.fspath(path))


CPU_CALIBRATED_FORMATS = ("bf16", "fp16", "int8")  # a CPU's formats its profile's measured peaks make a math path of


@dataclass(frozen=True)
class Hardware:
    key: str
    name: str
    arch: str
    kind: str  # "gpu", "jetson", "cpu", "custom"
    source: str
    bandwidth: Spec | None
    memory: Spec | None
    peaks: dict[str, Spec]
    native: frozenset[str]
    l2_mb: float | None = None
    sm_count: int | None = None
    gpu_clock: Spec | None = None
    mem_clock: Spec | None = None
    aliases: tuple[str, ...] = ()
    calibration: Calibration | None = None
    family: str = ""  # pytest marker / tox env selecting this hardware's cases (b10, jetson, h100...)
    count_specs: dict[str, Spec] = field(default_factory=dict)  # provenance of sm_count and l2_mb
    usable_memory: Spec | None = None  # unified memory: what a model can use beside the OS (see 5.)
    # A scaled entry (roofline.clocks: a power mode, stated clocks) keeps what it was scaled from as fields, so no
    # caller parses them back out of ``key`` (``jetson_orin_nano_super@nvpmodel 15W``): the registry entry it
    # derives from ("" = this entry is one) and the nvpmodel mode it runs in.
    registry_key: str = ""
    power_mode: str | None = None

    @property
    def base_key(self) -> str:
        """The registry key this entry is (or was scaled from)."""
        return self.registry_key or self.key

    @property
    def model_memory(self) -> Spec | None:
        """The memory a model can plan on: the usable figure of a unified-memory device, else the memory."""
        return self.usable_memory if self.usable_memory is not None else self.memory

    def spec(self, name: str) -> Spec | None:
        """Any number of the entry with its source and flags: a fact (``bandwidth_gbs``, ``memory_gb``,
        ``usable_memory_gb``, ``gpu_clock_mhz``, ``mem_clock_mhz``, ``sm_count``, ``l2_mb``) or a compute class's
        datasheet peak."""
        if name in self.peaks:
            return self.peaks[name]
        if name in _SPEC_FIELDS:
            return getattr(self, _SPEC_FIELDS[name])
        if name not in COUNT_FIELDS:
            raise ValueError(f"{self.key} has no number {name!r}; known: "
                             f"{', '.join([*_SPEC_FIELDS, *COUNT_FIELDS, *self.peaks])}")
        value, stored = getattr(self, name), self.count_specs.get(name)
        if value is None or (stored is not None and stored.value == value):
            return None if value is None else stored
        if stored is None:
            return Spec(float(value), self.source)
        return Spec(float(value), stored.source, f"{stored.value:g} in the registry, changed here (power mode or "
                                                 "active SMs)", derived=True, unverified=stored.unverified)

    # --- the two roofs -----------------------------------------------------------------------
    def peak_tflops(self, compute_class: str, peaks: str = "datasheet") -> float:
        return self.peak(compute_class, peaks)[0]

    def peak(self, compute_class: str, peaks: str = "datasheet") -> tuple[float, str]:
        """(TFLOP/s, where it comes from). A profile that never measured this class (FP4 before calibration
        covered it, a precision it skipped) falls back to the datasheet peak, beside the calibrated
        bandwidth, and the source says so; with neither, a ValueError naming what was measured."""
        _check_peaks(peaks)
        if peaks == "calibrated":
            cal = self._need_calibration()
            where = cal.path or "profile"
            if compute_class in cal.peaks_tflops:
                return cal.peaks_tflops[compute_class], f"calibrated ({where}, {cal.timestamp})"
            spec = self.peaks.get(compute_class)
            if spec is None:
                raise ValueError(f"calibration {where} for {self.key} has no measured {compute_class} peak and "
                                 f"there is no datasheet one; measured: {', '.join(cal.peaks_tflops) or 'none'}")
            return spec.value, (f"datasheet {compute_class} peak ({spec.source}): the calibration {where} has no "
                                f"measured {compute_class} peak; bandwidth calibrated")
        spec = self.peaks.get(compute_class)
        if spec is None:
            raise ValueError(f"{self.key} has no datasheet {compute_class} peak (known: "
                             f"{', '.join(self.peaks) or 'none'}); use a calibration profile "
                             "(`python -m roofline calibrate`)")
        return spec.value, f"datasheet: {spec.source}" + (f" [{spec.flags}]" if spec.flags else "")

    def bandwidth_gbs(self, peaks: str = "datasheet") -> float:
        _check_peaks(peaks)
        if peaks == "calibrated":
            return self._need_calibration().bandwidth_gbs
        if self.bandwidth is None:
            raise ValueError(f"{self.key} has no datasheet bandwidth; use a calibration profile "
                             "(`python -m roofline calibrate`)")
        return self.bandwidth.value

    def supports_native(self, fmt) -> bool:
        return get_format(fmt).name in self.native

    def with_calibration(self, cal: Calibration) -> "Hardware":
        """This entry with a profile beside it: one measured on this device (its registry key, or an alias; a Jetson's
        in any power mode, the profile saying which). A profile of another device is refused: its peaks and efficiency
        model describe that device, and held beside this one's name and memory they gave numbers of neither (a CPU
        host's profile under ``predict``'s default gb10 planned a model against gb10's 121 GB)."""
        measured_on, where = registry_name(base_key(cal.hardware)), f" ({cal.path})" if cal.path else ""
        if measured_on not in {registry_name(n) for n in (self.key, self.base_key, *self.aliases)}:
            raise ValueError(f"calibration profile{where} was measured on {cal.hardware!r}, not {self.key!r}: predict "
                             f"against {measured_on!r} (--hardware {measured_on}), or load a profile of "
                             f"{self.base_key!r}")
        measured_slice, slice_here = mig_profile((cal.device or {}).get("name")), mig_profile(self.key)
        if measured_slice != slice_here:  # a MIG slice's roofs are its share of the board's: a profile is of one
            raise ValueError(f"calibration profile{where} was measured on "
                             f"{'a MIG ' + measured_slice + ' slice' if measured_slice else 'the whole GPU'}, and this "
                             f"is {'a MIG ' + slice_here + ' slice' if slice_here else 'the whole GPU'} of "
                             f"{self.base_key}: load a profile measured on it")
        native = self.native
        if self.kind == "cpu":
            # A CPU without bf16/VNNI units still runs torch's bf16 and int8 GEMMs (in software, through oneDNN):
            # where the profile measured such a path, that measured peak is its roof. Without this a Zen 3 host had
            # "no math path" for bf16, and every bf16 prediction and pipeline refused.
            native = native | {f for f in CPU_CALIBRATED_FORMATS if get_format(f).compute_class in cal.peaks_tflops}
        memory = self.memory
        if self.kind == "cpu" and memory is None and (cal.device or {}).get("memory_bytes"):
            # a host's RAM has no datasheet: the profile's device says it (MemTotal), so a model is planned
            # against it (`predict model` with a CPU profile said "no capacity known")
            memory = Spec(cal.device["memory_bytes"] / BYTES_PER_GB, "the calibration profile's device",
                          f"MemTotal (/proc/meminfo) in calibration profile {cal.timestamp or cal.path or '?'}: the "
                          "host's RAM, shared with the OS and every other process", derived=True)
        return dataclasses.replace(self, calibration=cal, native=frozenset(native), memory=memory)

    def _need_calibration(self) -> Calibration:
        if self.calibration is None:
            raise ValueError(f"no calibration loaded for {self.key}; run `python -m roofline calibrate` "
                             "or pass --calibration FILE, or use --peaks datasheet")
        return self.calibration

    def to_dict(self) -> dict:
        def spec(s):
            return None if s is None else dataclasses.asdict(s)
        return {"key": self.key, "family": self.family, "name": self.name, "arch": self.arch, "kind": self.kind, "source": self.source,
                "bandwidth_gbs": spec(self.bandwidth), "memory_gb": spec(self.memory),
                "usable_memory_gb": spec(self.usable_memory), "l2_mb": spec(self.spec("l2_mb")),
                "sm_count": spec(self.spec("sm_count")), "gpu_clock_mhz": spec(self.gpu_clock),
                "mem_clock_mhz": spec(self.mem_clock),
                "native": sorted(self.native), "aliases": list(self.aliases),
                "peaks_tflops": {k: spec(v) for k, v in self.peaks.items()},
                "calibration": None if self.calibration is None else self.calibration.to_dict()}


def _check_peaks(peaks: str) -> None:
    if peaks not in PEAK_SOURCES:
        raise ValueError(f"unknown peaks source {peaks!r}; allowed: {', '.join(PEAK_SOURCES)}")


def _spec(raw, source: str, what: str) -> Spec | None:
    """Accept a Spec, a {'value', 'note', ...} dict from the data table, or a plain number."""
    if raw is None or isinstance(raw, Spec):
        return raw
    if isinstance(raw, dict):
        value, extra = raw.get("value"), {k: raw[k] for k in ("note", "derived", "unverified") if k in raw}
        source = raw.get("source", source)
    else:
        value, extra = raw, {}
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}={value!r} is not a number") from None
    if not (0 < value < float("inf")):
        raise ValueError(f"{what}={value!r} must be a positive finite number")
    return Spec(value=value, source=source, **extra)


def hardware_from_dict(d: dict) -> Hardware:
    """Build a Hardware from registry data or a user's JSON (plain numbers become user-defined specs)."""
    if not isinstance(d, dict):
        raise ValueError(f"a hardware definition is a JSON object; got {type(d).__name__} {d!r:.60}")
    if "key" not in d:
        raise ValueError("hardware definition needs a 'key'")
    key = str(d["key"]).lower()
    source = str(d.get("source", "user-defined"))
    for name, kind in (("native", (list, tuple)), ("aliases", (list, tuple)), ("peaks_tflops", dict)):
        if name in d and not isinstance(d[name], kind):
            raise ValueError(f"{key} {name} must be a JSON {'object' if kind is dict else 'list of names'}, got "
                             f"{type(d[name]).__name__} {d[name]!r:.60}")
    native = d.get("native", ())
    for n in native:
        get_format(n)  # raises with the known names
    peaks = {str(k): _spec(v, source, f"{key} peak {k}") for k, v in d.get("peaks_tflops", {}).items()}
    counts = {f: _spec(d.get(f), source, f"{key} {f}") for f in COUNT_FIELDS if d.get(f) is not None}
    if "sm_count" in counts and counts["sm_count"].value != int(counts["sm_count"].value):
        raise ValueError(f"{key} sm_count={counts['sm_count'].value!r} must be a whole number")
    return Hardware(key=key, name=str(d.get("name", key)), arch=str(d.get("arch", "custom")),
                    kind=str(d.get("kind", "custom")), source=source,
                    bandwidth=_spec(d.get("bandwidth_gbs"), source, f"{key} bandwidth_gbs"),
                    memory=_spec(d.get("memory_gb"), source, f"{key} memory_gb"), peaks=peaks,
                    usable_memory=_spec(d.get("usable_memory_gb"), source, f"{key} usable_memory_gb"),
                    native=frozenset(get_format(n).name for n in native),
                    l2_mb=counts["l2_mb"].value if "l2_mb" in counts else None,
                    sm_count=int(counts["sm_count"].value) if "sm_count" in counts else None,
                    gpu_clock=_spec(d.get("gpu_clock_mhz"), source, f"{key} gpu_clock_mhz"),
                    mem_clock=_spec(d.get("mem_clock_mhz"), source, f"{key} mem_clock_mhz"),
                    aliases=tuple(a.lower() for a in d.get("aliases", ())), family=str(d.get("family", key)),
                    count_specs=counts)


REGISTRY: dict[str, Hardware] = {}
_ALIASES: dict[str, str] = {}


def register_hardware(hw: Hardware, replace: bool = False) -> Hardware:
    """Add a (custom) entry to this process's registry under its key and aliases."""
    names = (hw.key, *hw.aliases)
    for n in names:
        if not replace and n in _ALIASES and _ALIASES[n] != hw.key:
            raise ValueError(f"hardware name {n!r} is already taken by {_ALIASES[n]!r}")
    REGISTRY[hw.key] = hw
    for n in names:
        _ALIASES[n] = hw.key
    return hw


for _d in HARDWARE_DATA:
    register_hardware(hardware_from_dict(_d))


def known_hardware() -> list[str]:
    return list(REGISTRY)


def hardware_families() -> dict[str, list[str]]:
    """family (pytest marker) -> registry keys in it."""
    out: dict[str, list[str]] = {}
    for hw in REGISTRY.values():
        out.setdefault(hw.family, []).append(hw.key)
    return out


def registry_name(key: str) -> str:
    """A key or alias as the registry reads it: case and ``-``/``_`` aside."""
    return str(key).strip().lower().replace("-", "_")


def base_key(key: str) -> str:
    """``jetson_orin_nano_super@nvpmodel 15W`` -> ``jetson_orin_nano_super``: for a key read from a record or a profile
    (a string); an entry in hand has it as ``Hardware.base_key``."""
    return key.split("@", 1)[0]


def get_hardware(key: str | Hardware) -> Hardware:
    if isinstance(key, Hardware):
        return key
    name = registry_name(key)
    if name in _ALIASES:
        return REGISTRY[_ALIASES[name]]
    aliases = sorted(a for a in _ALIASES if a not in REGISTRY)
    raise ValueError(f"unknown hardware {key!r}; known: {', '.join(REGISTRY)} (aliases: {', '.join(aliases)})")


def load_hardware_file(path: str | os.PathLike, register: bool = True) -> list[Hardware]:
    """Load custom hardware from JSON: one object or a list of objects with the registry's fields."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"cannot read hardware file {os.fspath(path)!r}: {e}") from None
    items = data if isinstance(data, list) else [data]
    hws = [hardware_from_dict(d) for d in items]
    if register:
        for hw in hws:
            register_hardware(hw, replace=True)
    return hws
