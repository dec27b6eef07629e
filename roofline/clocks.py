"""Scale a hardware entry to the clocks it actually runs at (power modes, throttling, capped boards).

1. Compute peaks scale with ``gpu_clock / nominal_gpu_clock`` and ``active_sms / sm_count``.
2. Bandwidth scales with ``mem_clock / nominal_mem_clock`` (EMC on Jetson).
3. The scaled entry's numbers are marked derived and name what they were scaled from; a calibration
   measured at other clocks is dropped rather than carried over silently.

Jetson power modes: ../shared/reference/hardware.md ("Jetson: power modes"), from each board's
nvpmodel config; the Orin NX modes from NVIDIA's nvpmodel_p3767_0000/_0001(_super).conf (as vendored in
LineageOS/android_device_nvidia_concord). Mode names are spelled as ``nvpmodel -q`` prints them
(the AGX Orin's config says ``MODE_30W``); ``15W`` and ``MODE_15W`` name the same mode. Active SMs come
from each mode's TPC_PG_MASK (a set bit gates one TPC of 2 SMs). ``None`` means "unchanged" (all SMs;
EMC uncapped); a GPU cap of -1 in the config (uncapped) is the board's nominal clock here.
Each mode's power budget is the one its name states (``power_budget_w``); MAXN modes name none. Some
Orin Nano Super configs list a 7W mode too (id 3, in secondary sources only): its caps are not in the
reference, so it is not modelled and ``7W`` on that board is refused.
"""
from __future__ import annotations

import dataclasses
import re

from .hardware import MIG_PROFILE, Hardware, Spec, get_hardware, mig_parts, mig_profile, vgpu_type

# board key -> mode name -> (mode id, GPU max MHz, active SMs or None, EMC max MHz or None)
POWER_MODES: dict[str, dict[str, tuple]] = {
    "jetson_orin_nano": {"15W": (0, 625, None, 2133), "7W": (1, 408, 4, 2133)},
    "jetson_orin_nano_super": {"15W": (0, 612, None, 2133), "25W": (1, 918, None, 3199),
                               "MAXN_SUPER": (2, 1020, None, 3199)},
    "jetson_agx_orin": {"MAXN": (0, 1300.5, None, None), "MODE_15W": (1, 408, 6, 2133), "MODE_30W": (2, 612, 8, None),
                        "MODE_50W": (3, 816, None, None)},
    "jetson_orin_nx_16gb": {"MAXN": (0, 918, None, None), "10W": (1, 612, 4, 2133), "15W": (2, 612, 4, None),
                            "25W": (3, 408, None, None)},
    "jetson_orin_nx_8gb": {"MAXN": (0, 765, None, None), "10W": (1, 612, 4, 2133), "15W": (2, 612, 4, None),
                           "20W": (3, 408, None, None)},
    "jetson_orin_nx_16gb_super": {"MAXN_SUPER": (0, 1173, None, None), "10W": (1, 612, 4, 2133),
                                  "15W": (2, 612, 4, None), "25W": (3, 408, None, None), "40W": (4, 1173, None, None)},
    "jetson_orin_nx_8gb_super": {"MAXN_SUPER": (0, 1173, None, None), "10W": (1, 612, 4, 2133),
                                 "15W": (2, 612, 4, None), "20W": (3, 408, None, None), "40W": (4, 1173, None, None)},
}
# board key -> the mode it boots in (each config's PM_CONFIG DEFAULT)
DEFAULT_POWER_MODE: dict[str, str] = {
    "jetson_orin_nano": "15W", "jetson_orin_nano_super": "25W", "jetson_agx_orin": "MODE_30W",
    "jetson_orin_nx_16gb": "15W", "jetson_orin_nx_8gb": "15W", "jetson_orin_nx_16gb_super": "40W",
    "jetson_orin_nx_8gb_super": "40W",
}


# board key -> the nvpmodel config its modes come from (each mode's name, and so its power budget)
NVPMODEL_CONFIGS: dict[str, str] = {
    "jetson_orin_nano": "nvpmodel_p3767_0003.conf", "jetson_orin_nano_super": "nvpmodel_p3767_0003_super.conf",
    "jetson_agx_orin": "nvpmodel_p3701_0000.conf", "jetson_orin_nx_16gb": "nvpmodel_p3767_0000.conf",
    "jetson_orin_nx_8gb": "nvpmodel_p3767_0001.conf", "jetson_orin_nx_16gb_super": "nvpmodel_p3767_0000_super.conf",
    "jetson_orin_nx_8gb_super": "nvpmodel_p3767_0001_super.conf",
}


def _mode_name(mode) -> str:
    name = str(mode).strip().upper()
    return name[len("MODE_"):] if name.startswith("MODE_") else name


def find_power_mode(key: str, mode) -> tuple[str, tuple] | None:
    """(name, (id, GPU MHz, SMs, EMC MHz)) of a board's mode given by name (``15W``, ``MODE_15W``) or id."""
    for name, spec in POWER_MODES.get(key, {}).items():
        if _mode_name(mode) == _mode_name(name) or str(mode).strip() == str(spec[0]):
            return name, spec
    return None


def _ratio(name: str, value, nominal: Spec | float | None, hw: Hardware) -> float:
    if value is None:
        return 1.0
    if not (value > 0 and value < float("inf")):
        raise ValueError(f"{name}={value!r} must be a positive number")
    if nominal is None:
        raise ValueError(f"{hw.key} has no nominal {name} in the registry; cannot scale by it")
    return value / (nominal.value if isinstance(nominal, Spec) else nominal)


def scale_clocks(hardware, gpu_clock_mhz=None, active_sms=None, mem_clock_mhz=None, label=None,
                 memory_fraction: float | None = None) -> Hardware:
    """``memory_fraction``: the share of the memory system a partition owns (a MIG slice's memory slices)."""
    hw = get_hardware(hardware)
    if active_sms is not None and hw.sm_count and active_sms > hw.sm_count:
        raise ValueError(f"active_sms={active_sms} exceeds {hw.key}'s {hw.sm_count} SMs")
    compute = _ratio("gpu_clock_mhz", gpu_clock_mhz, hw.gpu_clock, hw) * _ratio("active_sms", active_sms,
                                                                                hw.sm_count, hw)
    memory = _ratio("mem_clock_mhz", mem_clock_mhz, hw.mem_clock, hw) * (memory_fraction or 1.0)
    what = label or ", ".join(f"{n}={v}" for n, v in (("gpu_clock_mhz", gpu_clock_mhz), ("active_sms", active_sms),
                                                      ("mem_clock_mhz", mem_clock_mhz)) if v is not None)

    def scaled(spec: Spec | None, factor: float) -> Spec | None:
        if spec is None or factor == 1.0:
            return spec
        return dataclasses.replace(spec, value=spec.value * factor, derived=True,
                                   note=f"{spec.value:g} scaled x{factor:.4g} ({what})")

    return dataclasses.replace(
        hw, key=f"{hw.key}@{what}" if what else hw.key, aliases=(), calibration=None, registry_key=hw.base_key,
        peaks={c: scaled(s, compute) for c, s in hw.peaks.items()}, bandwidth=scaled(hw.bandwidth, memory),
        gpu_clock=Spec(gpu_clock_mhz, "scaled", derived=True) if gpu_clock_mhz else hw.gpu_clock,
        mem_clock=Spec(mem_clock_mhz, "scaled", derived=True) if mem_clock_mhz else hw.mem_clock,
        sm_count=active_sms or hw.sm_count)


def apply_power_mode(hardware, mode: str) -> Hardware:
    """The entry as it runs in a Jetson nvpmodel mode (by name or id, e.g. ``"7W"`` or ``1``)."""
    hw = get_hardware(hardware)
    modes = POWER_MODES.get(hw.key)
    if modes is None:
        raise ValueError(f"no power modes known for {hw.key}; known boards: {', '.join(POWER_MODES)}")
    found = find_power_mode(hw.key, mode)
    if found is not None:
        name, (_, gpu, sms, emc) = found
        scaled = scale_clocks(hw, gpu_clock_mhz=gpu, active_sms=sms, mem_clock_mhz=emc, label=f"nvpmodel {name}")
        return dataclasses.replace(scaled, power_mode=name)
    raise unknown_power_mode(hw.key, mode)


def unknown_power_mode(key: str, mode) -> ValueError:
    """The one error for a mode a board does not have, naming the modes it has (by name and nvpmodel id)."""
    known = ", ".join(f"{n} ({v[0]})" for n, v in POWER_MODES.get(key, {}).items()) or "none (not a Jetson board)"
    return ValueError(f"unknown power mode {mode!r} for {key}; known: {known}")


def resolve(hardware, power_mode=None, gpu_clock_mhz=None, active_sms=None, mem_clock_mhz=None,
            calibration=None) -> Hardware:
    """The entry a prediction is held against: a registry key (or entry) in a Jetson power mode, at stated clocks
    and SMs, with a calibration profile beside it, in that order. The one path from ``--hardware`` and its
    options to a ``Hardware``, for the theory's commands and for measurement (``roofline_kernels.measure``)."""
    hw = get_hardware(hardware)
    measured_in = profile_power_mode(hw.key, calibration)
    if measured_in is not None:  # a profile is of one mode: held beside another's roofs (MAXN's datasheet peaks for
        # the classes it did not calibrate) it gave numbers of neither
        asked = find_power_mode(hw.key, power_mode) if power_mode is not None else None
        if power_mode is None:
            power_mode = measured_in
        elif asked is not None and asked[0] != measured_in:
            where = f" ({calibration.path})" if calibration.path else ""
            raise ValueError(f"power mode {power_mode!r}: the calibration profile{where} was measured on {hw.key} in "
                             f"{measured_in}; hold it to {measured_in} (no --power-mode), or load a profile measured "
                             f"in {asked[0]}")
    if power_mode is not None:
        hw = apply_power_mode(hw, power_mode)
    sliced_on = (calibration.device or {}).get("name") if calibration is not None else None
    if mig_profile(sliced_on) and not mig_profile(hw.key):  # a slice's profile: held to that slice's roofs
        hw = mig_slice(hw, sliced_on, (calibration.device or {}).get("sm_count"))
    if gpu_clock_mhz or active_sms or mem_clock_mhz:
        hw = scale_clocks(hw, gpu_clock_mhz, active_sms, mem_clock_mhz)
    return hw.with_calibration(calibration) if calibration is not None else hw


MIG_MEMORY_SLICES = 8  # A100, H100, H200, B200: 8 memory slices (7 compute); the A30's 4 is not in the registry


def mig_board_gb(name: str, hw: Hardware) -> float | None:
    """The whole board's memory a MIG slice's fraction is of: the size its CUDA name states ("A100-SXM4-40GB") where
    that is a plausible size of this entry's board (40-105% of it; a GH200's "480GB" counts its LPDDR too), a vGPU's
    board by its type's code ("A100X": the 40GB HGX board), else the entry's."""
    vgpu = vgpu_type(name)
    if vgpu is not None:
        return vgpu.board_gb
    m = MIG_PROFILE.search(name or "")
    stated = re.findall(r"(\d+)\s*GB\b", (name or "")[:m.start()] if m else "", re.IGNORECASE)
    entry = hw.memory.value if hw.memory else None
    if stated and (entry is None or 0.4 * entry <= float(stated[-1]) <= 1.05 * entry):
        return float(stated[-1])
    return entry


def mig_slice(hardware, name: str, sm_count: int | None) -> Hardware:
    """The roofs of a MIG slice of ``hardware``, named by its CUDA device name and SM count: compute scales with the
    slice's SMs, bandwidth, memory and L2 with its memory slices. NVIDIA's MIG User Guide ("Supported MIG Profiles")
    gives each profile its fraction of memory and of SMs, and each instance its own memory controllers, L2 and DRAM
    bandwidth (NVIDIA Technical Blog, "Dividing NVIDIA A30 GPUs and Conquering Multiple Workloads"): a 1g.10gb of an
    H100 80GB owns 1 of 8 memory slices and 16 of 132 SMs. A compute instance (``1c.3g.40gb``) shares its GPU
    instance's memory: the same fraction, and its own SMs as CUDA counts them. The memory fraction is the profile's
    GB over the board's (``mig_board_gb``), rounded to its memory slices."""
    hw = get_hardware(hardware)
    parts = mig_parts(name)
    if parts is None:
        raise ValueError(f"{name!r} names no MIG profile (e.g. 'MIG 1g.10gb', or a MIG-backed vGPU 'H100XM-1-10C')")
    board_gb = mig_board_gb(name, hw)
    if not board_gb:
        raise ValueError(f"{hw.key} has no memory size in the registry; cannot size the MIG slice {mig_profile(name)}")
    gb = parts[1]
    slices = max(1, min(MIG_MEMORY_SLICES, round(MIG_MEMORY_SLICES * gb / board_gb)))
    sms = min(sm_count, hw.sm_count) if sm_count and hw.sm_count else None  # an override's entry may have fewer
    fraction = slices / MIG_MEMORY_SLICES
    sliced = scale_clocks(hw, active_sms=sms, memory_fraction=fraction,
                          label=f"MIG {mig_profile(name)}: {sms or hw.sm_count} of {hw.sm_count} SMs, {slices} of "
                                f"{MIG_MEMORY_SLICES} memory slices")
    note = f"{fraction:g} of the board's ({mig_profile(name)}: {slices} of {MIG_MEMORY_SLICES} memory slices)"
    return dataclasses.replace(
        sliced, memory=Spec(float(gb), "the MIG profile's name", note, derived=True),
        l2_mb=hw.l2_mb * fraction if hw.l2_mb else hw.l2_mb)


def profile_power_mode(key: str, calibration) -> str | None:
    """The nvpmodel mode (its name in ``POWER_MODES``) a calibration profile of board ``key`` was measured in: its
    key's (``jetson_orin_nano_super@nvpmodel 15W``, as a scaled entry names itself) or its device's (the mode the
    board reported while calibrating); None for a profile of no known mode, or of no Jetson."""
    if calibration is None or key not in POWER_MODES:
        return None
    _, at, rest = calibration.hardware.partition("@")
    mode = rest[len("nvpmodel "):] if at and rest.startswith("nvpmodel ") else \
        ((calibration.device or {}).get("power_mode") or {}).get("mode")
    found = find_power_mode(key, mode) if mode is not None else None
    return found[0] if found else None


def power_budget_w(key: str, mode) -> Spec | None:
    """The module power budget a mode is named for (``15W``, ``MODE_30W`` -> 15, 30 W), or None for a MAXN mode.

    NVIDIA names each nvpmodel mode (POWER_MODEL NAME) for the module power it is configured to stay within;
    MAXN and MAXN_SUPER lift the caps and name no budget. The budget bounds the module's power under its
    clocks' caps; the board's input rail (VDD_IN) adds the carrier board on top."""
    found = find_power_mode(key, mode)
    if found is None:
        raise unknown_power_mode(key, mode)
    name = found[0]
    m = re.fullmatch(r"(\d+(?:\.\d+)?)W", _mode_name(name))
    if m is None:
        return None
    return Spec(float(m.group(1)), f"{NVPMODEL_CONFIGS.get(key, 'nvpmodel config')} POWER_MODEL NAME={name}",
                "the module power budget the mode is named for")
