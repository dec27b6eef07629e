"""NVML, for the GPU being measured: which handle that is, and who else is using it.

1. NVML numbers GPUs its own way and ignores ``CUDA_VISIBLE_DEVICES``: NVML index 0 is the first GPU
   of the machine, not the one torch measures. The handle is looked up by the UUID (or PCI bus id)
   torch reports for its device; index 0 is used only when neither is known, and says so.
2. NVML lists processes by host PID. A process in a container (its own PID namespace, the docker
   default) is listed under a PID it cannot see as its own, so it would count itself as "another GPU
   process". ``other_gpu_processes`` detects that case (its own PID absent from the list while listed
   PIDs do not exist in its /proc), counts the processes instead of naming them, and counts one of
   them as itself when it holds a CUDA context. ``docker run --pid=host`` lets it name them.
3. A MIG slice: torch's UUID is its instance's, and ``nvmlDeviceGetHandleByUUID`` returns the instance's handle
   (nvml.h, NVIDIA/go-nvml pkg/nvml/nvml.h at 2f9e261fe40a, L4699-4721). Its processes are the instance's own; the
   board's handle lists every instance's, and only to a privileged caller (L7399-7404). Clocks, clocks-event
   reasons, power, energy, power limit and temperature are documented for no MIG handle and are the board's (one SM
   clock for every instance: NVIDIA/dcgm-exporter#50): ``open_target`` gives the board's handle for them
   (``nvmlDeviceGetDeviceHandleFromMigDeviceHandle``, L13468-13483). Utilization "is not currently supported" on a
   MIG-enabled GPU (L7096), and is not asked there.
4. Every query degrades to None with the reason; nothing here raises past ``session``.
"""
from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from roofline.hardware import bare_metal_mig


@contextmanager
def session():
    """``pynvml`` initialised for the block (raises what nvmlInit raises: no library, no driver)."""
    import pynvml
    pynvml.nvmlInit()
    try:
        yield pynvml
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def error_text(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


def as_str(x):
    return x.decode() if isinstance(x, bytes) else x


def nvml_uuid(uuid: str) -> str:
    """torch spells a UUID bare ("58ff5e0f-..."), NVML with a prefix ("GPU-58ff5e0f-...")."""
    u = uuid.strip()
    return u if re.match(r"(?i)^(GPU|MIG)-", u) else f"GPU-{u}"


def parse_pci_bus_id(text: str) -> tuple[int, int, int] | None:
    """"0000:41:00.0" (sysfs, torch) or "00000000:41:00.0" (NVML) -> (domain, bus, device)."""
    m = re.fullmatch(r"\s*(?:([0-9a-fA-F]+):)?([0-9a-fA-F]+):([0-9a-fA-F]+)(?:\.[0-7])?\s*", text or "")
    return (int(m.group(1) or "0", 16), int(m.group(2), 16), int(m.group(3), 16)) if m else None


def nvml_bus_id(pci_bus_id: str) -> str:
    """NVML's spelling of a PCI bus id: 8 hex digits of domain, upper case (nvidia-smi prints the same)."""
    parsed = parse_pci_bus_id(pci_bus_id)
    if parsed is None:
        raise ValueError(f"PCI bus id {pci_bus_id!r} is not domain:bus:device.function")
    domain, bus, device = parsed
    return f"{domain:08X}:{bus:02X}:{device:02X}.0"


def _spellings(uuid: str) -> list[str]:
    """The UUID as detection spelt it, then with the other prefix: a MIG instance's bare UUID taken for a GPU's (a
    device name without its profile), or the reverse (nvitop's lookup does the same: XuehaiPan/nvitop device.py)."""
    first = nvml_uuid(uuid)
    prefix, rest = first[:4].upper(), first[4:]
    return [first, ("GPU-" if prefix == "MIG-" else "MIG-") + rest]


def _not_found(pynvml, e: Exception) -> bool:
    return getattr(e, "value", None) == getattr(pynvml, "NVML_ERROR_NOT_FOUND", 6)


def find_handle(pynvml, uuid: str | None = None, pci_bus_id: str | None = None, index: int = 0):
    """(handle, how it was matched) for the GPU torch measures (a MIG slice: its instance's handle); LookupError if it
    is known but NVML lacks it. The UUID's other prefix is tried only where NVML found no device by the first."""
    tried = []
    for spelt in _spellings(uuid) if uuid else []:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(spelt), f"UUID {spelt}"
        except Exception as e:
            tried.append(f"UUID {spelt} ({error_text(e)})")
            if not _not_found(pynvml, e):
                break
    if pci_bus_id:
        by_bus = getattr(pynvml, "nvmlDeviceGetHandleByPciBusId_v2", None) or pynvml.nvmlDeviceGetHandleByPciBusId
        try:
            return by_bus(nvml_bus_id(pci_bus_id)), f"PCI bus id {nvml_bus_id(pci_bus_id)}"
        except Exception as e:
            tried.append(f"PCI bus id {pci_bus_id} ({error_text(e)})")
    if tried:
        raise LookupError(f"no NVML device matches the measured GPU: {'; '.join(tried)}")
    return (pynvml.nvmlDeviceGetHandleByIndex(index),
            f"index {index}: no UUID or PCI bus id known, so under CUDA_VISIBLE_DEVICES this may be another GPU")


MIG_READINGS = ("a MIG slice: clocks, clocks-event reasons, power, energy, power limit and temperature are its "
                "board's, which every instance shares, and utilization is not supported on a MIG-enabled GPU (nvml.h); "
                "processes are this instance's (a compute instance's siblings in its GPU instance, which share its "
                "memory and L2, are not among them)")


@dataclass
class Target:
    """The NVML handles of the GPU torch measures. ``handle``: its own (a MIG slice's instance), for its name, UUID and
    processes; ``board``: the board's, for clocks, clocks-event reasons, power, energy, power limit and temperature
    (None where NVML would not give it); ``mig``: a MIG slice, whose board is shared; ``processes``: whether
    ``handle``'s process list is the slice's own."""
    handle: object
    board: object
    matched_by: str
    mig: bool = False
    processes: bool = True
    notes: list = field(default_factory=list)


def open_target(pynvml, uuid: str | None = None, pci_bus_id: str | None = None, name: str | None = None,
                index: int = 0) -> Target:
    """``find_handle``, then the board of a MIG slice. A slice is known by its handle (``nvmlDeviceIsMigDeviceHandle``)
    or by its CUDA name ("... MIG 1g.10gb" on bare metal): one whose lookup ended on its board (a torch that gave the
    board's UUID, or the PCI bus id) is still a slice, and the board's process list (every instance's) is not its."""
    handle, matched = find_handle(pynvml, uuid, pci_bus_id, index)
    named = bare_metal_mig(name)
    try:
        is_mig = bool(pynvml.nvmlDeviceIsMigDeviceHandle(handle))
    except Exception:  # a pynvml without MIG, or a GPU before Ampere (Not Supported): a whole board
        is_mig = False
    if not is_mig:
        target = Target(handle, handle, matched, mig=named, processes=not named)
        if named:
            target.notes.append(f"matched the board ({matched}), not the MIG slice's own instance: its processes are "
                                f"every instance's, not counted")
        return target
    try:
        board = pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
    except Exception as e:
        return Target(handle, None, matched, mig=True,
                      notes=[f"board readings: NVML gave no board for the MIG instance ({error_text(e)})"])
    return Target(handle, board, matched, mig=True)


def self_on_gpu() -> bool:
    """Whether this process holds a CUDA context (torch initialised CUDA), without importing torch."""
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:
        return False


def other_gpu_processes(procs: list[dict], own_pid: int, root: str | Path = "/",
                        on_gpu: bool | None = None) -> tuple[int, list[dict], str | None]:
    """(how many other processes use the GPU, those of them that can be named, a note when they cannot).

    ``procs``: [{"pid", "used_memory_bytes"}] as NVML lists them (host PIDs); ``root``: whose /proc to
    look the PIDs up in; ``on_gpu``: whether this process holds a CUDA context (default: ask torch)."""
    pids = [p["pid"] for p in procs]
    if own_pid in pids or not procs:
        others = [p for p in procs if p["pid"] != own_pid]
        return len(others), others, None
    if all((Path(root) / "proc" / str(pid)).exists() for pid in pids):
        return len(procs), list(procs), None  # one PID namespace, and this process is not on this GPU
    on_gpu = self_on_gpu() if on_gpu is None else on_gpu
    count = max(len(procs) - (1 if on_gpu else 0), 0)
    note = (f"NVML lists host PIDs {', '.join(map(str, pids))}, not all visible here: this process runs in its own "
            f"PID namespace (a container without --pid=host), so its PID ({own_pid}) is not among them"
            f"{'; it holds a CUDA context, so one of them is this process' if on_gpu else ''}")
    return count, [], note


def running_processes(pynvml, handle) -> list[dict]:
    return [{"pid": p.pid, "used_memory_bytes": p.usedGpuMemory}
            for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)]


def own_pid() -> int:
    return os.getpid()
