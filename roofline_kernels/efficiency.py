"""The efficiency sweep: this device's measured fraction of its roof over a grid of GEMV/GEMM shapes.

For each precision with a real kernel here (emulated paths have no roof worth a fraction), shapes of
a grid (M in 1..16, N and K in 1024..8192, in octaves) are measured cold, cheapest first, until the precision's
share of the wall budget is spent: what is cut is the expensive end, and the model says which shapes
it has. Efficiency is against the roof ``measure_kernel`` holds the kernel to (the calibrated
roofline, or the memory roof alone where the compute peak is a software kernel's speed), so it is
``roofline.efficiency``'s job to apply it to the same roof. The model rides in the calibration
profile (``details["efficiency"]``), tied to that calibration: a new calibration starts a new sweep.

``held_out_shapes`` are shapes off the grid, for scoring the model on what it never saw.
"""
from __future__ import annotations

import datetime as dt
import itertools
import time

from roofline import predict
from roofline.efficiency import EfficiencyModel
from roofline.predict import UnsupportedPathError

from . import telemetry
from .measure import measure_kernel
from .ops import GEMM_KERNELS, UnsupportedKernel, make_gemm
from .timer import BudgetExceeded

GRID_M = (1, 2, 4, 8, 16)  # paths switch kernels between M = 1 and M > 1: the regime needs its points
GRID_NK = (1024, 2048, 4096, 8192)  # 8192^2 fp32 is 256 MiB: larger would not fit a small board's sweep
HELD_OUT = [(1, 1536, 3072), (1, 3072, 1536), (1, 5632, 2048), (1, 2560, 6144), (1, 6144, 1280), (1, 1280, 5120),
            (3, 3072, 3072), (3, 6144, 2560), (6, 1536, 6144), (6, 6144, 1536), (12, 2560, 2560), (12, 5120, 1280)]
PER_SHAPE_S = 1.5  # one shape's timing budget (10 cold samples at least)
DEFAULT_BUDGET_S = 60.0


def grid_shapes() -> list[tuple[int, int, int]]:
    """The grid in the order it is measured: a coarse grid spanning every corner first (cheapest first), then
    the points between (cheapest first), so a budget that runs out leaves the range covered, coarsely."""
    coarse_m, coarse_nk = GRID_M[::2], (GRID_NK[0], GRID_NK[-2], GRID_NK[-1])
    shapes = list(itertools.product(GRID_M, GRID_NK, GRID_NK))
    return sorted(shapes, key=lambda s: (not (s[0] in coarse_m and s[1] in coarse_nk and s[2] in coarse_nk),
                                         s[0] * s[1] * s[2]))


def sweep_precisions(info, hw) -> list[tuple[str, dict]]:
    """The GEMM kernels that build here, are not emulated, and have a roof on ``hw`` (a probe at 256^3)."""
    out = []
    for label, kwargs in GEMM_KERNELS:
        try:
            k = make_gemm(16, 256, 256, device=info.torch_device, target="cpu" if info.kind == "cpu" else "cuda",
                          **kwargs)
            predict(k.cost, hw, "calibrated")
        except (UnsupportedKernel, UnsupportedPathError, ValueError):
            continue
        if not k.emulated:
            out.append((label, kwargs))
    return out


def _measure(label, kwargs, shape, info, hw):
    m_, n, k = shape
    kernel = make_gemm(m_, n, k, device=info.torch_device, target="cpu" if info.kind == "cpu" else "cuda",
                       op="gemv" if m_ == 1 else "gemm", **kwargs)
    m = measure_kernel(kernel, info, hw, "cold", "calibrated", warmup_ms=5, rep_ms=25, with_telemetry=False,
                       max_wall_s=PER_SHAPE_S)
    return kernel, m


def run_sweep(info, hw, shapes=None, precisions=None, budget_s: float = DEFAULT_BUDGET_S,
              progress=lambda s: None) -> tuple[EfficiencyModel, list[dict]]:
    """(model, rows): the shapes measured within the budget, per precision, in ``shapes``' order."""
    shapes = shapes or grid_shapes()
    precisions = precisions if precisions is not None else sweep_precisions(info, hw)
    model = EfficiencyModel()
    rows, skipped = [], {}
    t_start = time.perf_counter()
    contention = {}
    for i, (label, kwargs) in enumerate(precisions):
        # a busy neighbour slows every shape of a precision alike: the model would learn the neighbour
        flags = telemetry.snapshot(info.kind, busy_interval_s=0.05, info=info).get("contention") or []
        if flags:
            contention[label] = list(flags)
        share_end = time.perf_counter() + (budget_s - (time.perf_counter() - t_start)) / (len(precisions) - i)
        done = 0
        for shape in shapes:
            if time.perf_counter() > share_end:
                skipped[label] = f"{len(shapes) - done} shapes past its {budget_s / len(precisions):.0f} s share"
                break
            try:
                kernel, m = _measure(label, kwargs, shape, info, hw)
            except (UnsupportedKernel, BudgetExceeded, ValueError) as e:
                skipped.setdefault(f"{label} {'x'.join(map(str, shape))}", str(e)[:160])
                done += 1
                continue
            done += 1
            eff = m.efficiency  # against the roof measure_kernel held it to
            roof = "memory" if m.memory_roof_only else "full"
            model.add(kernel.op, kernel.precision, kernel.cost.shape, eff, roof)
            rows.append({"precision": kernel.precision, "shape": list(shape), "median_s": m.timing.median_s,
                         "roof_s": m.predicted_time_s, "roof": roof, "efficiency": eff,
                         "rel_iqr": m.timing.rel_iqr})
        progress(f"efficiency sweep {label}: {sum(r['precision'] == label for r in rows)} shapes")
    model.meta.update(measured=len(rows), seconds=round(time.perf_counter() - t_start, 1), budget_s=budget_s,
                      when=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                      grid={"m": list(GRID_M), "nk": list(GRID_NK)}, skipped=skipped, contention=contention)
    return model, rows


def measure_held_out(model: EfficiencyModel, info, hw, precisions, shapes=HELD_OUT, progress=lambda s: None):
    """(op, precision, shape, roof time, measured median) on shapes off the grid, for ``roofline.efficiency.score``."""
    out = []
    for label, kwargs in precisions:
        for shape in shapes:
            try:
                kernel, m = _measure(label, kwargs, shape, info, hw)
            except (UnsupportedKernel, BudgetExceeded, ValueError):
                continue
            out.append((kernel.op, kernel.precision, dict(kernel.cost.shape), m.predicted_time_s, m.timing.median_s))
        progress(f"held-out {label}: {sum(r[1] == label for r in out)} shapes")
    return out


def attach(cal, model: EfficiencyModel) -> None:
    """Store the model in the calibration profile it was measured against."""
    model.meta["calibration"] = cal.timestamp
    cal.details["efficiency"] = model.to_dict()
