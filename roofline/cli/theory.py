"""The theory's commands: formats, hardware, predict, recommend, sweep (``report``, ``energy`` and ``schedule``
live in their own modules beside it). Shared options and parsing helpers are in ``roofline.cli.options``;
``build_parser`` and ``main`` in ``roofline.cli``.
"""
from __future__ import annotations

import csv
import io
import json

from .. import FORMATS, get_hardware, known_hardware, load_hardware_file, predict, recommend_quantization, sweep_table
from ..atomic import write_atomic
from .options import (Given, UsageError, add_hardware_options, add_model_precision_options, add_op_arguments,
                  add_precision_options, build_cost, fmt_time, model_args, positive_float, positive_int,
                  resolve_hardware)
from ..efficiency import expected_fields, expected_time, model_of
from ..deployments import get_deployment, names_for
from ..memory import memory_plan
from ..models import DEFAULT_CONTEXT, PHASES, describe_formats, step_formats
from ..plan import recommend_model, tokens_per_step
from ..predict import CompositePrediction


def cmd_formats(args, out):
    rows = [{"name": f.name, "bits_per_element": f.bits_per_element, "bytes_per_element": f.bytes_per_element,
             "per_tensor_bits": f.per_tensor_bits, "kind": f.kind, "compute_class": f.compute_class,
             "layout": f.layout, "aliases": list(f.aliases), "source": f.source} for f in FORMATS.values()]
    if args.json:
        return json.dump(rows, out, indent=2)
    out.write(f"{'format':<15}{'bits/elem':>10}  {'math':<7} layout\n")
    for r in rows:
        extra = f" (+{r['per_tensor_bits']} bits/tensor)" if r["per_tensor_bits"] else ""
        out.write(f"{r['name']:<15}{r['bits_per_element']:>10.4g}  {r['compute_class'] or '-':<7} "
                  f"{r['layout']}{extra}\n")


def cmd_hardware(args, out):
    if args.hardware_file:
        load_hardware_file(args.hardware_file)
    if args.key:
        hw = get_hardware(args.key)
        if args.json:
            return json.dump(hw.to_dict(), out, indent=2)
        out.write(f"{hw.key}: {hw.name} ({hw.arch})\nsource: {hw.source}\n")
        for label, spec in (("bandwidth GB/s", hw.bandwidth), ("memory GB", hw.memory),
                            ("usable memory GB", hw.usable_memory), ("GPU clock MHz", hw.gpu_clock),
                            ("memory clock MHz", hw.mem_clock)):
            if spec:
                out.write(f"  {label:<18}{spec.value:>10g}  {spec.flags:<19}{spec.note}\n")
        for cls, spec in hw.peaks.items():
            out.write(f"  {cls + ' TFLOP/s':<18}{spec.value:>10g}  {spec.flags:<19}{spec.note}\n")
        out.write(f"  native: {', '.join(sorted(hw.native))}\n")
        return
    if args.json:
        return json.dump([get_hardware(k).to_dict() for k in known_hardware()], out, indent=2)
    classes = ("fp32", "tf32", "fp16", "fp8", "int8", "int4", "fp4")
    entries = list(map(get_hardware, known_hardware()))
    w = max(len(hw.key) for hw in entries) + 2  # the longest key and two spaces (a 25-letter key ran into its arch)
    out.write(f"{'key':<{w}}{'arch':<8}{'GB/s':>8}{'GB':>6}" + "".join(f"{c:>9}" for c in classes) + "\n")
    for hw in entries:
        def cell(spec):
            if spec is None:
                return f"{'-':>9}"
            mark = ("*" if spec.derived else "") + ("?" if spec.unverified else "")
            return f"{spec.value:>8g}{mark or ' '}"
        out.write(f"{hw.key:<{w}}{hw.arch:<8}" + (f"{hw.bandwidth.value:>8g}" if hw.bandwidth else f"{'-':>8}")
                  + (f"{hw.memory.value:>6g}" if hw.memory else f"{'-':>6}")
                  + "".join(cell(hw.peaks.get(c)) for c in classes) + "\n")
    out.write("dense TFLOP/s (TOP/s for int); * derived, ? unverified; `roofline hardware KEY` shows sources\n")


def _print_prediction(p, out, indent=""):
    out.write(f"{indent}{p.op} {p.shape} on {p.hardware}: {p.precision} [{p.method}]\n"
              f"{indent}  flops {p.flops:.4g}  bytes {p.bytes:.4g}  AI {p.ai:.4g} FLOP/B (critical {p.critical_ai:.4g})\n"
              f"{indent}  t_memory {fmt_time(p.t_memory_s)}  t_compute {fmt_time(p.t_compute_s)}  -> "
              f"{fmt_time(p.time_s)}, {p.bound}-bound\n"
              f"{indent}  attainable {p.attainable_tflops:.4g} TFLOP/s of {p.peak_tflops:g} ({p.compute_class}), "
              f"{p.bandwidth_gbs:g} GB/s; {p.peaks} peaks: {p.peak_source}\n")
    if p.launch_overhead_s:
        out.write(f"{indent}  + launch overhead {fmt_time(p.launch_overhead_s)}{_launches(p)} = "
                  f"{fmt_time(p.time_with_overhead_s)}\n")


def _launches(p) -> str:
    """How many launches the overhead was charged for, where that is not one per kernel (grouped GEMMs)."""
    kernels = getattr(p, "kernels", 1)
    return "" if p.launches == kernels else f" ({p.launches:.4g} launches)"


def _print_composite(c: CompositePrediction, out):
    out.write(f"{c.name} on {c.hardware} ({c.peaks} peaks): {fmt_time(c.time_s)} per step "
              f"({1 / c.time_s:.4g} steps/s), {c.bound}-bound, {c.kernels} kernels\n"
              f"  flops {c.flops:.4g}  bytes {c.bytes:.4g}  AI {c.ai:.4g} FLOP/B\n")
    if c.launch_overhead_s:
        out.write(f"  + launch overhead {fmt_time(c.launch_overhead_s)}{_launches(c)} = "
                  f"{fmt_time(c.time_with_overhead_s)}\n")
    out.write(f"  {'kernel':<14}{'x':>5}{'precision':>20}{'time':>12}{'share':>8}  bound\n")
    for p, mult in c.flat():
        out.write(f"  {p.name:<14}{mult:>5}{p.precision:>20}{fmt_time(p.time_s * mult):>12}"
                  f"{p.time_s * mult / c.time_s:>8.1%}  {p.bound}\n")


def cmd_predict(args, out):
    hw = resolve_hardware(args)
    result = predict(build_cost(args), hw, args.peaks, (args.launch_overhead_us or 0.0) * 1e-6)
    plan = None
    if args.op == "model":  # a whole model says what it needs in memory and whether that fits
        cfg, kw = model_args(args)
        plan = memory_plan(cfg, args.phase, args.batch, args.seq_kv, hw, args.memory_limit_gb, **kw)
        tokens_per_s = tokens_per_step(args.phase, args.batch, args.seq_kv) / result.time_s
    expected = expected_fields(result, hw, model_of(hw.calibration) if args.calibration else None)
    if args.json:
        d = result.to_dict()
        d.update(expected)
        d.update(_energy_fields(result, hw, tokens_per_step(args.phase, args.batch, args.seq_kv)
                                if args.op == "model" else None))
        if plan is not None:
            d.update(tokens_per_s=tokens_per_s, memory=plan.to_dict(), formats=_formats(cfg, kw),
                     deployment=_deployment_fields(args, hw, cfg))
            if expected["expected_time_s"]:
                d["expected_tokens_per_s"] = tokens_per_s * result.time_s / expected["expected_time_s"]
        return json.dump(d, out, indent=2)
    (_print_composite if isinstance(result, CompositePrediction) else _print_prediction)(result, out)
    if expected["expected_time_s"]:
        unc = expected.get("expected_uncertainty")
        out.write(f"  expected {fmt_time(expected['expected_time_s'])}{f' +-{unc:.0%}' if unc else ''} "
                  f"({expected['expected_efficiency']:.0%} of the bound; {expected['expected_source']}: "
                  f"{expected['expected_note']})\n")
    elif args.calibration:  # asked against a profile: say why there is no number rather than print none
        out.write(f"  expected - ({expected.get('expected_note') or 'no efficiency model in this profile'})\n")
    if plan is not None:
        out.write(f"  {tokens_per_s:.4g} tokens/s ({args.phase}, batch {args.batch}, context {args.seq_kv})\n"
                  f"  {plan.summary()}\n")
        _print_formats(args, cfg, kw, hw, out)


def _formats(cfg, kw) -> dict:
    return describe_formats(cfg, step_formats(cfg, **kw))


def _deployment_fields(args, hw, cfg) -> dict | None:
    if not getattr(args, "deployment", None):
        return None
    d = get_deployment(args.deployment)
    return {"name": d.name, "runtime": d.runtime, "source": d.source, "note": d.note,
            "measured": d.measured_for(cfg, hw.base_key)}


def _print_formats(args, cfg, kw, hw, out):
    """The formats the prediction assumed, and whose: a named deployment's (with its source and any published
    measurement on this hardware), or the flags' (the defaults: fp16 throughout, experts as the checkpoint ships)."""
    text = ", ".join(f"{part} {fmt}" for part, fmt in _formats(cfg, kw).items())
    d = _deployment_fields(args, hw, cfg)
    if d is None:
        out.write(f"  formats: {text} (the precision flags' and their defaults; --deployment prices a runtime's "
                  f"formats: {', '.join(names_for(cfg))})\n")
        return
    out.write(f"  formats: {text} (deployment {d['name']}: {d['runtime']}; {d['source']})\n")
    if d["note"]:
        out.write(f"    note: {d['note']}\n")
    if d["measured"]:
        out.write(f"    published on {hw.base_key}: {d['measured']}\n")


def _energy_fields(result, hw, tokens) -> dict:
    """energy_j (and tokens_per_j for a model step) at the roofline time, from ``roofline.energy``'s costs for
    this hardware; the notes say which parts are unverified or unknown (``roofline energy`` shows it all)."""
    from ..energy import energy_costs, predict_energy
    try:
        e = predict_energy(result, energy_costs(hw), tokens)
    except (KeyError, ValueError) as err:  # no energy costs for this hardware
        return {"energy_j": None, "energy_note": str(err)}
    return {"energy_j": e.energy_j, "tokens_per_j": e.tokens_per_j, "power_w": e.power_w,
            "energy_note": "; ".join((e.basis,) + tuple(e.notes))}


def cmd_recommend(args, out):
    hw = resolve_hardware(args)
    if args.model:
        return _recommend_model(args, hw, out)
    if args.context or args.batch or args.lm_head_precision or args.kv_precision:
        raise UsageError("--context, --batch, --lm-head-precision and --kv-precision need --model (a whole model)")
    model = model_of(hw.calibration) if args.calibration else None
    # a GEMM's phase is a label only (its --m is what prices it): said where given, never assumed
    rec = recommend_quantization(hw, args.m or 1, args.n or 4096, args.k or 4096, args.phase, args.memory_limit_gb,
                                 baseline=args.baseline, peaks=args.peaks,
                                 expected=(lambda p: expected_time(p, hw, model)) if model is not None else None)
    if args.json:
        return json.dump(rec.to_dict(), out, indent=2)
    out.write(f"{rec.precision}: {rec.method}\n  {rec.reason}\n  predicted speedup vs {args.baseline}: "
              f"{rec.predicted_speedup:.3g}x ({fmt_time(rec.baseline.time_s)} -> {fmt_time(rec.prediction.time_s)})\n")
    for prec, method, t, note in rec.ranking:
        out.write(f"    {prec:<20}{fmt_time(t) if t else '-':>12}  {note[:90]}\n")


def _recommend_model(args, hw, out, shown=12):
    if args.m or args.n or args.k:
        raise UsageError("--model recommends for a whole model and --m/--n/--k for one GEMM: give one or the other")
    rec = recommend_model(args.model, hw, args.phase or "decode", args.batch or 1, args.context or DEFAULT_CONTEXT,
                          args.memory_limit_gb,
                          baseline=args.baseline, lm_head=args.lm_head_precision, kv=args.kv_precision,
                          peaks=args.peaks)
    if args.json:
        return json.dump(rec.to_dict(), out, indent=2)
    speedup = f"{rec.predicted_speedup:.3g}x" if rec.predicted_speedup else "-"
    out.write(f"{rec.model} on {rec.hardware}: {rec.label} ({rec.method})\n  {rec.reason}\n"
              f"  predicted {rec.tokens_per_s:.4g} tokens/s ({rec.phase}, batch {rec.batch}, context {rec.context}); "
              f"vs {rec.baseline.label}: {speedup}\n  {rec.chosen.memory.summary()}\n")
    rows = rec.to_dict()["ranking"]
    for r in rows[:shown]:
        state = r["note"] or ("fits" if r["fits"] is not False else "")
        t = f"{r['tokens_per_s']:.4g} tok/s" if r["tokens_per_s"] else "-"
        out.write(f"    {r['precision']:<44}{t:>16}{r['total_gb']:>9.3g} GB  {state[:80]}\n")
    if len(rows) > shown:
        out.write(f"    ... {len(rows) - shown} more (--json lists them all)\n")


def _parse_shape(text: str):
    try:
        dims = [int(x) for x in text.lower().split("x")]
    except ValueError:
        dims = []
    if len(dims) != 3 or min(dims) < 1:
        raise UsageError(f"bad shape {text!r}; expected MxNxK with positive integers, e.g. 1x4096x4096")
    return dims


def cmd_sweep(args, out):
    hws = [h.strip() for h in args.hardware.split(",") if h.strip()]
    if args.hardware_file:
        load_hardware_file(args.hardware_file)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    shapes = [_parse_shape(s) for s in args.shapes.split(",") if s.strip()]
    rows = sweep_table(hws, precisions, shapes)
    fmt = "json" if args.json else args.format
    if fmt == "json":
        text = json.dumps(rows, indent=2)
    elif fmt == "csv":
        buf = io.StringIO()
        fields = list(dict.fromkeys(k for r in rows for k in r))
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
        text = buf.getvalue()
    else:
        lines = [f"{'hardware':<24}{'precision':<15}{'shape':<20}{'time':>12}{'AI':>10}  bound"]
        for r in rows:
            shape = f"{r['m']}x{r['n']}x{r['k']}"
            if r["status"] != "ok":
                lines.append(f"{r['hardware']:<24}{r['precision']:<15}{shape:<20}{'unsupported':>12}")
            else:
                lines.append(f"{r['hardware']:<24}{r['precision']:<15}{shape:<20}{fmt_time(r['time_s']):>12}"
                             f"{r['ai']:>10.4g}  {r['bound']}")
        text = "\n".join(lines) + "\n"
    if args.output:
        write_atomic(args.output, text)
        out.write(f"wrote {len(rows)} rows to {args.output}\n")
    else:
        out.write(text)


def add_commands(sub) -> None:
    """Register the theory's subcommands on ``sub`` (an argparse subparsers action)."""
    p = sub.add_parser("formats", help="number formats and their bits per element")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_formats)

    p = sub.add_parser("hardware", help="the hardware registry (with KEY: one entry with sources)")
    p.add_argument("key", nargs="?")
    p.add_argument("--hardware-file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_hardware)

    p = sub.add_parser("predict", help="roofline prediction for an operator, a layer or a model step")
    add_op_arguments(p)
    add_precision_options(p)
    add_hardware_options(p)
    p.add_argument("--launch-overhead-us", type=positive_float, help="per-kernel launch overhead, reported apart")
    add_model_precision_options(p)
    p.add_argument("--memory-limit-gb", type=positive_float, action=Given,
                   help="model: plan memory against this (and the device's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("recommend", help="which quantization to use for a GEMM shape, or for a whole --model")
    p.add_argument("--m", type=positive_int, help="GEMM rows (default 1)")
    p.add_argument("--n", type=positive_int, help="GEMM output features (default 4096)")
    p.add_argument("--k", type=positive_int, help="GEMM input features (default 4096)")
    p.add_argument("--model", help="recommend for this whole model (weights, KV cache and workspace must fit)")
    p.add_argument("--context", type=positive_int, help="--model: context (decode) or prompt (prefill) length "
                   f"(default {DEFAULT_CONTEXT}, the one default of every command)")
    p.add_argument("--batch", type=positive_int, help="--model: sequences per step (default 1)")
    p.add_argument("--lm-head-precision", help="--model: LM head format (default: the weight format, as "
                   "roofline_quantize/ does; GPTQ/AWQ keep it bf16)")
    p.add_argument("--kv-precision", help="--model: KV-cache format (default: the residual stream's)")
    p.add_argument("--phase", choices=PHASES, default=None, help="--model: decode (default) or prefill; a GEMM: a label for its --m")
    p.add_argument("--memory-limit-gb", type=positive_float, help="GEMM: its weights; --model: the whole model")
    p.add_argument("--baseline", default="fp16", help="unquantized format (fp16, bf16, fp32)")
    add_hardware_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("sweep", help="precisions x shapes (x hardware) table; CSV/JSON out")
    p.add_argument("--hardware", default="gb10", help="comma-separated keys")
    p.add_argument("--hardware-file")
    p.add_argument("--precisions", default="fp16,fp8_e4m3,int8,int4_tinygemm,nvfp4")
    p.add_argument("--shapes", default="1x4096x4096,16x4096x4096,4096x4096x4096", help="MxNxK,MxNxK,...")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument("--output", help="write here (atomically) instead of stdout")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_sweep)
