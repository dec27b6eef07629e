"""``measure`` and ``calibrate``: the measurement layer's commands, composed into ``python -m roofline``.

Imports of torch-backed modules happen inside each command, so building the parser (and running the
theory commands beside these) never imports torch.
"""
from __future__ import annotations

import json
import os
import math
import sys

from roofline import load_hardware_file
from roofline.efficiency import model_of
from roofline.cli.options import (MEASURE_OPS, Given, add_hardware_options, add_op_arguments, add_precision_options,
                                  check_op_flags, fmt_time, formats_kwargs, groups_of, positive_float)


def _progress(line: str) -> None:
    print(f"[roofline] {line}", file=sys.stderr, flush=True)


def _simulation(args):
    """The simulated device ``--simulate KEY`` asks for (tests/simulation.py: a source checkout's test fakes), or None."""
    if not getattr(args, "simulate", None):
        return None
    try:
        from tests.simulation import Simulation
    except ImportError as e:
        raise ValueError(f"--simulate needs the repository's tests/ (the simulated devices live there; run from a "
                         f"source checkout with the 'test' extra): {e}") from None
    return Simulation(args.simulate)


def _target(args, sim):
    """The device under test (``roofline_kernels.target``) from measure's options, real or simulated; what no
    measurement on it can run with is refused before its calibration is loaded or measured."""
    from roofline_kernels.target import CLOCK_OPTIONS, resolve_target, simulated_target
    clocks = {k: getattr(args, k, None) for k in CLOCK_OPTIONS}
    if sim is None:
        return resolve_target(args.hardware, hardware_file=args.hardware_file, power_mode=args.power_mode or None,
                              clocks=clocks, calibration=args.calibration, peaks=args.peaks, store=args.cache_dir,
                              progress=_progress, check=lambda info, hw: _refuse_before_calibrating(args, info, hw))
    if args.calibration:
        raise ValueError("--simulate synthesises its calibration; --calibration does not combine with it")
    return simulated_target(sim, args.hardware, hardware_file=args.hardware_file, power_mode=args.power_mode or None,
                            clocks=clocks, peaks=args.peaks)


def _seconds(text: str) -> float:
    import argparse
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def _at_least_one(text: str) -> int:
    import argparse
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of runs >= 1")
    return value


def _factors(text: str) -> tuple[float, ...]:
    import argparse
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or not all(1 < v < 100 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give slowdown factors above 1, comma-separated (e.g. 2,1.5)")
    return values


def _selftest_precisions(text: str) -> tuple[str, ...]:
    import argparse
    from roofline_kernels.selftest import PRECISIONS
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    bad = [n for n in names if n not in PRECISIONS]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"unknown precision {', '.join(bad) or repr(text)}; allowed: {', '.join(PRECISIONS)}")
    return names


def cmd_selftest(args, out):
    from roofline_kernels.calibrate import load_or_calibrate, store_dir
    from roofline_kernels.device import detect
    from roofline_kernels.measure import hardware_for
    from roofline_kernels.selftest import PRECISIONS, checkout, report_lines, selftest
    checkout()
    info = detect("cpu")
    store = store_dir(args.cache_dir)
    load_or_calibrate(info, store, quick=True, progress=_progress, hw=hardware_for(info))  # seeds the private store
    summary = selftest(args.runs, args.factors, store, args.precisions or PRECISIONS, progress=_progress,
                       keep_dir=args.keep)
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "results"} | {"results": summary["results"]},
                         indent=1), file=out)
    else:
        print("\n".join(report_lines(summary)), file=out)
    return 0


def _is_spot_check(args) -> bool:
    spec = args.precision or ""
    return spec.strip().lower() == "all" or "," in spec or bool(args.html or args.plot)


def cmd_measure(args, out):
    sim = _simulation(args)
    if sim is None:
        return _cmd_measure(args, out, None)
    sim.install()  # fake CUDA/NVML (and a Jetson's files) for this command only
    try:
        _progress(f"SIMULATED device {sim.key}: detection, paths, gates and rules as there; synthesised times")
        return _cmd_measure(args, out, sim)
    finally:
        sim.uninstall()


def _cmd_measure(args, out, sim):
    # a flag the operator does not read is refused before anything runs (--groups too); measure times the path's own
    # output format, so --out-precision (predict's) is one it does not read
    check_op_flags(args, exclude=("out_precision",))
    groups_of(args)
    if _is_spot_check(args):
        return cmd_spot_check(args, out, sim)
    from roofline.formats import get_format
    from roofline_kernels.measure import measure_kernel
    from roofline_kernels.ops import make_attention
    from roofline_kernels.spot import build as spot_build
    for name in (args.precision, args.weight_precision, args.act_precision, getattr(args, "kv_precision", None)):
        if name:
            get_format(name)  # an unknown name is refused before a calibration runs, not after
    target = _target(args, sim)
    info, hw, peaks = target.info, target.hardware, target.peaks
    shape, kwargs = _measure_request(args)
    if args.op in ("gemv", "gemm", "grouped_gemm"):
        builder = sim.spot_builder(info) if sim else spot_build
        kernel = builder(args.op, shape, kwargs, info.torch_device, "cpu" if info.kind == "cpu" else "cuda")
    else:
        kernel = make_attention(shape["batch"], shape["heads"], shape["kv_heads"], shape["seq_q"], shape["seq_kv"],
                                shape["head_dim"], kwargs["precision"], kv=shape["kv"], device=info.torch_device,
                                target="cpu" if info.kind == "cpu" else "cuda")
    _progress(f"measuring {kernel.op} {kernel.precision} on {info.name} ({args.mode})")
    given = getattr(args, "given", None) or {}
    m = measure_kernel(kernel, info, hw, args.mode, peaks, args.warmup_ms, args.rep_ms, cuda_graph=args.cuda_graph,
                       model=target.model, timer=sim.timer if sim else None, ceiling=target.ceiling,
                       max_wall_s=args.max_seconds if "max_seconds" in given else None)  # ignored before, said now
    if target.learns:
        _learner(hw.calibration, info)(kernel, m)
    if args.json:
        return json.dump(m.to_dict(), out, indent=2, default=str)
    t = m.timing
    out.write(f"{m.op} {m.precision} {m.shape} on {m.hardware} ({m.device_name}), {t.mode}; {m.path}\n"
              f"  measured   median {fmt_time(t.median_s)} (p20 {fmt_time(t.p20_s)}, p80 {fmt_time(t.p80_s)}; "
              f"n={t.count}, rel IQR {t.rel_iqr:.1%}{'' if t.converged else ', spread not settled'})\n")
    out.write("  expected   " + expected_text(m) + "\n")
    out.write(f"  predicted  {fmt_time(m.predicted_time_s)} against {peaks} peaks; {m.prediction_note}\n"
              f"  efficiency {m.efficiency:.1%}" + _beyond(m) + "\n")
    out.write(f"  ceiling    " + (f"{fmt_time(m.ceiling_time_s)} ({m.ceiling_note})" if m.ceiling_time_s else
                                   m.ceiling_note) + "\n")
    out.write(f"  achieved   {m.achieved_gbs:.4g} GB/s, {m.achieved_tflops:.4g} TFLOP/s\n"
              f"  contention {', '.join(m.contention) or 'none seen'}\n")
    for note in (m.telemetry.get("region") or {}).get("settings") or []:
        out.write(f"  settings   {note}\n")


def _measure_request(args) -> tuple[dict, dict]:
    """(shape, builder keyword arguments) of a single measurement, as ``spot.build`` takes them: one reading of the
    options for the kernel built and for what is refused before it (``_refuse_before_calibrating``)."""
    f = formats_kwargs(args, precision_default="fp32")
    f.pop("out")
    if args.op in ("gemv", "gemm", "grouped_gemm"):
        return _spot_shape(args), {k: v for k, v in f.items() if v is not None}
    return {**_spot_shape(args), "kv": args.kv_precision}, {"precision": f["precision"] or f["act"] or "fp32"}


def _refuse_before_calibrating(args, info, hw) -> None:
    """What a measurement on this (real) device cannot run with, refused once the device is known and before its
    calibration is loaded or measured (``resolve_target``'s ``check``): a bad option had cost a quick calibration
    first, and on a loaded host, where the cached profile had been measured under contention, its progress lines.
    Experts that would not fit this host's memory are refused here too (a simulated board builds a small probe of
    them, and is not held to this host's memory)."""
    stated = any(getattr(args, k, None) for k in ("gpu_clock_mhz", "mem_clock_mhz", "active_sms"))
    _refuse_unrunnable(args, info, hw, args.peaks or ("datasheet" if stated else None))
    op = getattr(args, "op", None)
    if op in ("gemv", "gemm", "grouped_gemm", "attention") and not _is_spot_check(args):  # the shape's and the
        # path's own refusals (a packed INT4 weight with K = 100, query heads no multiple of KV heads) came after a
        # 30 s quick calibration; a spot check reports each precision's refusal as its row
        from roofline_kernels.ops import refuse_unbuildable
        refuse_unbuildable(op, *_measure_request(args), "cpu" if info.kind == "cpu" else "cuda")
    if op == "grouped_gemm":
        from roofline_kernels.ops import check_grouped_room
        check_grouped_room(groups_of(args), args.m, args.n, args.k, info.torch_device)


def _refuse_unrunnable(args, info, hw, peaks) -> None:
    """What no precision of a measurement can run with, refused once, before measuring (one line, exit 2): not a
    "failed" row per precision of a spot check and exit 0 (--peaks datasheet on a CPU, which has no datasheet;
    --cuda-graph off CUDA, which was ignored). ``peaks`` None: the roof is decided later (calibrated where a profile
    is), and only --cuda-graph is asked."""
    if getattr(args, "cuda_graph", False) and info.torch_device != "cuda":
        raise ValueError(f"--cuda-graph needs a CUDA device; this one is {info.torch_device} ({info.name})")
    if peaks is None:
        return
    try:
        hw.bandwidth_gbs(peaks)
    except ValueError as e:
        raise ValueError(f"--peaks {peaks}: {e}") from None


def _learner(cal, info):
    """Offers each measurement to the calibration's efficiency model (it grows with use); says when one is not taken."""
    from roofline_kernels.efficiency import learn

    def offer(kernel, m):
        why = learn(cal, kernel, m, info)
        if why:
            _progress(f"{kernel.op} {kernel.precision}: not added to the efficiency model ({why})")
    return offer


def expected_text(m) -> str:
    """The expected time of a measurement with its uncertainty and where it comes from, or why there is none."""
    if not m.expected_time_s:
        return f"- ({m.expected_note})"
    unc = f" +-{m.expected_uncertainty:.0%}" if m.expected_uncertainty is not None else ""
    return (f"{fmt_time(m.expected_time_s)}{unc} ({m.expected_efficiency:.0%} of the roof, {m.expected_source}: "
            f"{m.expected_note})")


def _beyond(m) -> str:
    if m.beats_ceiling:
        return "  <-- BEATS ITS CEILING: a bug to explain (bytes or FLOPs mis-counted, or the ceiling is wrong)"
    if m.beats_roof:
        return ("  <-- beyond the calibrated roof: the calibration understated it (measured while the host ran "
                "slow?); `calibrate --refresh`")
    return ""


def _spot_shape(args) -> dict:
    if args.op == "gemv":
        return {"n": args.n, "k": args.k}
    if args.op == "gemm":
        return {"m": args.m, "n": args.n, "k": args.k}
    if args.op == "grouped_gemm":
        return {"groups": groups_of(args), "m": args.m, "n": args.n, "k": args.k}
    return {"batch": args.batch, "heads": args.heads, "kv_heads": args.kv_heads or args.heads,
            "seq_q": args.seq_q or (1 if args.phase == "decode" else args.seq_kv), "seq_kv": args.seq_kv,
            "head_dim": args.head_dim}


def cmd_spot_check(args, out, sim=None):
    """Every precision asked for (``all`` or a list), one after another, in one table / JSON list / figure."""
    from roofline_kernels.spot import notes, resolve_precisions, spot_check, table_rows, TABLE_HEADERS
    if args.weight_precision or args.act_precision or args.kv_precision:
        raise ValueError("--precision all or a list names each precision (WEIGHT/ACT for mixed ones, e.g. "
                         "int8/bf16); --weight-precision, --act-precision and --kv-precision do not combine with it")
    for path in (args.html, args.plot):
        if path and not path.lower().endswith((".html", ".htm", ".svg", ".png")):
            raise ValueError(f"cannot write a figure to {path!r}; use a .html, .svg or .png name")
    if args.html and not args.html.lower().endswith((".html", ".htm")):
        raise ValueError(f"--html {args.html!r}: the page is HTML; name it .html (--plot takes .svg or .png)")
    for flag, path in (("--html", args.html), ("--plot", args.plot)):  # refused before measuring, not after
        if path and (os.path.isdir(path) or not os.path.isdir(os.path.dirname(os.path.abspath(path)))):
            raise ValueError(f"{flag} {path!r}: " + ("a directory, not a file name" if os.path.isdir(path) else
                                                      "its directory does not exist"))
    precisions = resolve_precisions(args.op, args.precision or "all")
    target = _target(args, sim)
    info, hw, peaks = target.info, target.hardware, target.peaks
    _refuse_unrunnable(args, info, hw, peaks)
    shape = _spot_shape(args)
    _progress(f"spot check of {args.op} {'x'.join(map(str, shape.values()))} on {info.name}: "
              f"{', '.join(p for p, _ in precisions)} ({args.mode}), one at a time")
    seams = dict(builder=sim.spot_builder(info), timer=sim.timer) if sim else {}
    if target.learns:
        seams["on_measured"] = _learner(hw.calibration, info)
    report = spot_check(args.op, shape, precisions, info, hw, peaks, args.mode, args.warmup_ms, args.rep_ms,
                        max_wall_s=args.max_seconds, check=not args.no_check, progress=_progress,
                        model=target.model, ceiling=target.ceiling, cuda_graph=args.cuda_graph, **seams)
    for path in (args.html, args.plot):
        if path:
            from roofline_kernels.spot import write_figure
            write_figure(report, path)
            _progress(f"wrote {path}")
    if args.json:  # one record per precision, with what ran around them (interrupted, baseline, device)
        json.dump(report.to_dict(), out, indent=2, default=str)
    else:
        out.write(f"{args.op} {'x'.join(map(str, shape.values()))} on {report.hardware} ({report.device_name}), "
                  f"{args.mode}, {peaks} peaks\n")
        rows = [TABLE_HEADERS] + [cells for _, cells in table_rows(report)]
        ok_rows = [r for r in rows if r[2] or r is rows[0]]
        widths = [max(len(r[i]) for r in ok_rows) for i in range(len(TABLE_HEADERS))]
        for r in rows:
            if r is not rows[0] and not r[2]:  # did not run: precision and why, on one line
                out.write(f"{r[0]:<{widths[0]}}  {r[1]}\n")
                continue
            out.write("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                      .rstrip() + "\n")
        for n in notes(report):
            out.write(f"  {n}\n")
    return 130 if report.interrupted else 0


def cmd_calibrate(args, out):
    from roofline_kernels.calibrate import load_or_calibrate, save, store_dir, stored_profiles
    from roofline_kernels.device import detect
    from roofline_kernels.measure import hardware_for
    if args.show:
        given = [flag for flag, on in (("--hardware", args.hardware), ("--hardware-file", args.hardware_file),
                                       ("--quick", args.quick), ("--refresh", args.refresh),
                                       ("--efficiency", args.efficiency), ("--score", args.score),
                                       ("--efficiency-budget-s", args.efficiency_budget_s is not None),
                                       ("--output", args.output)) if on]
        if given:  # --show reads the store and measures nothing: these were ignored
            raise ValueError(f"--show prints the stored profiles and measures nothing; {', '.join(given)} "
                             "belong to a calibration (drop --show)")
        unreadable: list = []
        profiles = stored_profiles(args.cache_dir, unreadable)
        return _show_profiles(profiles, store_dir(args.cache_dir), args.json, out, unreadable)
    if args.hardware_file:
        load_hardware_file(args.hardware_file)
    info = detect(args.hardware)
    cal = load_or_calibrate(info, args.cache_dir, quick=args.quick, refresh=args.refresh, progress=_progress,
                            hw=hardware_for(info), efficiency_budget_s=0 if args.efficiency else args.efficiency_budget_s)
    hw = hardware_for(info, cal)
    if args.efficiency:
        cal = _refit(args, info, cal, hw)
        hw = hardware_for(info, cal)  # its roofs, raised where the sweep ran faster
    model = model_of(cal)
    from roofline.efficiency import score
    scored = score(model) if model is not None else None  # leave-one-out: free, from the model's own shapes
    if args.score:
        from roofline_kernels.efficiency import measure_held_out, sweep_precisions
        if model is None:
            raise ValueError("--score needs an efficiency model, and this profile has none (--efficiency-budget-s 0?)")
        _progress("scoring on held-out shapes the model never saw (GEMM: M 1..2048, N and K not powers of two; "
                  "MoE experts as grouped GEMMs, scored apart; attention: other head counts, batches and lengths), "
                  "and on 3 swept shapes a path again")
        anchors: list = []
        held = measure_held_out(model, info, hw, sweep_precisions(info, hw), progress=_progress, anchors=anchors)
        scored = score(model, held, anchors)
    if args.output:
        save(cal, args.output)
        _progress(f"profile written to {args.output}")
    if args.json:
        return json.dump(dict(cal.to_dict(), score=scored), out, indent=2, default=str)
    threads = cal.details.get("threads")
    on = f", {threads} torch thread{'s' if threads != 1 else ''}" if info.kind == "cpu" and threads else ""
    on += f", cgroup CPU quota {info.cpu.quota_cpus:g}" if info.kind == "cpu" and info.cpu.quota_cpus else ""
    out.write(f"calibration for {cal.hardware} ({info.name}{on}), {cal.timestamp}; profile: {cal.path}\n"
              f"  DRAM bandwidth {cal.bandwidth_gbs:.4g} GB/s{_raised(cal, 'bandwidth')}; caches: "
              + ", ".join(f"{k} {v:.4g}" for k, v in cal.cache_bandwidth_gbs.items()) + " GB/s\n")
    for cls, v in cal.peaks_tflops.items():
        out.write(f"  {cls:<6} {v:.4g} TFLOP/s{_raised(cal, cls)}\n")
    for prec, why in cal.details.get("skipped", {}).items():
        out.write(f"  {prec:<6} skipped: {why}\n")
    if model is not None:
        meta = model.meta
        again = (f" ({meta['repeated']} runs again: of runs the neighbours disagreed with or none could judge, of the M "
                 "line, of the host's move)" if meta.get("repeated") else "")
        out.write(f"  efficiency model: {meta.get('measured', 0)} swept shapes{again} in {meta.get('seconds', 0)} s (budget "
                  f"{meta.get('budget_s', 0)} s), {meta.get('when', '?')}; measured shapes per path (sweep and use): "
                  + ", ".join(f"{k} {len(model.points(*k.split(':', 1)))}"
                              for k in model.samples) + "\n")
    else:
        out.write("  efficiency model: none (no sweep: expected times will say so)\n")
    if scored:
        _print_score(scored, out, cpu=info.kind == "cpu")


def _raised(cal, what: str) -> str:
    r = (cal.details.get("raised_by_sweep") or {}).get(what)
    return (f" (calibrated {r['calibrated']:.4g}; raised: the efficiency sweep's {r['shape']} ran faster)" if r
            else "")


def _refit(args, info, cal, hw):
    """``--efficiency``: a new sweep of this calibration's efficiency model, saved into its profile (atomically); the
    calibration returned (its roofs raised where the sweep ran faster)."""
    from roofline_kernels.calibrate import save
    from roofline.atomic import locked
    from roofline_kernels.efficiency import attach, default_budget_s, sweep, sweep_precisions
    budget = args.efficiency_budget_s if args.efficiency_budget_s is not None else \
        default_budget_s(bool(cal.details.get("quick")))
    precisions = sweep_precisions(info, hw)
    _progress(f"efficiency sweep of {', '.join(p for p, _ in precisions)}: up to {budget:g} s")
    model, cal = sweep(cal, info, hw, precisions, budget, _progress)
    attach(cal, model)
    with locked(cal.path):  # one writer at a time: a suite's cases learn into this profile under the same lock
        save(cal, cal.path)
    _progress(f"efficiency model saved in {cal.path}")
    if model.meta.get("contention"):
        _progress("WARNING: measured under contention (" + "; ".join(
            f"{p}: {', '.join(f)}" for p, f in model.meta["contention"].items()) + "): refit on a quiet machine "
            "with --efficiency")
    return cal


def _print_score(scored: dict, out, cpu: bool = False) -> None:
    from roofline.efficiency import TARGET_GEOMEAN, TARGET_WORST
    cell = lambda x: f"{x['geomean']:.1%} / {x['worst']:.0%}" if x else "-"  # noqa: E731
    w0 = max([26, *(len(p) + 2 for p in scored)])  # the path column: grouped_gemm:int4_tinygemm/bf16 is 31 wide
    out.write(f"  accuracy (error = |log(predicted / measured)|, as geomean / worst; target on held-out shapes: "
              f"{TARGET_GEOMEAN:.0%} / {TARGET_WORST:.0%}):\n"
              f"    {'path':<{w0}}{'test':<15}{'n':>4}{'not near':>9}{'expected':>18}{'bound':>19}{'run to run':>18}"
              f"{'within +-':>11}\n")
    noisy, moved, understated = [], [], []
    for prec, tests in scored.items():
        for test, d in tests.items():
            if test == "drift":
                continue
            e, b, r = d["expected"], d["bound"], d.get("run_to_run")
            verdict = "" if test != "held_out" else ("  meets target" if d["meets_target"] else "  ABOVE TARGET")
            if test == "held_out" and not d["meets_target"] and r and r["geomean"] > TARGET_GEOMEAN:
                noisy.append(f"{prec} {r['geomean']:.1%}")
            w = d.get("within_uncertainty")
            within = f"{w['within']} of {w['n']}" if w else ""
            out.write(f"    {prec:<{w0}}{test:<15}{(e or {}).get('n', 0):>4}{d.get('not_near', 0):>9}{cell(e):>18}"
                      f"{cell(b):>19}{cell(r) if test == 'held_out' else '':>18}{within:>11}{verdict}\n")
            if w and w["understated"]:
                understated.append(f"{prec} {w['within']} of {w['n']}")
            worst = next((x for x in d.get("shapes", ()) if x.get("error") is not None), None)
            if test == "held_out" and not d["meets_target"] and worst:
                unc = f" +-{worst['uncertainty']:.0%}" if worst.get("uncertainty") is not None else ""
                out.write(f"    {'':<{w0}}{'worst':<15}{worst['shape']}: measured {worst['measured_s'] * 1e3:.4g} ms, "
                          f"expected {worst['expected_s'] * 1e3:.4g} ms{unc} ({worst['error']:+.0%})\n")
            drift = tests.get("drift")
            if test == "held_out" and drift:
                out.write(f"    {'':<{w0}}{'host moved':<15}{drift['n']:>4}{'':>9}"
                          f"{cell(d.get('expected_drift_removed')):>18}  (its swept shapes took {drift['mean']:+.0%} "
                          f"{'longer' if drift['mean'] >= 0 else 'less time'} now than in the sweep; expected error "
                          "with that taken out)\n")
                if abs(math.log1p(drift["mean"])) > math.log1p(TARGET_GEOMEAN):
                    moved.append(f"{prec} {drift['mean']:+.0%}")
    if any("held_out" in t for t in scored.values()):
        out.write("    held-out: each shape measured in several passes, the model held against their median; 'run to run' "
                  "is how far two runs of one shape lie apart here\n")
    if understated:
        out.write(f"    fewer than half the held-out shapes lie within their stated +- ({', '.join(understated)}): "
                  f"the +- understates this model's error here; trust the held-out error above it\n")
    if moved:
        out.write(f"    the host's speed moved by more than the target between the sweep and the score ({', '.join(moved)}:"
                  f" its own swept shapes, measured again): no model fitted then can follow that; 'host moved' shows "
                  f"the error with it taken out (the verdict is on the error as measured)\n")
    if noisy:
        out.write(f"    two runs of one shape differ by more than the target on this host ({', '.join(noisy)}): its "
                  f"noise alone is above it; score on a quieter host before blaming the model"
                  + (" (a shared VM that takes a core away stalls every call of a multi-threaded kernel: "
                     "OMP_NUM_THREADS=1 is steadier, and calibrates a profile of its own)" if cpu else "") + "\n")


def _show_profiles(profiles, store, as_json, out, unreadable=()):
    for path, why in unreadable:  # said, on stderr, whatever the format: a profile is never left out unsaid
        _progress(f"unreadable profile, not shown: {path}: {why}")
    if as_json:
        return json.dump([dict(c.to_dict(), path=c.path) for c in profiles], out, indent=2, default=str)
    out.write(f"profile store {store}: {len(profiles)} profile(s)"
              + (f", {len(unreadable)} unreadable (named above)" if unreadable else "") + "\n")
    for c in profiles:
        d = c.details
        out.write(f"- {c.hardware} ({c.device.get('name', '?')}), measured {c.timestamp}"
                  f"{' quick' if d.get('quick') else ' full'} in {d.get('seconds', float('nan')):.0f} s; {c.path}\n"
                  f"    DRAM {c.bandwidth_gbs:.4g} GB/s (two looks {d.get('dram_spread', 0):.0%} apart; working set "
                  f"{d.get('dram_working_set', '?')}){_raised(c, 'bandwidth')}; "
                  + ", ".join(f"{k} {v:.4g} TFLOP/s{_raised(c, k)}" for k, v in c.peaks_tflops.items()) + "\n"
                  f"    torch {c.versions.get('torch')}, torchao {c.versions.get('torchao')}"
                  + (f"; contention: {'; '.join(d['contention'])}" if d.get("contention") else "") + "\n")


def cmd_doctor(args, out):
    """The stack (versions, supported range, what imports) and each board family's paths with it; exit 1 when
    an installed package is outside the supported range or does not import."""
    import logging
    from roofline_kernels.doctor import doctor, format_doctor
    logging.getLogger("torchao").setLevel(logging.ERROR)  # its "Failed to load ... .so" notes on a CPU build
    d = doctor()
    if args.json:
        json.dump(d, out, indent=2)
    else:
        out.write(format_doctor(d))
    return 0 if d["ok"] else 1


def add_store_option(p):
    p.add_argument("--cache-dir", help="the profile store, shared with pytest (default: $ROOFLINE_CACHE_DIR, "
                   "$XDG_CACHE_HOME/roofline or ~/.cache/roofline)")


def add_commands(sub) -> None:
    """Register this layer's subcommands on ``sub`` (an argparse subparsers action)."""
    p = sub.add_parser("measure", help="measure an operator on this device, next to its prediction")
    add_op_arguments(p, MEASURE_OPS)
    add_precision_options(p)
    add_hardware_options(p, default=None)
    p.add_argument("--mode", choices=("cold", "hot"), default="cold")
    p.add_argument("--warmup-ms", type=positive_float, default=25.0)
    p.add_argument("--rep-ms", type=positive_float, default=100.0)
    p.add_argument("--cuda-graph", action="store_true", help="replay the kernel from a CUDA graph (launch-bound kernels)")
    g = p.add_argument_group("spot check (--precision all or a comma list: each precision in turn, one table)")
    g.add_argument("--max-seconds", type=positive_float, default=10.0, action=Given,
                   help="per-precision timing budget; a precision that cannot fit it is reported, not run (default 10; "
                        "a single precision's measure is bounded only when it is given)")
    g.add_argument("--no-check", action="store_true", help="skip the correctness check against the FP32 reference")
    g.add_argument("--html", help="write the shape's roofline with every precision's points and the table here "
                   "(a spot check even for one precision: --json then prints its {records: [...]} form)")
    g.add_argument("--plot", help="write the roofline alone here (.svg, or .png through matplotlib)")
    add_store_option(p)
    p.add_argument("--simulate", metavar="KEY", help="run on a simulated device (e.g. h100_sxm, gb10, "
                   "jetson_orin_nano): its detection, kernel paths, capability gates and CUDA's rules, with "
                   "synthesised times, every record marked SIMULATED (needs this repository's tests/)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("selftest", help="how well the suite's verdicts hold on this host: false alarms, and the "
                       "smallest planted slowdown caught per precision (needs the repository checkout)")
    p.add_argument("--runs", type=_at_least_one, default=3, help="healthy and planted runs, each (default 3)")
    p.add_argument("--factors", type=_factors, default=(2.0, 1.5),
                   help="planted slowdowns, comma-separated, each > 1 (default 2,1.5)")
    p.add_argument("--precisions", type=_selftest_precisions, default=None,
                   help="the GEMV cases to run (default all: fp32,bf16,int8,int8_bf16,int4_tinygemm_bf16)")
    p.add_argument("--keep", default=None, help="keep the runs' reports and private store in this folder")
    add_store_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_selftest)

    p = sub.add_parser("calibrate", help="measure this device's bandwidth and per-precision peaks; save the profile")
    p.add_argument("--hardware", default=None, help="registry key to file the profile under (default: detected)")
    p.add_argument("--hardware-file", help="JSON file defining custom hardware (registered before lookup)")
    p.add_argument("--quick", action="store_true", help="smaller sweeps (seconds instead of a minute)")
    p.add_argument("--refresh", action="store_true", help="measure again even if a cached profile exists")
    add_store_option(p)
    p.add_argument("--show", action="store_true", help="print the profiles stored and when they were measured")
    p.add_argument("--efficiency", action="store_true",
                   help="sweep the efficiency model anew (a profile without one gets one anyway: the expected time "
                        "beside the bound needs no flag)")
    p.add_argument("--efficiency-budget-s", type=_seconds, default=None,
                   help="wall budget of the efficiency sweep (default: 20 s with --quick, 90 s without; 0: no sweep)")
    p.add_argument("--score", action="store_true",
                   help="measure held-out shapes the model never saw and print its accuracy per path against the "
                        "target (leave-one-out is printed anyway)")
    p.add_argument("--output", help="also write the profile here (atomically)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("doctor", help="the installed stack against the supported range, and which board families' "
                       "paths it can run (exit 1 when something is outside the range or does not import)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)

