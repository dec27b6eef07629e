"""Which registry entry a detected device is: pure rules over the facts detection gathered.

1. A discrete GPU is named by its CUDA device name (first matching rule), then checked against its SM
   count and memory: where they contradict the name, the entry of the same family that fits them wins
   (an "NVIDIA H100" with 114 SMs is the PCIe card; 132 SMs and 94 GB is the NVL).
2. A Jetson is narrowed by every fact there is: the device-tree model ("AGX", "NX", "Nano"), the SM
   count and memory size (the device tree is masked in a container; CUDA still reports them), the
   current ``nvpmodel`` mode (a board runs only modes its own config defines: ``25W`` exists on an Orin
   Nano only in the Super config, ``20W`` only on an Orin NX 8GB), and only then the weaker hints: a
   "Super" model string, the config file's text, the GPU's maximum clock.
3. Each rule that decided says so, in words the report prints (``Identified.evidence``).
4. ``check_override_kind``: ``--hardware KEY`` changes the roofs, not the device measured, so a key of
   another kind than the detected device is refused (one exception, in ``device.detect``: ``--hardware
   cpu`` on a GPU host measures the host CPU, which is there too).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from roofline import REGISTRY, get_hardware
from roofline.clocks import POWER_MODES, find_power_mode, mig_board_gb, mig_profile
from roofline.hardware import vgpu_type

# (pattern in the CUDA device name, registry key): first match wins, so specific names come first.
# Names as CUDA reports them: "NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA H200",
# "NVIDIA GB10". A Jetson's integrated GPU ("Orin") is not here: device.detect sends it to identify_jetson,
# which names the board from its device tree, memory and SMs (a name rule could only guess one of seven).
CUDA_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"GB10", "gb10"),
    (r"(?<!G)H200", "h200"),  # a GH200 (Grace Hopper: 96 GB HBM3 at 4 TB/s, or 144 GB HBM3e) is no H200 SXM
    (r"H100.*NVL", "h100_nvl"),
    (r"H100.*PCIe", "h100_pcie"),
    (r"H100", "h100_sxm"),
    (r"A100", "a100"),
    (r"B200", "b200"),
    (r"RTX 4090", "rtx4090"),
    (r"RTX 5090", "rtx5090"),
)

# detected kind -> registry kinds whose roofs may stand for it ("custom": a user's own entry)
ALLOWED_OVERRIDE_KINDS = {"cpu": ("cpu", "custom"), "cuda": ("gpu", "custom"), "jetson": ("jetson", "custom")}


@dataclass
class Identified:
    key: str | None
    evidence: list[str] = field(default_factory=list)


def hardware_key_from_cuda_name(name: str) -> str | None:
    vgpu = vgpu_type(name)  # a guest's vGPU: its type's board code names the board ("H100-1-10C" is an H100 PCIe)
    if vgpu is not None:
        return vgpu.board
    for pattern, key in CUDA_NAME_RULES:
        if re.search(pattern, name, re.IGNORECASE):
            return key
    return None


def _gib(memory_bytes: int | None) -> float | None:
    return memory_bytes / 2**30 if memory_bytes else None


def _sm_counts(key: str) -> set[int]:
    """A board's SM count and each count its power modes leave powered (``roofline.clocks.POWER_MODES``)."""
    return {REGISTRY[key].sm_count} | {spec[2] for spec in POWER_MODES.get(key, {}).values() if spec[2]}


MEMORY_SLACK = 1.05  # a nominal "64 GB" is 64 GiB of DRAM, of which less is visible: 5% spare for the units' rounding


def _nearest_memory(keys: list[str], memory_bytes: int | None) -> list[str]:
    """Entries whose nominal memory is nearest to what CUDA (or /proc/meminfo) reports.

    Reported memory sits below the nominal (an Orin NX 16GB reports 14486 MiB; carve-outs, ECC), so the
    comparison is nearest, never equal."""
    gib = _gib(memory_bytes)
    sized = [k for k in keys if REGISTRY[k].memory is not None]
    if gib is None or not sized:
        return keys
    best = min(abs(REGISTRY[k].memory.value - gib) for k in sized)
    return [k for k in sized if abs(REGISTRY[k].memory.value - gib) == best]


def identify_cuda(name: str, sm_count: int | None = None, memory_bytes: int | None = None) -> Identified:
    key = hardware_key_from_cuda_name(name)
    if key is None:
        return Identified(None, [f"CUDA device name {name!r} matches no registry entry"])
    found = Identified(key, [f"CUDA device name {name!r}"])
    hw = REGISTRY[key]
    vgpu = vgpu_type(name)
    if vgpu is not None and vgpu.time_sliced:  # every SM, in turn: SMs and the frame buffer do not name the board
        found.evidence.append(
            f"a time-sliced vGPU ({vgpu.name}) of {key}: every SM and the board's bandwidth, but only in the time "
            f"slices the host's vGPU scheduler gives it beside other VMs' vGPUs, which this guest cannot see (NVIDIA "
            f"vGPU: best effort by default), and {vgpu.framebuffer_gb} GB of the board's frame buffer")
    elif vgpu is not None:
        found.evidence.append(f"a MIG-backed vGPU ({vgpu.name}): a GPU instance of its own, MIG {mig_profile(name)}")
    if mig_profile(name):  # its SMs and memory are the slice's: they name the board no better than its name does
        sms = f"{sm_count} of {hw.sm_count} SMs and " if sm_count else ""
        found.evidence.append(f"a MIG slice ({mig_profile(name)}) of {key}: its roofs are the slice's share ({sms}its "
                              "memory slices)")
    if vgpu is not None or mig_profile(name):  # the board's GB come from the name, not from what CUDA shows
        variant = memory_variant(key, name, memory_bytes)
        if variant:
            found.evidence.append(_variant(found.key, variant, "GB board"))
        return found
    if hw.kind != "gpu" or sm_count is None:
        return found
    family = [k for k, h in REGISTRY.items() if h.family == hw.family and h.arch == hw.arch and h.kind == "gpu"]
    same_sms = [k for k in family if REGISTRY[k].sm_count == sm_count]
    fits = _nearest_memory(same_sms, memory_bytes) if same_sms else []
    if key not in fits and len(fits) == 1:
        found.key = fits[0]
        found.evidence.append(f"{sm_count} SMs and {_gib(memory_bytes) or 0:.1f} GiB fit {fits[0]}, not {key}")
    elif not same_sms:
        found.evidence.append(f"{sm_count} SMs: no {hw.family} entry has that many ({key} has {hw.sm_count})")
    variant = memory_variant(found.key, name, memory_bytes)
    if variant:  # the registry has no entry of it, and the one that stands in may have other roofs: said
        found.evidence.append(_variant(found.key, variant, "GiB of memory"))
    return found


def memory_variant(key: str, name: str, memory_bytes: int | None) -> float | None:
    """The memory of a board that is another variant than entry ``key`` (an A100 40GB, 1555 GB/s, beside the 80GB
    SXM's 2039), in GiB (a MIG slice: its board's GB, from its name): None where it shows its entry's (85-105%).
    Detection says it; the timing history keeps it apart."""
    entry = REGISTRY.get(key)
    if entry is None or entry.memory is None:
        return None
    seen = mig_board_gb(name, entry) if mig_profile(name) or vgpu_type(name) else _gib(memory_bytes)
    if not seen or VARIANT_MEMORY_LOW * entry.memory.value <= seen <= MEMORY_SLACK * entry.memory.value:
        return None
    return seen


def _variant(key: str, size: float, what: str) -> str:
    entry = REGISTRY[key]
    return (f"{size:.1f} {what} where {key} ({entry.name}) has {entry.memory.value:g} GB: a variant the registry "
            f"lacks, held to {key}'s roofs (its bandwidth may be lower: add its entry with --hardware-file)")


VARIANT_MEMORY_LOW = 0.85  # a board shows 90-97% of its nominal memory; below 85% it is another variant


# --- Jetson ---------------------------------------------------------------------------------------

JETSON_MODEL_WORDS = (("agx", "jetson_agx"), ("nx", "jetson_orin_nx"), ("nano", "jetson_orin_nano"))


def _jetson_keys() -> list[str]:
    """Orin entries the rules can weigh (a user's custom Jetson entry without SMs or clock is left out)."""
    return [k for k, hw in REGISTRY.items() if hw.kind == "jetson" and hw.sm_count and hw.gpu_clock]


def _mode_fits(key: str, power_mode: dict) -> bool:
    """The board's config defines this mode: same name (``15W`` == ``MODE_15W``) and, if known, same id."""
    found = find_power_mode(key, power_mode.get("mode"))
    return found is not None and (power_mode.get("id") is None or found[1][0] == power_mode["id"])


@dataclass(frozen=True)
class JetsonFacts:
    model: str = ""  # /proc/device-tree/model ("" when masked, e.g. in a container)
    sm_count: int | None = None  # from CUDA
    memory_bytes: int | None = None  # from CUDA, else /proc/meminfo
    power_mode: dict | None = None  # {"mode": NAME, "id": N} from `nvpmodel -q`
    nvpmodel_conf: str = ""  # /etc/nvpmodel.conf text
    gpu_max_mhz: float | None = None  # highest GPU devfreq frequency, or CUDA's clock rate


def identify_jetson(facts: JetsonFacts) -> Identified:
    """The Orin board these facts describe, narrowing the candidates one fact at a time."""
    model = facts.model.lower()
    if model and "orin" not in model:
        return Identified(None, [f"device-tree model {facts.model!r} is not an Orin board"])
    keys, why = _jetson_keys(), []

    def narrow(subset, reason):
        nonlocal keys
        if subset and set(subset) != set(keys):
            keys = [k for k in keys if k in subset]
            why.append(reason)

    for word, prefix in JETSON_MODEL_WORDS:
        if re.search(rf"\b{word}\b", model):
            narrow([k for k in keys if k.startswith(prefix)], f"device-tree model {facts.model!r}")
            break
    if facts.memory_bytes and _gib(facts.memory_bytes):
        # a board never shows more memory than it has, where its SMs may read fewer than it has (a power mode that
        # gates TPCs, if CUDA counts only the powered ones): boards too small for the memory seen go first, so a
        # masked AGX Orin showing 8 SMs is not taken for an 8-SM NX 16GB at a quarter of its memory
        seen = _gib(facts.memory_bytes)
        able = [k for k in keys if REGISTRY[k].memory is None or REGISTRY[k].memory.value * MEMORY_SLACK >= seen]
        if able and set(able) != set(keys):
            narrow(able, f"{seen:.1f} GiB of memory: more than {', '.join(k for k in keys if k not in able)} have")
    if facts.sm_count is not None:
        # the board's SMs, or those a power mode of its own leaves powered (an NX in 15W runs 4 of its 8)
        same = [k for k in keys if facts.sm_count in _sm_counts(k)]
        if same:
            narrow(same, f"{facts.sm_count} SMs")
        else:
            why.append(f"{facts.sm_count} SMs: no Orin entry left has that many, in any of its modes (a board the "
                       "registry lacks; the nearest entry's roofs stand in)")
            gap = min(abs(REGISTRY[k].sm_count - facts.sm_count) for k in keys)
            keys = [k for k in keys if abs(REGISTRY[k].sm_count - facts.sm_count) == gap]  # ties: the facts below
    if facts.memory_bytes:
        narrow(_nearest_memory(keys, facts.memory_bytes), f"{_gib(facts.memory_bytes):.1f} GiB of memory")
    mode = facts.power_mode or {}
    if mode.get("mode"):
        fits = [k for k in keys if _mode_fits(k, mode)]
        label = f"nvpmodel mode {mode['mode']} ({mode.get('id')})"
        narrow(fits, f"{label} exists only in the config of {' / '.join(fits)}")
        if not fits:
            why.append(f"{label} is in no known config of {' / '.join(keys)}")
    if len(keys) > 1 and "super" in model:
        narrow([k for k in keys if k.endswith("_super")], "'Super' in the device-tree model")
    if len(keys) > 1 and facts.nvpmodel_conf:
        has_super = "MAXN_SUPER" in facts.nvpmodel_conf
        narrow([k for k in keys if k.endswith("_super") == has_super],
               f"/etc/nvpmodel.conf {'defines' if has_super else 'lacks'} MAXN_SUPER "
               f"({'the current mode is in both configs' if mode.get('mode') else 'no current mode to go by'})")
    if len(keys) > 1 and facts.gpu_max_mhz:
        best = min(abs(REGISTRY[k].gpu_clock.value - facts.gpu_max_mhz) for k in keys)
        narrow([k for k in keys if abs(REGISTRY[k].gpu_clock.value - facts.gpu_max_mhz) == best],
               f"GPU maximum clock {facts.gpu_max_mhz:g} MHz")
    if len(keys) > 1:  # a board whose full SM count was seen before one that shows it only in a gated mode
        full = facts.sm_count
        base = sorted(keys, key=lambda k: (full is not None and REGISTRY[k].sm_count != full, k.endswith("_super"),
                                           k))[0]
        why.append(f"ambiguous between {', '.join(keys)}: took {base}")
        keys = [base]
    return Identified(keys[0], why or ["an Orin board (no fact narrowed it further)"])


def hardware_key_from_jetson(model: str, nvpmodel_conf: str = "", power_mode: dict | None = None,
                             sm_count: int | None = None, memory_bytes: int | None = None,
                             gpu_max_mhz: float | None = None) -> str | None:
    """Shorthand for ``identify_jetson(...).key``; None for a model string that is not an Orin board."""
    return identify_jetson(JetsonFacts(model, sm_count, memory_bytes, power_mode, nvpmodel_conf, gpu_max_mhz)).key


# --- --hardware ------------------------------------------------------------------------------------

def check_override_kind(override: str, detected_kind: str, detected: str) -> str:
    """The registry key ``override`` names, if its kind can stand for the detected device; else ValueError."""
    hw = get_hardware(override)
    allowed = ALLOWED_OVERRIDE_KINDS.get(detected_kind, ())
    if hw.kind not in allowed:
        examples = ", ".join(k for k, h in REGISTRY.items() if h.kind in allowed)
        raise ValueError(
            f"--hardware {override!r} names {hw.key}, a {hw.kind} entry, but this host was detected as a "
            f"{detected_kind} device ({detected}): the key would change the roofs, not the device measured. "
            f"Allowed here: entries of kind {' or '.join(allowed)} ({examples}, or a custom entry)")
    return hw.key
