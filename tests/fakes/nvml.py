"""A fake ``pynvml`` mirroring nvidia-ml-py 13's API for the calls this suite makes.

Names, signatures, constants and errors follow the installed ``pynvml.py``: ``NVMLError(value)`` returns
the matching ``NVMLError_*`` subclass, strings come back as ``str``, ``nvmlDeviceGetPciInfo`` returns a
struct whose ``busId`` is a str (the real struct decodes its bytes on access), calls before ``nvmlInit`` (or after the last ``nvmlShutdown``; init is
counted) raise Uninitialized. Readings move with a clock (``clock``, default ``time.monotonic``) from
the moment the module is made: the total-energy counter advances at each GPU's stated power, and a
``clock_drop`` lowers the SM clock (and sets throttle bits) after a given time. Install with
``mp.setitem(sys.modules, "pynvml", fake)``.

A Jetson Orin's GPU is not an NVML device (``nvmlDeviceGetHandleByUUID`` answers Not Found there:
NVIDIA/nvbandwidth#55); only the driver version is answered for it.

MIG (``mig``: a GPU's instances). nvml.h is cited from NVIDIA/go-nvml ``pkg/nvml/nvml.h`` at 2f9e261fe40a (API 13;
the 12.9 and 11.x headers say the same):
- ``nvmlDeviceGetHandleByUUID`` takes a GPU's or a MIG instance's UUID and returns a device or MIG device handle
  (L4699-4721); by index and by PCI bus id there are only GPUs ("A compute device is a single GPU", and the bus-id
  call documents "the target GPU" alone, L4746-4779), so a MIG-enabled board's bus id gives the board.
- ``nvmlDeviceIsMigDeviceHandle`` (L13359-13378), ``nvmlDeviceGetDeviceHandleFromMigDeviceHandle`` (L13468-13483),
  ``nvmlDeviceGetGpuInstanceId`` (L13381-13399); name and UUID of a MIG handle are the instance's (L4790, L5191).
- Utilization: "On MIG-enabled GPUs, querying device utilization rates is not currently supported" (L7096; Not
  Supported on an A100 in MIG mode, XuehaiPan/nvitop#5), on the board's handle and the instances' alike.
- Running processes: an instance's handle lists its own; the board's handle "returns aggregate information, only if
  the caller has appropriate privileges" (L7399-7404): ``mig_privileged`` False (the default: a user of one slice)
  answers No Permission there, as gpustat reports it ("lack of permission on the root GPU", wookayin/gpustat#102).
- Clocks, clocks-event reasons, power, energy, power limit and temperature document no MIG handle at all ("usable
  with some restrictions", L13359-13378, names none); they are the board's (one SM clock for every instance:
  NVIDIA/dcgm-exporter#50; whole-GPU power per instance: NVIDIA/dcgm-exporter#257). On an instance's handle this
  fake answers Not Supported, stricter than any driver may be: code that reads them from the board's handle (the
  documented way) works on either answer, and code that relies on the undocumented one fails here.
"""
from __future__ import annotations

import time
import types
from dataclasses import dataclass, field

from .devices import FakeDevice

NVML_SUCCESS, NVML_ERROR_UNINITIALIZED, NVML_ERROR_INVALID_ARGUMENT, NVML_ERROR_NOT_SUPPORTED = 0, 1, 2, 3
NVML_ERROR_NO_PERMISSION, NVML_ERROR_NOT_FOUND, NVML_ERROR_DRIVER_NOT_LOADED = 4, 6, 9
NVML_ERROR_LIBRARY_NOT_FOUND, NVML_ERROR_FUNCTION_NOT_FOUND, NVML_ERROR_UNKNOWN = 12, 13, 999
_ERRORS = {1: ("Uninitialized", "Uninitialized"), 2: ("InvalidArgument", "Invalid Argument"),
           3: ("NotSupported", "Not Supported"), 4: ("NoPermission", "Insufficient Permissions"),
           6: ("NotFound", "Not Found"), 9: ("DriverNotLoaded", "Driver Not Loaded"),
           12: ("LibraryNotFound", "NVML Shared Library Not Found"),
           13: ("FunctionNotFound", "Function Not Found"), 999: ("Unknown", "Unknown Error")}
CLOCK_EVENT_REASONS = {  # pynvml's nvmlClocksEventReason* bits
    "GpuIdle": 0x1, "ApplicationsClocksSetting": 0x2, "SwPowerCap": 0x4, "HwSlowdown": 0x8, "SyncBoost": 0x10,
    "SwThermalSlowdown": 0x20, "HwThermalSlowdown": 0x40, "HwPowerBrakeSlowdown": 0x80, "DisplayClockSetting": 0x100,
}
# nvidia-ml-py 13's pynvml.py also names 0x2 UserDefinedClocks (an alias, in both families), and keeps in the older
# nvmlClocksThrottleReason* family two bits the event family lacks (the throttle family's All is 0x7ff)
CLOCK_EVENT_ALIASES = {"UserDefinedClocks": 0x2}
THROTTLE_ONLY_REASONS = {"BoardLimit": 0x200, "Reliability": 0x400}


# Fixture readings where the registry has no number (H100s list no clock): not specs, not measurements.
FAKE_SM_CLOCK_MHZ, FAKE_MEM_CLOCK_MHZ, FAKE_POWER_LIMIT_FACTOR = 1500.0, 2600.0, 1.4


@dataclass
class ClockDrop:
    """After ``after_s`` seconds the SM clock reads ``to_mhz`` and the clocks-event mask gains ``reasons``."""
    after_s: float
    to_mhz: float
    reasons: tuple[str, ...] = ("HwSlowdown",)


@dataclass
class _Gpu:
    dev: FakeDevice
    sm_clock_mhz: float
    mem_clock_mhz: float
    power_limit_w: float
    processes: list = field(default_factory=list)  # [(pid, used bytes)]
    instances: list = field(default_factory=list)  # its MIG instances (_Mig), when MIG is enabled


@dataclass
class _Mig:
    """A MIG device handle: one compute instance of a board (``parent``), GPU instance ``gi``."""
    dev: FakeDevice
    parent: _Gpu
    gi: int
    processes: list = field(default_factory=list)


class NVMLError(Exception):
    """As pynvml's: ``NVMLError(code)`` is an instance of the code's subclass (``NVMLError_NotSupported``)."""
    _valClassMapping: dict = {}

    def __new__(typ, value):
        if typ is NVMLError:
            typ = NVMLError._valClassMapping.get(value, typ)
        obj = Exception.__new__(typ)
        obj.value = value
        return obj

    def __str__(self):
        return _ERRORS.get(self.value, ("", f"NVML Error with code {self.value}"))[1]

    def __eq__(self, other):
        return getattr(other, "value", None) == self.value

    __hash__ = Exception.__hash__


def _subclass(value: int, suffix: str):
    return type(f"NVMLError_{suffix}", (NVMLError,), {"__new__": lambda typ, *a: NVMLError.__new__(typ, value)})


NVML_ERROR_CLASSES = {value: _subclass(value, suffix) for value, (suffix, _) in _ERRORS.items()}
NVMLError._valClassMapping.update(NVML_ERROR_CLASSES)


def _pci_tuple(text: str) -> tuple[int, int, int]:
    """"00000000:41:00.0" or "0000:41:00.0" or "41:00.0" -> (domain, bus, device)."""
    parts = text.split(".")[0].split(":")
    parts = ["0"] * (3 - len(parts)) + parts
    return tuple(int(x, 16) for x in parts)


def make_fake_pynvml(gpus: list[FakeDevice], *, unsupported=(), throttle_reasons=(),
                     clock_drop: ClockDrop | None = None, processes: dict | None = None, driver: str | None = None,
                     init_error: int | None = None, clock=time.monotonic,
                     energy_start_mj: int = 123_456_789, app_clock_mhz: float | None = None,
                     mig: dict | None = None, mig_privileged: bool = False) -> types.ModuleType:
    """A ``pynvml`` module for ``gpus`` (NVML's own order, i.e. the whole machine, not CUDA_VISIBLE_DEVICES).

    unsupported: names of functions that raise Not Supported (e.g. "nvmlDeviceGetTotalEnergyConsumption");
    throttle_reasons: clocks-event reason names set from the start; processes: {gpu index: [(pid, bytes)]};
    init_error: an NVML_ERROR_* code nvmlInit raises (no library, no driver); app_clock_mhz: SM applications clocks a
    user set (``nvidia-smi -ac``); the default applications clock is the SM clock's max; mig: {gpu index: [its MIG
    instances as FakeDevices]} (the board runs in MIG mode; ``processes`` takes an instance's UUID as a key too);
    mig_privileged: the caller may list every instance's processes on the board's handle."""
    m = types.ModuleType("pynvml")
    m.__file__ = "<fake pynvml>"
    Err = m.NVMLError = NVMLError
    for cls in NVML_ERROR_CLASSES.values():
        setattr(m, cls.__name__, cls)
    for name, value in globals().items():
        if name.startswith("NVML_ERROR_") or name == "NVML_SUCCESS":
            setattr(m, name, value)
    m.NVML_TEMPERATURE_GPU, m.NVML_CLOCK_GRAPHICS, m.NVML_CLOCK_SM, m.NVML_CLOCK_MEM = 0, 0, 1, 2
    for reason, bit in {**CLOCK_EVENT_REASONS, **CLOCK_EVENT_ALIASES}.items():
        setattr(m, f"nvmlClocksEventReason{reason}", bit)
    for reason, bit in {**CLOCK_EVENT_REASONS, **CLOCK_EVENT_ALIASES, **THROTTLE_ONLY_REASONS}.items():
        setattr(m, f"nvmlClocksThrottleReason{reason}", bit)
    m.nvmlClocksEventReasonNone = m.nvmlClocksThrottleReasonNone = 0
    m.nvmlClocksEventReasonAll = sum(CLOCK_EVENT_REASONS.values())
    m.nvmlClocksThrottleReasonAll = sum(CLOCK_EVENT_REASONS.values()) + sum(THROTTLE_ONLY_REASONS.values())
    t0 = clock()
    state = {"inits": 0}
    has_jetson = any(d.is_jetson for d in gpus)
    table = [_Gpu(d, d.gpu_clock_mhz or FAKE_SM_CLOCK_MHZ, FAKE_MEM_CLOCK_MHZ, d.power_w * FAKE_POWER_LIMIT_FACTOR,
                  list((processes or {}).get(i, ()))) for i, d in enumerate(gpus) if not d.is_jetson]
    uuids = [d.uuid for devs in (mig or {}).values() for d in devs]
    if any(not u.upper().startswith("MIG-") for u in uuids) or len(set(uuids)) != len(uuids) or \
            set(uuids) & {g.dev.uuid for g in table}:
        # nvmlDeviceGetUUID on a MIG handle: "globally unique UUIDs which can be used to identify MIG devices across
        # both GPU and MIG devices" (nvml.h L5191-5192), spelt "MIG-..." (NVML change log, R470)
        raise ValueError(f"MIG instance UUIDs must be unique, start with MIG- and differ from every GPU's: {uuids}")
    for i, devs in (mig or {}).items():
        g = table[i]
        g.instances = [_Mig(d, g, gi, list((processes or {}).get(d.uuid, ()))) for gi, d in enumerate(devs, start=1)]
    base_mask = sum(CLOCK_EVENT_REASONS[r] for r in throttle_reasons)
    if app_clock_mhz is not None:
        # nvmlDeviceSetApplicationsClocks takes only clocks the board supports (NVML API reference: "See
        # nvmlDeviceGetSupportedGraphicsClocks"; others give NVML_ERROR_INVALID_ARGUMENT): none above its max
        for g in table:
            if app_clock_mhz > g.sm_clock_mhz:
                raise ValueError(f"applications clock {app_clock_mhz} MHz is above {g.dev.key}'s max "
                                 f"{g.sm_clock_mhz:g} MHz: NVML refuses it")
        # the clocks now sit at the setting, and NVML before 13 says so (bit 0x2, "limited by current setting of
        # applications clocks"; NVML 13's nvml.h marks the bit "@deprecated No longer used", so a driver of 13 may not)
        if any(app_clock_mhz < g.sm_clock_mhz for g in table):
            base_mask |= CLOCK_EVENT_REASONS["ApplicationsClocksSetting"]
    unsupported = set(unsupported)

    def api(fn):
        def call(*args):
            if state["inits"] <= 0:
                raise Err(NVML_ERROR_UNINITIALIZED)
            if fn.__name__ in unsupported:
                raise Err(NVML_ERROR_NOT_SUPPORTED)
            args = [a.decode() if isinstance(a, bytes) else a for a in args]
            return fn(*args)
        call.__name__ = fn.__name__
        setattr(m, fn.__name__, call)
        return call

    def nvmlInit():
        if init_error is not None:
            raise Err(init_error)
        state["inits"] += 1

    def nvmlShutdown():
        if state["inits"] <= 0:
            raise Err(NVML_ERROR_UNINITIALIZED)
        state["inits"] -= 1

    m.nvmlInit, m.nvmlShutdown = nvmlInit, nvmlShutdown

    def dropped() -> bool:
        return clock_drop is not None and clock() - t0 >= clock_drop.after_s

    def handle(h) -> _Gpu:
        """A board's handle: an instance's is refused where nvml.h documents no MIG handle (see the docstring)."""
        if isinstance(h, _Mig):
            raise Err(NVML_ERROR_NOT_SUPPORTED)
        if not isinstance(h, _Gpu):
            raise Err(NVML_ERROR_INVALID_ARGUMENT)
        return h

    def any_handle(h):
        """A board's or an instance's handle (the calls nvml.h documents for both)."""
        if not isinstance(h, (_Gpu, _Mig)):
            raise Err(NVML_ERROR_INVALID_ARGUMENT)
        return h

    @api
    def nvmlSystemGetDriverVersion():
        return driver or ("540.4.0" if has_jetson and not table else "580.95.05")

    @api
    def nvmlDeviceGetCount():
        return len(table)

    @api
    def nvmlDeviceGetHandleByIndex(index):
        if not 0 <= index < len(table):
            raise Err(NVML_ERROR_INVALID_ARGUMENT)
        return table[index]

    @api
    def nvmlDeviceGetHandleByUUID(uuid):
        for g in table:
            if g.dev.uuid == uuid:
                return g
            for inst in g.instances:
                if inst.dev.uuid == uuid:
                    return inst
        raise Err(NVML_ERROR_NOT_FOUND)

    @api
    def nvmlDeviceIsMigDeviceHandle(h):
        return int(isinstance(any_handle(h), _Mig))

    @api
    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(h):
        if not isinstance(any_handle(h), _Mig):
            raise Err(NVML_ERROR_INVALID_ARGUMENT)
        return h.parent

    @api
    def nvmlDeviceGetGpuInstanceId(h):
        if not isinstance(any_handle(h), _Mig):
            raise Err(NVML_ERROR_INVALID_ARGUMENT)
        return h.gi

    @api
    def nvmlDeviceGetHandleByPciBusId(bus_id):
        for g in table:
            if _pci_tuple(g.dev.pci_bus_id) == _pci_tuple(bus_id):
                return g
        raise Err(NVML_ERROR_NOT_FOUND)

    @api
    def nvmlDeviceGetName(h):
        return any_handle(h).dev.cuda_name

    @api
    def nvmlDeviceGetUUID(h):
        return any_handle(h).dev.uuid

    @api
    def nvmlDeviceGetPciInfo(h):
        g = handle(h)
        domain, bus, device = _pci_tuple(g.dev.pci_bus_id)
        bus_id = g.dev.pci_bus_id  # str: nvmlPciInfo_t's __getattribute__ decodes its char arrays (_PrintableStructure)
        return types.SimpleNamespace(busId=bus_id, busIdLegacy=bus_id, domain=domain, bus=bus, device=device,
                                     pciDeviceId=0x233010DE, pciSubSystemId=0)

    @api
    def nvmlDeviceGetPowerUsage(h):
        return int(handle(h).dev.power_w * 1000)

    @api
    def nvmlDeviceGetTotalEnergyConsumption(h):
        return energy_start_mj + int(handle(h).dev.power_w * (clock() - t0) * 1000)

    @api
    def nvmlDeviceGetEnforcedPowerLimit(h):
        return int(handle(h).power_limit_w * 1000)

    @api
    def nvmlDeviceGetTemperature(h, sensor):
        return handle(h).dev.temperature_c

    @api
    def nvmlDeviceGetClockInfo(h, kind):
        g = handle(h)
        if kind == m.NVML_CLOCK_MEM:
            return int(g.mem_clock_mhz)
        now = clock_drop.to_mhz if dropped() else g.sm_clock_mhz
        return int(min(now, app_clock_mhz) if app_clock_mhz is not None else now)

    @api
    def nvmlDeviceGetMaxClockInfo(h, kind):
        g = handle(h)
        return int(g.mem_clock_mhz if kind == m.NVML_CLOCK_MEM else g.sm_clock_mhz)

    # nvmlDeviceGetApplicationsClock / nvmlDeviceGetDefaultApplicationsClock (NVML API reference, Device Queries:
    # "For Kepler or newer fully supported devices"; a device without them answers Not Supported, as ``unsupported``
    # makes it): the clock ``-ac`` set, and the one it resets to
    @api
    def nvmlDeviceGetApplicationsClock(h, kind):
        g = handle(h)
        if kind == m.NVML_CLOCK_MEM:
            return int(g.mem_clock_mhz)
        return int(app_clock_mhz if app_clock_mhz is not None else g.sm_clock_mhz)

    @api
    def nvmlDeviceGetDefaultApplicationsClock(h, kind):
        g = handle(h)
        return int(g.mem_clock_mhz if kind == m.NVML_CLOCK_MEM else g.sm_clock_mhz)

    @api
    def nvmlDeviceGetUtilizationRates(h):
        g = any_handle(h)
        if isinstance(g, _Mig) or g.instances:  # not on MIG-enabled GPUs (nvml.h L7096)
            raise Err(NVML_ERROR_NOT_SUPPORTED)
        return types.SimpleNamespace(gpu=g.dev.utilization_pct, memory=g.dev.utilization_pct // 2)

    @api
    def nvmlDeviceGetCurrentClocksEventReasons(h):
        handle(h)
        extra = sum(CLOCK_EVENT_REASONS[r] for r in clock_drop.reasons) if dropped() else 0
        return base_mask | extra

    m.nvmlDeviceGetCurrentClocksThrottleReasons = m.nvmlDeviceGetCurrentClocksEventReasons

    def listed(processes, gi):
        none = 0xFFFFFFFF  # nvmlProcessInfo_t: "gpuInstanceId is set to 0xFFFFFFFF otherwise" (nvml.h L316-319)
        return [types.SimpleNamespace(pid=pid, usedGpuMemory=used, gpuInstanceId=none if gi is None else gi,
                                      computeInstanceId=none if gi is None else 0) for pid, used in processes]

    @api
    def nvmlDeviceGetComputeRunningProcesses(h):
        g = any_handle(h)
        if isinstance(g, _Mig):
            return listed(g.processes, g.gi)
        if not g.instances:
            return listed(g.processes, None)
        if not mig_privileged:  # the board's aggregate, "only if the caller has appropriate privileges"
            raise Err(NVML_ERROR_NO_PERMISSION)
        return [p for inst in g.instances for p in listed(inst.processes, inst.gi)]

    m.fake_state = state  # tests read init counts (every session must close)
    return m
