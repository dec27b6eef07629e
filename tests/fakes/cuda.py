"""Fake ``torch.cuda`` that reports simulated devices, for detection and capability gates.

Only queries are patched: ``is_available``, ``device_count``, ``current_device``, ``is_initialized``,
``get_device_properties``, ``get_device_capability``, ``get_device_name`` and ``torch.version.cuda``.
Nothing allocates on "cuda": on this CPU build of torch any real CUDA call still raises, so a simulated
run that tried to allocate on the device would fail loudly instead of pretending.
"""
from __future__ import annotations

from dataclasses import dataclass

from .devices import CUDA_RUNTIME, FakeDevice


class FakeCUuuid:
    """torch's ``_CUuuid``: ``str()`` gives the bare 8-4-4-4-12 form, ``bytes`` the 16 bytes."""

    def __init__(self, nvml_uuid: str):
        self._text = nvml_uuid.split("-", 1)[1] if nvml_uuid.upper().startswith(("GPU-", "MIG-")) else nvml_uuid

    def __str__(self) -> str:
        return self._text

    @property
    def bytes(self) -> list[int]:
        return list(bytearray.fromhex(self._text.replace("-", "")))


@dataclass(frozen=True)
class FakeDeviceProperties:
    """The fields of ``torch.cuda.get_device_properties`` (torch 2.13) that this suite reads."""
    name: str
    major: int
    minor: int
    multi_processor_count: int
    total_memory: int
    L2_cache_size: int
    uuid: FakeCUuuid
    pci_domain_id: int
    pci_bus_id: int
    pci_device_id: int
    is_integrated: int
    clock_rate: int  # kHz, 0 where unknown
    warp_size: int = 32
    is_multi_gpu_board: int = 0

    @property
    def gcnArchName(self) -> str:  # torch's CUDA builds alias it to the name
        return self.name


def properties_of(dev: FakeDevice) -> FakeDeviceProperties:
    domain, bus, device = (int(x, 16) for x in dev.pci_bus_id.split(".")[0].split(":"))
    return FakeDeviceProperties(
        name=dev.cuda_name, major=dev.capability[0], minor=dev.capability[1], multi_processor_count=dev.sm_count,
        total_memory=dev.memory_bytes, L2_cache_size=dev.l2_bytes or 0, uuid=FakeCUuuid(dev.uuid),
        pci_domain_id=domain, pci_bus_id=bus, pci_device_id=device, is_integrated=int(dev.is_jetson),
        clock_rate=int((dev.gpu_clock_mhz or 0) * 1000))


def install_fake_cuda(mp, devices: list[FakeDevice], current: int = 0,
                      cuda_version: str = CUDA_RUNTIME) -> list[FakeDeviceProperties]:
    """Make ``torch.cuda`` report ``devices`` (as seen through CUDA_VISIBLE_DEVICES: index 0 is the first
    visible one) with ``current`` as the current device. ``mp``: a pytest.MonkeyPatch; ``mp.undo()`` restores."""
    import torch

    devices = list(devices)
    if not devices:
        raise ValueError("install_fake_cuda needs at least one FakeDevice; got none")
    if not 0 <= current < len(devices):
        raise ValueError(f"current={current} is not an index of the {len(devices)} fake devices")
    props = [properties_of(d) for d in devices]

    def index(device=None) -> int:
        if device is None:
            return current
        if isinstance(device, int):
            i = device
        else:
            d = torch.device(device)
            if d.type != "cuda":
                raise ValueError(f"expected a cuda device; got {device!r}")
            i = current if d.index is None else d.index
        if not 0 <= i < len(props):
            raise AssertionError("Invalid device id")  # what torch raises
        return i

    mp.setattr(torch.cuda, "is_available", lambda: True)
    mp.setattr(torch.cuda, "is_initialized", lambda: True)
    mp.setattr(torch.cuda, "device_count", lambda: len(props))
    mp.setattr(torch.cuda, "current_device", lambda: current)
    mp.setattr(torch.cuda, "get_device_properties", lambda device=None: props[index(device)])
    mp.setattr(torch.cuda, "get_device_capability", lambda device=None: (props[index(device)].major,
                                                                          props[index(device)].minor))
    mp.setattr(torch.cuda, "get_device_name", lambda device=None: props[index(device)].name)
    # (free, total) bytes, as torch/cuda/memory.py mem_get_info returns cudaMemGetInfo's: an idle board, all free
    mp.setattr(torch.cuda, "mem_get_info", lambda device=None: (props[index(device)].total_memory,
                                                                props[index(device)].total_memory))
    mp.setattr(torch.version, "cuda", cuda_version)
    return props


class FakeStream:
    """The device's queue, asynchronous as CUDA's is: a launch returns at once and its work ends after the work queued
    before it (``busy_until``, on the host's perf_counter timeline); ``synchronize`` waits until the queue drains.
    While a ``FakeCUDAGraph`` captures, launches are recorded into it instead; its replay queues them all at once."""

    def __init__(self):
        self.busy_until = 0.0
        self.launches = 0
        self.capturing = None  # the FakeCUDAGraph recording launches, or None

    def launch(self, seconds: float, host_s: float = 0.0) -> None:
        import time
        if host_s:  # the host's dispatch of one launch (Python, the dispatcher, a tensor subclass): busy, not queued
            end = time.perf_counter() + host_s
            while time.perf_counter() < end:
                pass
        if self.capturing is not None:
            self.capturing.work.append(seconds)
            return
        self.busy_until = max(time.perf_counter(), self.busy_until) + seconds
        self.launches += 1

    def kernel(self, seconds: float, launches: int = 1, host_s: float = 0.0):
        """A stand-in call: ``launches`` kernels of ``seconds`` device work each, every launch costing the host
        ``host_s`` of dispatch; each returns before its work runs, as a launch does."""
        def call():
            for _ in range(launches):
                self.launch(seconds, host_s)
        return call

    def pending_s(self) -> float:
        """Device work queued and not yet done, now."""
        import time
        return max(0.0, self.busy_until - time.perf_counter())

    def synchronize(self, device=None) -> None:
        import time
        left = self.pending_s()
        if left > 0:
            time.sleep(left)


class FakeEvent:
    """``torch.cuda.Event(enable_timing=True)``: ``record`` marks when the work queued before it ends (not when the
    host called it), as a CUDA event does; a host-synchronous stand-in kernel ends when the host returns."""

    stream: FakeStream = None  # set by install_fake_cuda_events

    def __init__(self, enable_timing=False):
        self.t_ns = None

    def record(self, stream=None):
        import time
        self.t_ns = int(max(time.perf_counter(), self.stream.busy_until) * 1e9)

    def elapsed_time(self, end) -> float:
        return (end.t_ns - self.t_ns) / 1e6  # milliseconds, as CUDA reports


class FakeCUDAGraph:
    """``torch.cuda.CUDAGraph``: capture records the launches; ``replay`` queues them with one launch from the host."""

    def __init__(self, stream: FakeStream):
        self.stream, self.work = stream, []

    def replay(self):
        import time
        self.stream.busy_until = max(time.perf_counter(), self.stream.busy_until) + sum(self.work)
        self.stream.launches += 1


class _SideStream:
    def wait_stream(self, other):
        pass


def install_fake_cuda_events(mp) -> FakeStream:
    """Asynchronous fake events, synchronize, streams and CUDA graphs over one queue; returns it
    (``kernel(seconds, launches, host_s)`` makes calls that launch on it)."""
    import contextlib

    import torch
    stream = FakeStream()
    event = type("FakeEvent", (FakeEvent,), {"stream": stream})

    @contextlib.contextmanager
    def graph(g, **kwargs):
        stream.capturing = g
        try:
            yield g
        finally:
            stream.capturing = None

    mp.setattr(torch.cuda, "Event", event)
    mp.setattr(torch.cuda, "synchronize", stream.synchronize)
    mp.setattr(torch.cuda, "Stream", lambda *a, **k: _SideStream())
    mp.setattr(torch.cuda, "current_stream", lambda *a, **k: _SideStream())
    mp.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    mp.setattr(torch.cuda, "CUDAGraph", lambda *a, **k: FakeCUDAGraph(stream))
    mp.setattr(torch.cuda, "graph", graph)
    return stream
