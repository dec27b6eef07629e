"""The spot check: one shape of the user's choosing, each precision in turn, measured beside its roofline.

``spot_check`` builds, checks and measures one precision at a time (never two at once: they would share
the device and each would slow the other). A precision without a kernel here, whose result is wrong, or
that cannot fit its time budget is reported with its reason and the others still run; Ctrl-C stops the
loop and what finished is kept (``SpotReport.interrupted``). Any error a backend raises for one precision
(CUDA raises RuntimeError, ValueError or NotImplementedError from its checks) stays in that precision's row.

Each record carries the theory (bytes, FLOPs, AI, the roofline bound and which term sets it), the
measurement (median, p20/p80, sample count, cold or hot, the roof it was held against) and the
speedup against the 16-bit baseline measured in the same run (same device, same minute: a ratio that
does not depend on how loaded the machine was yesterday). ``expected_time_s`` is the bound over the
efficiency this device is expected to reach there (``expected_source``: ``profile`` from the efficiency
model its calibration carries, where it measured near the shape, with ``expected_uncertainty``; ``prior``
from a published measurement against a datasheet roof; else ``none``, no number, and the note says why:
"not measured near this shape (nearest: ...)"). Every cold measurement is offered to the model
(``on_measured``), so it grows with use.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from roofline import get_format
from roofline.reports.runs import MEMORY_ONLY, fmt_s, pick_baseline

from .measure import Measurement, measure_kernel
from .ops import ATTENTION_KERNELS, GEMM_KERNELS, UnsupportedKernel, make_attention, make_gemm, make_grouped_gemm
from .timer import BudgetExceeded

SPOT_OPS = ("gemv", "gemm", "grouped_gemm", "attention")


def kernels_for(op: str) -> list[tuple[str, dict]]:
    """(label, builder kwargs) of every kernel this op has, in the order the spot check runs them."""
    if op not in SPOT_OPS:
        raise ValueError(f"unknown operator {op!r}; the spot check runs: {', '.join(SPOT_OPS)}")
    if op == "attention":
        return [(p, {"precision": p}) for p in ATTENTION_KERNELS]
    return list(GEMM_KERNELS)


def resolve_precisions(op: str, spec: str) -> list[tuple[str, dict]]:
    """``all`` or a comma list (``fp32,bf16,int8/bf16``; a weight-only format alone means bf16 activations)
    into (label, kwargs). Unknown names are refused up front, naming what is allowed."""
    known = kernels_for(op)
    if spec.strip().lower() == "all":
        return known
    by_label = dict(known)
    out = []
    for item in (s.strip().lower() for s in spec.split(",")):
        if not item:
            raise ValueError(f"empty name in --precision {spec!r}; give 'all' or a comma list like fp32,bf16,int8")
        if item == "all":
            raise ValueError(f"'all' cannot be combined with other names in --precision {spec!r}")
        if item in by_label:
            kwargs = by_label[item]
        elif op == "attention":
            raise ValueError(f"no attention kernel for {item!r}; attention runs: {', '.join(ATTENTION_KERNELS)}")
        else:
            names = item.split("/")
            if len(names) > 2:
                raise ValueError(f"bad precision {item!r}; expected FORMAT or WEIGHT/ACT, e.g. int8/bf16")
            fmts = [get_format(n) for n in names]  # unknown names: the formats' own error, listing the known ones
            if len(fmts) == 2:
                kwargs = dict(weight=fmts[0].name, act=fmts[1].name)
            elif fmts[0].compute_class is None:  # a weight-only storage format: bf16 activations, as built
                kwargs = dict(weight=fmts[0].name, act="bf16")
            else:
                kwargs = dict(precision=fmts[0].name)
            item = "/".join(f.name for f in fmts) if len(fmts) == 2 else (
                f"{fmts[0].name}/bf16" if "weight" in kwargs else fmts[0].name)
        if item in (label for label, _ in out):
            raise ValueError(f"{item!r} is named twice in --precision {spec!r}")
        out.append((item, kwargs))
    return out


@dataclass
class SpotResult:
    precision: str
    status: str                       # "ok", "unsupported", "wrong result", "over budget", "failed"
    reason: str = ""
    measurement: Measurement | None = None
    path: str = ""
    emulated: bool = False
    correctness_error: float | None = None
    seconds: float = 0.0              # wall time this precision took, build and check included

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class SpotReport:
    op: str
    shape: dict
    hardware: str
    device_name: str
    peaks: str
    mode: str
    results: list[SpotResult] = field(default_factory=list)
    interrupted: str | None = None    # the precision Ctrl-C stopped, if it did
    simulated: str | None = None
    bandwidth_gbs: float | None = None  # the memory roof in use (for paths priced on it alone)

    @property
    def baseline(self) -> SpotResult | None:
        """The 16-bit result speedups are quoted against: a native one first (fp16 on GPUs, bf16 on most CPUs)."""
        ok = {r.precision: r for r in self.results if r.ok}
        name = pick_baseline({p: r.emulated for p, r in ok.items()})
        return ok[name] if name else None

    def records(self) -> list[dict]:
        """One flat record per precision (the --json output and the table's rows)."""
        base = self.baseline
        rows = []
        for r in self.results:
            rec = dict(precision=r.precision, status=r.status, reason=r.reason, path=r.path, emulated=r.emulated,
                       op=self.op, shape=dict(self.shape), hardware=self.hardware, device=self.device_name,
                       peaks=self.peaks, mode=self.mode, correctness_error=r.correctness_error,
                       seconds=round(r.seconds, 3), SIMULATED=bool(self.simulated))
            m = r.measurement
            if m is not None:
                pred = m.prediction or {}
                t = m.timing
                rec.update(
                    flops=m.flops, bytes=m.bytes, ai=m.flops / m.bytes if m.bytes else None,
                    bound_time_s=m.predicted_time_s, bound=MEMORY_ONLY if m.memory_roof_only else pred["bound"],
                    compute_class=pred.get("compute_class"), t_memory_s=pred.get("t_memory_s"),
                    peak_tflops=pred.get("peak_tflops"), bandwidth_gbs=pred.get("bandwidth_gbs", self.bandwidth_gbs),
                    t_compute_s=pred.get("t_compute_s"), prediction_note=m.prediction_note,
                    expected_time_s=m.expected_time_s, expected_efficiency=m.expected_efficiency,
                    expected_source=m.expected_source, expected_note=m.expected_note,
                    expected_uncertainty=m.expected_uncertainty,
                    median_s=t.median_s, p20_s=t.p20_s, p80_s=t.p80_s, rel_iqr=t.rel_iqr, count=t.count,
                    converged=t.converged, efficiency=m.efficiency, beats_roof=m.beats_roof,
                    ceiling_time_s=m.ceiling_time_s, ceiling_note=m.ceiling_note, beats_ceiling=m.beats_ceiling,
                    achieved_gbs=m.achieved_gbs, achieved_tflops=m.achieved_tflops, contention=m.contention,
                    cold_note=m.cold_note, telemetry=m.telemetry,  # clocks, throttling, energy: the single measure's
                    baseline=base.precision if base else None,
                    speedup_vs_baseline=(base.measurement.median_s / t.median_s) if base else None)
            rows.append(rec)
        return rows

    def to_dict(self) -> dict:
        return dict(op=self.op, shape=self.shape, hardware=self.hardware, device=self.device_name, peaks=self.peaks,
                    mode=self.mode, interrupted=self.interrupted, SIMULATED=bool(self.simulated),
                    baseline=self.baseline.precision if self.baseline else None, records=self.records())


def build(op: str, shape: dict, kwargs: dict, device: str, target: str):
    if op == "attention":
        return make_attention(shape["batch"], shape["heads"], shape["kv_heads"], shape["seq_q"], shape["seq_kv"],
                              shape["head_dim"], kwargs["precision"], kv=shape.get("kv"), device=device,
                              target=target)
    if op == "grouped_gemm":
        return make_grouped_gemm(shape["groups"], shape["m"], shape["n"], shape["k"], device=device, target=target,
                                 **kwargs)
    if op == "gemv":
        return make_gemm(1, shape["n"], shape["k"], device=device, target=target, op="gemv", **kwargs)
    return make_gemm(shape["m"], shape["n"], shape["k"], device=device, target=target, **kwargs)


def spot_check(op: str, shape: dict, precisions: list[tuple[str, dict]], info, hw, peaks: str = "calibrated",
               mode: str = "cold", warmup_ms: float = 25.0, rep_ms: float = 100.0, max_wall_s: float | None = 10.0,
               check: bool = True, progress=None, builder=build, timer=None, model=None, ceiling=None,
               on_measured=None, cuda_graph: bool = False) -> SpotReport:
    """Each precision in turn: build -> check -> measure. ``builder`` and ``timer`` are seams for tests and
    simulated devices; ``max_wall_s`` bounds each precision's timing (``BudgetExceeded`` -> "over budget")."""
    report = SpotReport(op, dict(shape), hw.key, info.name, peaks, mode, simulated=info.simulated)
    try:
        report.bandwidth_gbs = hw.bandwidth_gbs(peaks)
    except ValueError:
        pass  # no bandwidth on this roof: every prediction below will say so itself
    target = "cpu" if info.kind == "cpu" else "cuda"
    current = None
    try:
        for label, kwargs in precisions:
            current = label
            t0 = time.perf_counter()
            if progress:
                progress(f"{op} {label}: building")
            try:
                kernel = builder(op, shape, kwargs, info.torch_device, target)
            except UnsupportedKernel as e:
                report.results.append(SpotResult(label, "unsupported", e.why, seconds=time.perf_counter() - t0))
                continue
            except ValueError as e:  # a format or shape the theory refuses for this kernel
                report.results.append(SpotResult(label, "unsupported", str(e), seconds=time.perf_counter() - t0))
                continue
            except Exception as e:  # a backend refusing this precision while building: its row says so, the rest run
                report.results.append(SpotResult(label, "failed", _backend_error(e), seconds=time.perf_counter() - t0))
                continue
            res = SpotResult(label, "ok", path=kernel.path, emulated=kernel.emulated)
            unprobed = kernel.note.startswith("not probed")  # a simulated GPU's CUDA-only kernel: nothing ran to check
            if unprobed:
                res.reason = kernel.note
            try:
                if check and not unprobed:
                    res.correctness_error = kernel.check()
                if progress:
                    progress(f"{op} {label}: measuring ({kernel.path})")
                res.measurement = measure_kernel(kernel, info, hw, mode, peaks, warmup_ms, rep_ms,
                                                 max_wall_s=max_wall_s, timer=timer, warm=check, model=model,
                                                 ceiling=ceiling, cuda_graph=cuda_graph)
                if on_measured is not None:
                    on_measured(kernel, res.measurement)
            except AssertionError as e:  # the correctness check: a wrong result is not timed
                res.status, res.reason = "wrong result", str(e)
            except BudgetExceeded as e:
                res.status, res.reason = "over budget", f"{e}; raise --max-seconds to measure it"
            except Exception as e:  # a backend refusing this shape or dtype at run time (RuntimeError, ValueError,
                # NotImplementedError from CUDA's checks): that precision's row says so, and the next one runs
                res.status, res.reason = "failed", _backend_error(e)
            res.seconds = time.perf_counter() - t0
            del kernel  # the next precision's operands get the memory (and the caches) to themselves
            report.results.append(res)
        current = None
    except KeyboardInterrupt:
        report.interrupted = current
    return report


def _backend_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def figure(report: SpotReport):
    """(roofs, points) of the spot check, drawn as the suite's report draws a run (``roofline.reports.runs``): one roof per
    compute class met, one predicted and one measured point per precision that ran."""
    from roofline.reports import runs
    roof = "calibrated" if report.peaks == "calibrated" else "datasheet"
    recs = [dict(rec, id=f"{rec['op']} {rec['precision']}", predicted_time_s=rec["bound_time_s"],
                 outcome="failed" if rec["beats_ceiling"] else "passed",
                 **{f"{roof}_peak_tflops": rec["peak_tflops"], f"{roof}_bandwidth_gbs": rec["bandwidth_gbs"]})
            for rec in report.records() if rec["status"] == "ok"]
    return runs.roofs_of(recs), runs.points_of(recs)


TABLE_HEADERS = ["precision", "path", "bytes", "AI", "bound", "expected", "measured (p20-p80)", "n", "efficiency",
                 "speedup"]


def table_rows(report: SpotReport) -> list[tuple[str, list[str]]]:
    """(precision, cells) per record; a precision that did not run says why in the path column."""
    rows = []
    for rec in report.records():
        if rec["status"] != "ok":
            rows.append((rec["precision"], [rec["precision"], f"{rec['status']}: {rec['reason']}"] + [""] * 8))
            continue
        mark = " EMULATED" if rec["emulated"] else ""
        speed = (f"{rec['speedup_vs_baseline']:.2f}x" if rec["speedup_vs_baseline"] is not None else "-")
        rows.append((rec["precision"], [
            rec["precision"], rec["path"][:40] + mark, f"{rec['bytes'] / 1e6:.4g} MB", f"{rec['ai']:.3g}",
            f"{fmt_s(rec['bound_time_s'])} {rec['bound'][:3] if rec['bound'] in ('memory', 'compute') else 'mem*'}",
            fmt_s(rec["expected_time_s"]),
            f"{fmt_s(rec['median_s'])} ({fmt_s(rec['p20_s'])}-{fmt_s(rec['p80_s'])})", str(rec["count"]),
            f"{rec['efficiency']:.1%}" + (" BEATS CEILING" if rec["beats_ceiling"] else
                                          " >calibrated" if rec["beats_roof"] else ""), speed]))
    return rows


def _expected_note(report: SpotReport) -> str:
    sources = {r.measurement.expected_source for r in report.results if r.ok}
    if sources <= {"none"}:
        why = sorted({r.measurement.expected_note for r in report.results if r.ok})
        return (f"expected: none ({'; '.join(why)[:400] or 'nothing measured'}); the bound is the physics, "
                "not an estimate.")
    notes_ = {r.measurement.expected_note for r in report.results if r.ok and r.measurement.expected_source != "none"}
    return f"expected: the bound over the efficiency expected here ({', '.join(sorted(sources))}): " + \
        "; ".join(sorted(notes_))[:400]


def notes(report: SpotReport) -> list[str]:
    out = [f"bound: the roofline time on {report.peaks} peaks (mem/com: memory- or compute-bound; mem*: held to the "
           "memory roof alone: no native math here, or a compute peak that is one software kernel's speed, not a "
           "ceiling). efficiency = bound / measured median.",
           _expected_note(report)]
    base = report.baseline
    out.append(f"speedup: measured median of {base.precision} / measured median, same run" if base else
               "speedup: no 16-bit baseline (fp16 or bf16) ran in this spot check; add one to --precision")
    if any(r.emulated for r in report.results if r.ok):
        out.append("EMULATED: converted in software on this device; no compute roof applies")
    # what a row's number must not be read without (the table has no room): a run under contention, or whose
    # spread never settled, and the baseline every speedup leans on above all
    for r in report.results:
        m = r.measurement
        if m is None:
            continue
        why = [f"contention: {', '.join(m.contention)}"] if m.contention else []
        if not m.timing.converged:
            why.append(f"spread not settled (p20-p80 {fmt_s(m.timing.p20_s)}-{fmt_s(m.timing.p80_s)}, "
                       f"n={m.timing.count})")
        if why:
            lean = " (the baseline: every speedup above leans on it)" if base is r else ""
            out.append(f"{r.precision}{lean}: " + "; ".join(why))
    if report.interrupted:
        out.append(f"interrupted (Ctrl-C) while {report.interrupted} ran: the rows above are what finished")
    if report.simulated:
        out.append(f"SIMULATED device ({report.simulated}): timings were synthesised")
    return out


def write_figure(report: SpotReport, path: str) -> None:
    """``.html``: the interactive page; ``.svg``: the plot alone; ``.png``: matplotlib's rendering. Atomic."""
    from roofline.atomic import write_atomic
    from roofline.reports.svg import figure_block, html_page, roofline_svg
    roofs, points = figure(report)
    title = (f"{report.op} {'x'.join(str(v) for v in report.shape.values())} on {report.hardware} "
             f"({report.device_name}), {report.mode}")
    low = path.lower()
    if low.endswith((".html", ".htm")):
        block = figure_block("spot", roofline_svg(roofs, points, title), TABLE_HEADERS, table_rows(report))
        write_atomic(path, html_page(title, [("", block)], notes(report)))
    elif low.endswith(".svg"):
        write_atomic(path, roofline_svg(roofs, points, title) + "\n")
    elif low.endswith(".png"):
        from roofline.reports.plot import Point, roofline_png
        write_atomic(path, roofline_png(roofs, [Point(f"{p.precision} {'measured' if p.measured else 'predicted'}",
                                                      p.ai, p.tflops, p.colour, p.measured) for p in points], title))
    else:
        raise ValueError(f"cannot write a figure to {path!r}; use a .html, .svg or .png name")
