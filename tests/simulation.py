"""A simulated device: `pytest -m b10 --simulate gb10` runs the hardware suite here as it would run there.

What is real: detection (``roofline_kernels.device.detect``) over fake CUDA properties, a fake ``pynvml`` and,
for a Jetson, a fake sysfs tree and ``nvpmodel`` (tests/fakes); the kernel builders' path choices,
capability gates and shape rules for that device; torchao's configs built with the device's
capability and their forward run on the CPU where torchao allows it ("not probed" where not); the
correctness check of every kernel that runs; tolerances, judge, skips and report.

What is synthesised: kernel times (the roofline time at a stated efficiency per bound) and the
calibration (datasheet roofs at a stated efficiency). Both are marked SIMULATED everywhere (report
banner, every record, the CSV/JSON column), and nothing is written to a benchmark history, a
calibration store or a baseline. Kernels are built at a small probe shape of the same path and carry
the full shape's cost, so the dry run stays seconds.

Faults (``--simulate-fault``) prove the suite catches what it exists for: ``above-roof`` (a
measurement faster than physics), ``below-floor`` (a slow kernel), ``wrong-result`` (a kernel whose
output is off).
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FAULTS = ("above-roof", "below-floor", "wrong-result")
DEFAULT_EFFICIENCY = {"memory": 0.80, "compute": 0.70}  # stated, not measured: a plausible healthy board
CALIBRATION_EFFICIENCY = 0.9  # the simulated calibration reaches this share of each datasheet roof
REALTIME_REGION_S = 0.25  # a power-mode sweep's synthesised timed region lasts at least this long


def simulatable_keys() -> list[str]:
    from roofline import REGISTRY
    return [k for k, hw in REGISTRY.items() if hw.kind in ("gpu", "jetson")]


@dataclass
class Simulation:
    key: str
    fault: str | None = None
    power_mode: str | None = None  # a Jetson's current nvpmodel mode (default: the board's default)
    torch_cuda: bool = True        # False: torch without CUDA on the board (a CPU wheel on a Jetson)
    root: str = "/"
    efficiency: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_EFFICIENCY))
    # the power-mode sweep sets this: the timer then lasts the synthesised time, so the region monitor
    # integrates the (fixture) rails over it and the energy per call is power x time, as on a board
    realtime_energy: bool = False
    _mp: object = None

    def install(self):
        """Fake CUDA (and NVML, and a Jetson's sysfs and nvpmodel) for this process (tests/fakes)."""
        import pytest
        from roofline import get_hardware
        from tests.fakes.devices import SIMULATED
        from tests.fakes.install import install_device
        self.key = get_hardware(self.key).key
        if self.key not in SIMULATED:
            raise ValueError(f"cannot simulate {self.key!r}; simulatable: {', '.join(sorted(SIMULATED))}")
        if self.power_mode and not SIMULATED[self.key].is_jetson:
            raise ValueError(f"--simulate-power-mode {self.power_mode!r}: {self.key} is not a Jetson")
        self._mp = pytest.MonkeyPatch()
        root = Path(tempfile.mkdtemp(prefix=f"roofline-sim-{self.key}-"))
        install_device(self._mp, self.key, root, mode=self.power_mode, cuda=self.torch_cuda)
        self.root = str(root)
        return self

    def uninstall(self):
        import shutil
        if self._mp is not None:
            self._mp.undo()
        if self.root != "/":
            shutil.rmtree(self.root, ignore_errors=True)

    def detect(self, override=None):
        from roofline_kernels.device import detect
        info = detect(override, root=self.root)
        return dataclasses.replace(info, simulated=self.key)

    # --- synthesised numbers ---------------------------------------------------------------------
    def calibration(self, info, hw):
        from roofline import Calibration
        e = CALIBRATION_EFFICIENCY
        return Calibration(hardware=hw.key, peaks_tflops={c: s.value * e for c, s in hw.peaks.items()},
                           bandwidth_gbs=hw.bandwidth.value * e, device=info.to_dict(), versions=info.versions,
                           timestamp="SIMULATED", path="SIMULATED (not stored)",
                           details={"SIMULATED": True, "quick": True, "dram_spread": 0.0, "peak_spread": {},
                                    "note": f"synthesised: {e:.0%} of each datasheet roof of {hw.key}"})

    def timer(self, kernel, hw, peaks, mode):
        """The timing a healthy board would give at the stated efficiency (or a planted fault)."""
        from roofline_kernels.measure import predict_kernel
        from roofline_kernels.timer import summarize
        roof_s, pred, _ = predict_kernel(kernel, hw, "datasheet")  # every simulatable entry has a datasheet
        bound = (pred or {}).get("bound", "memory")
        eff = {"above-roof": 1.5, "below-floor": 0.02}.get(self.fault, self.efficiency[bound])
        t = roof_s / eff
        # enough calls that the monitor's own overhead (ms) is small beside the region it integrates
        calls = max(25, int(np.ceil(REALTIME_REGION_S / t))) if self.realtime_energy else 25
        samples = t * (1 + 0.004 * np.linspace(-1, 1, calls))  # a tight, deterministic spread
        if self.realtime_energy:
            time.sleep(float(samples.sum()))
        return dataclasses.replace(summarize(samples, mode, "simulated"), converged=True)

    def spot_builder(self, info):
        """A builder for ``roofline_kernels.spot.spot_check`` (``measure --simulate KEY``): each kernel built as the
        suite builds it on this device (``probe_kernel``: CUDA's rules at the full shape, a probe shape of the same
        path carrying the full cost), wrapped for a planted fault."""
        from roofline_kernels.spot import build
        from tests.validation.cases import Case

        def builder(op, shape, kwargs, device, target):
            full = {"m": 1, **shape} if op == "gemv" else dict(shape)
            label = kwargs.get("precision") or f"{kwargs.get('weight')}/{kwargs.get('act')}"
            case = Case(op, "x".join(map(str, full.values())), full, label, dict(kwargs), None)
            kernel = probe_kernel(lambda c, i: build(c.op, c.shape, c.kwargs, device, target), case, info)
            return self.wrap_kernel(kernel)
        return builder

    def wrap_kernel(self, kernel):
        if self.fault != "wrong-result":
            return kernel
        call = kernel.call

        def wrong(inputs):
            out = call(inputs)
            return [o * 1.25 for o in out] if isinstance(out, list) else out * 1.25  # a grouped kernel: every expert
        return dataclasses.replace(kernel, call=wrong)


PROBE_GROUPS = 2  # a grouped GEMM's experts a probe keeps (whether it is fused is decided at the full count:
# ``kernel.grouped_mm_refusal``, the 1024-group rule among them)
PROBE_MODULUS = 256  # every shape rule's multiple divides it (tests/fakes/cuda_rules.py checks that)


def probe_dims(m: int, n: int, k: int) -> tuple[int, int, int]:
    """A small shape that every CUDA shape rule judges as it judges (m, n, k): N and K keep their residue modulo
    ``PROBE_MODULUS`` (so N % 16, K % 32, K % 128 ... come out the same), M stays a GEMV, stays <= 16 or > 16."""
    def small(v, cap):
        return v if v <= cap else cap + v % cap
    return small(m, 32), small(n, PROBE_MODULUS), small(k, PROBE_MODULUS)


def probe_kernel(build, case, device_info):
    """Build ``case``'s kernel at a small probe shape of the same path, carrying the full shape's cost.

    What CUDA refuses is checked at the full shape first (``kernel.gemm_refusal``, naming the full shape), and
    the probe shape keeps every shape rule's verdict (``probe_dims``), so the fakes' own rule table
    (tests/fakes/cuda_rules.py) judges the probe's calls as the real device would judge the full ones."""
    from roofline_kernels.ops import UnsupportedKernel, gemm_formats, gemm_refusal, priced_gemm
    from roofline import attention
    s = dict(case.shape)
    if case.op == "attention":
        small = dict(s, seq_kv=min(s["seq_kv"], 256), seq_q=1 if s["seq_q"] == 1 else min(s["seq_q"], 256))
        kernel = build(dataclasses.replace(case, shape=small), device_info)
        c = kernel.cost
        full = attention(s["batch"], s["heads"], s["kv_heads"], s["seq_q"], s["seq_kv"], s["head_dim"],
                         act=c.act_format, kv=c.weight_format or c.act_format, causal=s["seq_q"] > 1)
        return dataclasses.replace(kernel, cost=full)
    w, a, label = gemm_formats(**case.kwargs)
    import torch
    why = gemm_refusal(w, a, s["m"], s["n"], s["k"], tuple(torch.cuda.get_device_capability()))
    if why:
        raise UnsupportedKernel(label, "cuda", why)
    m, n, k = probe_dims(s["m"], s["n"], s["k"])
    groups = s.get("groups", 1)  # a grouped GEMM's probe keeps a few of its experts, each at the probe shape
    probe = dict(m=m, n=n, k=k) | ({"groups": min(groups, PROBE_GROUPS)} if case.op == "grouped_gemm" else {})
    kwargs = dict(case.kwargs)
    if case.op == "grouped_gemm":  # fused or not, as the full shape decides (its 1024-group rule among them)
        from roofline_kernels.kernel import grouped_mm_refusal
        kwargs["fused"] = grouped_mm_refusal(w, a, groups, s["k"], tuple(torch.cuda.get_device_capability())) or True
    kernel = build(dataclasses.replace(case, shape=probe, kwargs=kwargs), device_info)
    c = kernel.cost
    full, _ = priced_gemm(case.op, s["m"], s["n"], s["k"], c.weight_format, c.act_format, c.out_format, "cuda",
                          groups)
    if case.op == "grouped_gemm" and probe["groups"] != groups:  # said of the full kernel: its experts, its launches
        kept = probe["groups"]
        fused = kernel.path.startswith("torch._grouped_mm")  # one call whatever its experts
        launches = kernel.launches if fused else kernel.launches // kept * groups
        path = kernel.path.replace(f"{kept} x ", f"{groups} x ", 1).replace(f"{kept} experts", f"{groups} experts", 1)
        return dataclasses.replace(kernel, cost=full, launches=launches, path=f"{path} (probe: {kept} experts)")
    return dataclasses.replace(kernel, cost=full)  # weight_elements stay the probe's: they weigh its storage
