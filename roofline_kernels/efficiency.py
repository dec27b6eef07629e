"""The efficiency sweep: this device's measured fraction of its roof over GEMV/GEMM shapes, fitted on first use.

For each precision with a real kernel here (emulated paths have no roof worth a fraction), shapes are measured
cold from a candidate grid that spans decode to prefill (M 1..8192 in octaves; N and K 1024..8192 in half
octaves, powers of two and not, so the registry models' projections lie within an octave of a candidate):

1. a **seed** that spans the range (M 1, 16, 256, 2048 at a small and a large N x K), cheapest first;
2. then, until the precision's share of the budget is spent, the candidate where the model is **least sure**
   (``EfficiencyModel.uncertainties``: distance from what was measured times the neighbours' disagreement),
   per the square root of its estimated cost, so a short budget buys the most accuracy.

A candidate one call of which would take longer than ``MAX_CALL_S`` is not measured (the model says "not
measured near" there rather than guess). Efficiency is against the roof ``measure_kernel`` holds the kernel to
(the calibrated roofline, or the memory roof alone where the compute peak is a software kernel's speed), so
it is ``roofline.efficiency``'s job to apply it to the same roof. The model rides in the calibration profile
(``details["efficiency"]``), tied to that calibration: a new calibration starts a new model. It grows with
use: every cold measurement against that calibration (the suite's cases, ``measure``, the spot check, the
quantize pipeline) adds its sample (``learn``), so a shape measured in several runs carries its run-to-run
noise into the uncertainty.

``HELD_OUT`` are shapes off the grid (N and K not powers of two, M 1..2048), for scoring the model on what it
never saw (``calibrate --score``).
"""
from __future__ import annotations

import datetime as dt
import fcntl
import math
import time
from contextlib import contextmanager
from pathlib import Path

from roofline import gemm as gemm_cost, predict
from roofline.atomic import write_json_atomic
from roofline.efficiency import EfficiencyModel, model_of
from roofline.predict import UnsupportedPathError

from . import telemetry
from .measure import measure_kernel
from .ops import GEMM_KERNELS, UnsupportedKernel, make_gemm
from .timer import BudgetExceeded

GRID_M = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)  # decode (M = 1) through prefill
GRID_NK = (1024, 1536, 2048, 3072, 4096, 6144, 8192)  # half octaves: powers of two and not
SEED_M = (1, 16, 256, 2048)
SEED_NK = ((1024, 1024), (4096, 4096))
# off the grid: N and K not powers of two (N % 16 and K % 128 as the packed INT4 kernel needs), M 1..2048
HELD_OUT = [(1, 1744, 2944), (1, 4880, 2176), (1, 2800, 6912), (3, 3312, 1920), (7, 1200, 4480), (24, 2608, 2560),
            (48, 5200, 1408), (96, 1808, 3584), (200, 3008, 1280), (384, 1408, 2944), (700, 2096, 2176),
            (1536, 1296, 1664), (2000, 2512, 1152)]
MAX_CALL_S = 0.3       # one call longer than this is too dear for a sweep: its region is left "not measured near"
PER_SHAPE_S = 2.0      # one shape's timing budget
MIN_REPS = 5           # cold samples per shape (3 when one call takes over LONG_CALL_S)
LONG_CALL_S = 0.05
QUICK_BUDGET_S = 20.0  # the sweep of a quick calibration (the suite's first): keeps `pytest -m cpu` from nothing short
FULL_BUDGET_S = 90.0   # the sweep of a full calibration (`python -m roofline calibrate`)
DEFAULT_BUDGET_S = FULL_BUDGET_S
SCORE_PASSES = 3       # held-out runs a shape: scored against their median; their spread is the noise floor
GUESS_EFFICIENCY = 0.3  # a cost guess before anything of a precision was measured


def default_budget_s(quick: bool) -> float:
    return QUICK_BUDGET_S if quick else FULL_BUDGET_S


def grid_shapes() -> list[tuple[int, int, int]]:
    """Every candidate shape (M, N, K)."""
    return [(m, n, k) for m in GRID_M for n in GRID_NK for k in GRID_NK]


def seed_shapes() -> list[tuple[int, int, int]]:
    return [(m, n, k) for m in SEED_M for n, k in SEED_NK]


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


def _cost(kwargs, shape):
    m, n, k = shape
    return gemm_cost(m, n, k, **kwargs)


def _measure(label, kwargs, shape, info, hw, est_call_s: float | None = None):
    m_, n, k = shape
    kernel = make_gemm(m_, n, k, device=info.torch_device, target="cpu" if info.kind == "cpu" else "cuda",
                       op="gemv" if m_ == 1 else "gemm", **kwargs)
    reps = 3 if est_call_s and est_call_s > LONG_CALL_S else MIN_REPS
    m = measure_kernel(kernel, info, hw, "cold", "calibrated", warmup_ms=5, rep_ms=25, with_telemetry=False,
                       max_wall_s=PER_SHAPE_S, min_reps=reps)
    return kernel, m


class _Costs:
    """Seconds one call of a shape is estimated to take: the nearest measured shape's time scaled by work
    (the larger of the FLOP and byte ratios), or the roof time over a guessed efficiency before any."""

    def __init__(self, kwargs, hw):
        self.kwargs, self.hw, self.seen = kwargs, hw, []

    def add(self, shape, seconds):
        self.seen.append((shape, _cost(self.kwargs, shape), seconds))

    def __call__(self, shape) -> float:
        c = _cost(self.kwargs, shape)
        if not self.seen:
            try:
                return predict(c, self.hw, "calibrated").t_memory_s / GUESS_EFFICIENCY + \
                    predict(c, self.hw, "calibrated").t_compute_s / GUESS_EFFICIENCY
            except (UnsupportedPathError, ValueError):
                return math.inf
        q = [math.log2(x) for x in shape]
        s, c0, t0 = min(self.seen, key=lambda r: math.dist(q, [math.log2(x) for x in r[0]]))
        return t0 * max(c.flops / c0.flops, c.bytes / c0.bytes)


def plan_next(model: EfficiencyModel, op_label: str, precision: str, candidates, cost, remaining_s: float,
              measured: set):
    """The next shape to measure: an unmeasured seed first (cheapest first), else the candidate with the most
    uncertainty per square root of its estimated cost, among those whose cost fits what is left."""
    fits = [c for c in candidates if c not in measured and cost(c) <= MAX_CALL_S and
            cost(c) * MIN_REPS < remaining_s]
    seeds = sorted((c for c in seed_shapes() if c in fits), key=cost)
    if seeds:
        return seeds[0]
    if not fits:
        return None
    u = model.uncertainties("gemm", precision, [{"m": a, "n": b, "k": c} for a, b, c in fits])
    best = max(range(len(fits)), key=lambda i: (u[i] / math.sqrt(cost(fits[i]) + 0.02), -cost(fits[i])))
    return fits[best] if u[best] > 0 else None


def run_sweep(info, hw, shapes=None, precisions=None, budget_s: float = DEFAULT_BUDGET_S,
              progress=lambda s: None, model: EfficiencyModel | None = None) -> tuple[EfficiencyModel, list[dict]]:
    """(model, rows): per precision, shapes measured within its share of the budget. ``shapes`` given: those,
    in that order (no planning); else seed then least-sure-first over ``grid_shapes()``. ``model``: one to
    extend (its samples stay; the sweep adds to them)."""
    precisions = precisions if precisions is not None else sweep_precisions(info, hw)
    model = model or EfficiencyModel()
    rows, skipped = [], {}
    t_start = time.perf_counter()
    contention = {}
    for i, (label, kwargs) in enumerate(precisions):
        # a busy neighbour slows every shape of a precision alike: the model would learn the neighbour
        flags = telemetry.snapshot(info.kind, busy_interval_s=0.05, info=info).get("contention") or []
        if flags:
            contention[label] = list(flags)
        share_end = time.perf_counter() + (budget_s - (time.perf_counter() - t_start)) / (len(precisions) - i)
        costs, measured, dead = _Costs(kwargs, hw), set(), set()
        todo = list(shapes) if shapes is not None else None
        precision = None
        while True:
            left = share_end - time.perf_counter()
            if left <= 0:
                break
            if todo is not None:
                shape = todo.pop(0) if todo else None
            else:
                if precision is None:  # the model key's precision label, known once a kernel was built
                    precision = make_gemm(1, 256, 256, device=info.torch_device,
                                          target="cpu" if info.kind == "cpu" else "cuda", **kwargs).precision
                shape = plan_next(model, label, precision, grid_shapes(), costs, left, measured | dead)
            if shape is None:
                break
            est = costs(shape)
            try:
                kernel, m = _measure(label, kwargs, shape, info, hw, est)
            except (UnsupportedKernel, BudgetExceeded, ValueError, RuntimeError) as e:
                skipped.setdefault(f"{label} {'x'.join(map(str, shape))}", str(e)[:160])
                dead.add(shape)
                continue
            measured.add(shape)
            costs.add(shape, m.timing.median_s)
            eff = m.efficiency  # against the roof measure_kernel held it to
            roof = "memory" if m.memory_roof_only else "full"
            model.add(kernel.op, kernel.precision, kernel.cost.shape, eff, roof)
            rows.append({"precision": kernel.precision, "shape": list(shape), "median_s": m.timing.median_s,
                         "roof_s": m.predicted_time_s, "roof": roof, "efficiency": eff,
                         "rel_iqr": m.timing.rel_iqr})
        progress(f"efficiency sweep {label}: {sum(r['precision'] == (precision or label) for r in rows)} shapes")
    model.meta.update(measured=len(rows), seconds=round(time.perf_counter() - t_start, 1), budget_s=budget_s,
                      when=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                      grid={"m": list(GRID_M), "nk": list(GRID_NK)}, skipped=skipped, contention=contention)
    return model, rows


def measure_held_out(model: EfficiencyModel, info, hw, precisions, shapes=HELD_OUT, progress=lambda s: None,
                     max_call_s: float = 2.0, passes: int = SCORE_PASSES):
    """(op, precision, shape, roof time, [measured medians, one a pass]) on shapes off the grid, for
    ``roofline.efficiency.score``. Each shape is measured in ``passes`` passes over all the shapes (so its runs are
    apart in time): a model is scored against their median, and their spread is this host's run-to-run noise,
    the floor under any score. A shape one call of which would take longer than ``max_call_s`` is left out (said
    in the progress line)."""
    if passes < 1:
        raise ValueError(f"passes={passes!r}: must be >= 1")
    out = []
    for label, kwargs in precisions:
        costs, dear, rows = _Costs(kwargs, hw), [], {}
        for p in range(passes):
            for shape in sorted(shapes, key=lambda s: s[0] * s[1] * s[2]):
                if p and shape not in rows:
                    continue
                if not p and costs.seen and costs(shape) > max_call_s:
                    dear.append("x".join(map(str, shape)))
                    continue
                try:
                    kernel, m = _measure(label, kwargs, shape, info, hw, costs(shape) if costs.seen else None)
                except (UnsupportedKernel, BudgetExceeded, ValueError):
                    continue
                costs.add(shape, m.timing.median_s)
                row = rows.setdefault(shape, (kernel.op, kernel.precision, dict(kernel.cost.shape),
                                              m.predicted_time_s, []))
                row[4].append(m.timing.median_s)
        out.extend(rows.values())
        progress(f"held-out {label}: {len(rows)} shapes x {passes} passes"
                 + (f" ({len(dear)} over {max_call_s:g} s a call left out: {', '.join(dear)})" if dear else ""))
    return out


def attach(cal, model: EfficiencyModel) -> None:
    """Store the model in the calibration profile it was measured against."""
    model.meta["calibration"] = cal.timestamp
    cal.details["efficiency"] = model.to_dict()


@contextmanager
def _locked(path):
    """One writer of a profile at a time (a suite and a `measure` may learn at once): an advisory lock beside it."""
    with open(f"{path}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_model(cal, info, hw, budget_s: float, progress=lambda s: None) -> EfficiencyModel | None:
    """The calibration's efficiency model; swept now (``budget_s``) and saved into its profile if it has none.
    ``budget_s`` 0: no sweep (the model, if any, is returned as it is)."""
    model = model_of(cal)
    if model is not None or budget_s <= 0 or info.simulated:
        return model
    precisions = sweep_precisions(info, hw)
    if not precisions:
        return None
    progress(f"efficiency sweep of {', '.join(p for p, _ in precisions)} (the expected time beside the bound): "
             f"up to {budget_s:g} s")
    model, _ = run_sweep(info, hw, precisions=precisions, budget_s=budget_s, progress=progress)
    if cal.path:
        with _locked(cal.path):
            from roofline import load_calibration
            try:
                fresh = load_calibration(cal.path)
            except (OSError, ValueError):
                fresh = None
            if fresh is not None and fresh.timestamp == cal.timestamp:
                learned = model_of(fresh)  # samples another process added while this swept stay
                for key, rows in (learned.samples.items() if learned else ()):
                    op, _, prec = key.partition(":")
                    for shape, eff in rows:
                        model.add(op, prec, shape, eff, learned.roofs.get(key, "full"))
                attach(fresh, model)
                write_json_atomic(cal.path, fresh.to_dict())
    attach(cal, model)
    if model.meta.get("contention"):
        progress("efficiency sweep measured under contention (" + "; ".join(
            f"{p}: {', '.join(f)}" for p, f in model.meta["contention"].items()) + "): refit on a quiet machine "
            "with `calibrate --efficiency --refresh`")
    return model


def learn(cal, kernel, m, info) -> str | None:
    """Add a measured case's efficiency to its calibration's model (saved in the profile, atomically, under a
    lock), so the model grows with use. Returns None when added, else why not (said, never an error)."""
    why = (("no stored calibration profile" if cal is None or not getattr(cal, "path", None) else None)
           or (None if Path(cal.path).name.startswith("calibration-") else
               f"{cal.path} was given by path (only the store's profiles learn; a file of yours is not rewritten)")
           or ("a simulated device" if info.simulated else None)
           or (f"{m.timing.mode} timing (the model is of cold runs)" if m.timing.mode != "cold" else None)
           or ("an emulated kernel" if kernel.emulated else None)
           or (f"held to the {m.peaks} roof, the model to the calibrated one" if m.peaks != "calibrated" else None)
           or (f"measured under contention ({', '.join(m.contention)})" if m.contention else None)
           or (f"a {kernel.op} (the model covers GEMV/GEMM)" if kernel.op not in ("gemm", "gemv") else None)
           or (None if m.efficiency > 0 and math.isfinite(m.efficiency) else f"efficiency {m.efficiency!r}"))
    if why:
        return why
    from roofline import load_calibration
    roof = "memory" if m.memory_roof_only else "full"
    with _locked(cal.path):
        try:
            fresh = load_calibration(cal.path)
        except (OSError, ValueError) as e:
            return f"profile unreadable ({e})"
        if fresh.timestamp != cal.timestamp:
            return f"the profile was recalibrated ({fresh.timestamp}) since this measurement's calibration"
        model = model_of(fresh) or EfficiencyModel(meta={"learned_only": True})
        try:
            model.add(kernel.op, kernel.precision, kernel.cost.shape, m.efficiency, roof)
        except ValueError as e:
            return str(e)
        attach(fresh, model)
        write_json_atomic(cal.path, fresh.to_dict())
    cal.details["efficiency"] = fresh.details["efficiency"]
    return None
