"""The theory's commands (formats, hardware, predict, recommend, sweep) and the CLI's shared parts.

Each layer brings its own commands: this module registers the theory's, ``kernels.cli`` registers
measure and calibrate, ``quantize.cli`` registers quantize, and ``roofline.__main__`` (the thin entry
point behind ``python -m roofline`` and the ``roofline`` script) composes them. This module never
imports the layers above it; they import the shared options and helpers from here.

Every command takes ``--json``. Bad input prints one line on stderr and exits 2.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys

from . import (FORMATS, apply_power_mode, known_hardware, attention, ffn, gemm, gemv, get_hardware, get_model_config,
               load_calibration, load_hardware_file, model_step, predict, recommend_quantization, scale_clocks,
               sweep_table, transformer_layer)
from .atomic import write_atomic
from .efficiency import expected_fields, expected_time, model_of
from .models import PHASES
from .memory import memory_plan
from .plan import recommend_model, tokens_per_step
from .predict import CompositePrediction

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a writer killed by SIGPIPE


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{self.prog}: {message}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return value


def fmt_time(seconds: float) -> str:
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds / 1e-9:.4g} ns"


# --- shared options ------------------------------------------------------------------------------

def add_hardware_options(p, default="gb10"):
    g = p.add_argument_group("hardware")
    g.add_argument("--hardware", default=default,
                   help=f"registry key or alias (default: {default or 'the detected device'})")
    g.add_argument("--hardware-file", help="JSON file defining custom hardware (registered before lookup)")
    g.add_argument("--calibration", help="calibration profile (JSON) to load beside the datasheet peaks")
    g.add_argument("--peaks", choices=("datasheet", "calibrated"), default=None,
                   help="which roof to predict against (default: calibrated when --calibration is given)")
    g.add_argument("--power-mode", help="Jetson nvpmodel mode name or id (e.g. 7W, MAXN_SUPER)")
    g.add_argument("--gpu-clock-mhz", type=positive_float, help="scale compute peaks to this GPU clock")
    g.add_argument("--mem-clock-mhz", type=positive_float, help="scale bandwidth to this memory clock")
    g.add_argument("--active-sms", type=positive_int, help="scale compute peaks to this many SMs")


def add_model_precision_options(p):
    g = p.add_argument_group("model precision (layer, model)")
    g.add_argument("--lm-head-precision", help="LM head format (default 'weight': the weight format, as quantize/ "
                   "does; GPTQ/AWQ checkpoints keep it bf16)")
    g.add_argument("--expert-precision", help="routed experts' weight format (default: the checkpoint's, "
                   "e.g. gpt-oss mxfp4, else the weight format)")


def add_precision_options(p):
    g = p.add_argument_group("precision")
    g.add_argument("--precision", help="weights and activations (storage-only formats: weights, fp16 activations)")
    g.add_argument("--weight-precision", help="weight format (overrides --precision)")
    g.add_argument("--act-precision", help="activation format (overrides --precision)")
    g.add_argument("--out-precision", help="output format (default: activations if 16/32-bit float, else fp16)")
    g.add_argument("--kv-precision", help="KV-cache format (attention, layer, model)")


def resolve_hardware(args):
    if args.hardware_file:
        load_hardware_file(args.hardware_file)
    hw = get_hardware(args.hardware)
    if args.power_mode:
        hw = apply_power_mode(hw, args.power_mode)
    if args.gpu_clock_mhz or args.mem_clock_mhz or args.active_sms:
        hw = scale_clocks(hw, args.gpu_clock_mhz, args.active_sms, args.mem_clock_mhz)
    if args.calibration:
        hw = hw.with_calibration(load_calibration(args.calibration))
    if args.peaks is None:
        args.peaks = "calibrated" if args.calibration else "datasheet"
    return hw


def formats_kwargs(args, precision_default="fp16"):
    precision = args.precision
    if precision is None and args.weight_precision is None and args.act_precision is None:
        precision = precision_default
    return dict(precision=precision, weight=args.weight_precision, act=args.act_precision, out=args.out_precision)


def build_cost(args):
    """The operator (or composite) the predict/measure flags describe."""
    f = formats_kwargs(args)
    op = args.op
    if op == "gemv":
        return gemv(args.n, args.k, **f)
    if op == "gemm":
        return gemm(args.m, args.n, args.k, **f)
    if op == "ffn":
        return ffn(args.m, args.hidden_size or 4096, args.intermediate_size or 14336, **f)
    f.pop("weight")
    if op == "attention":
        seq_q = args.seq_q or (1 if args.phase == "decode" else args.seq_kv)
        return attention(args.batch, args.heads, args.kv_heads or args.heads, seq_q, args.seq_kv, args.head_dim,
                         kv=args.kv_precision, causal=True, **f)
    cfg, kw = model_args(args)
    if op == "layer":
        kw.pop("lm_head")
        return transformer_layer(cfg, args.phase, args.batch, args.seq_kv, **kw)
    return model_step(cfg, args.phase, args.batch, args.seq_kv, **kw)


def model_args(args):
    """(model config, the format keywords of model_step and memory_plan) the predict flags describe."""
    cfg = get_model_config(args.model, hidden=args.hidden_size, heads=args.model_heads, kv_heads=args.model_kv_heads,
                           intermediate=args.intermediate_size, layers=args.layers, vocab=args.vocab_size,
                           head_dim=args.model_head_dim)
    return cfg, dict(formats_kwargs(args), kv=args.kv_precision, lm_head=getattr(args, "lm_head_precision", None),
                     expert_weight=getattr(args, "expert_precision", None))


PREDICT_OPS = ("gemv", "gemm", "attention", "ffn", "layer", "model")
MEASURE_OPS = ("gemv", "gemm", "attention")


def add_op_arguments(p, ops=PREDICT_OPS):
    p.add_argument("op", choices=ops)
    g = p.add_argument_group("shape")
    g.add_argument("--m", type=positive_int, default=1, help="rows of activations / tokens (GEMM, FFN)")
    g.add_argument("--n", type=positive_int, default=4096, help="output features")
    g.add_argument("--k", type=positive_int, default=4096, help="input features (reduction)")
    g.add_argument("--batch", type=positive_int, default=1)
    g.add_argument("--heads", type=positive_int, default=32)
    g.add_argument("--kv-heads", type=positive_int, default=None, help="KV heads (default: --heads)")
    g.add_argument("--seq-q", type=positive_int, default=None, help="query length (default: 1 decode, seq-kv prefill)")
    g.add_argument("--seq-kv", "--seq-len", type=positive_int, default=1024, help="context length")
    g.add_argument("--head-dim", type=positive_int, default=128)
    g.add_argument("--phase", choices=PHASES, default="decode")
    g.add_argument("--model", default="llama3-8b", help="model config for layer/model")
    g.add_argument("--hidden-size", type=positive_int)
    g.add_argument("--intermediate-size", type=positive_int)
    g.add_argument("--layers", type=positive_int)
    g.add_argument("--vocab-size", type=positive_int)
    g.add_argument("--model-heads", type=positive_int, help="override the model's attention heads")
    g.add_argument("--model-kv-heads", type=positive_int, help="override the model's KV heads")
    g.add_argument("--model-head-dim", type=positive_int, help="override the model's head dim")


# --- commands ------------------------------------------------------------------------------------

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
        for label, spec in (("bandwidth GB/s", hw.bandwidth), ("memory GB", hw.memory), ("GPU clock MHz", hw.gpu_clock),
                            ("memory clock MHz", hw.mem_clock)):
            if spec:
                out.write(f"  {label:<18}{spec.value:>10g}  {spec.flags:<18}{spec.note}\n")
        for cls, spec in hw.peaks.items():
            out.write(f"  {cls + ' TFLOP/s':<18}{spec.value:>10g}  {spec.flags:<18}{spec.note}\n")
        out.write(f"  native: {', '.join(sorted(hw.native))}\n")
        return
    if args.json:
        return json.dump([get_hardware(k).to_dict() for k in known_hardware()], out, indent=2)
    classes = ("fp32", "tf32", "fp16", "fp8", "int8", "int4", "fp4")
    out.write(f"{'key':<24}{'arch':<8}{'GB/s':>8}{'GB':>6}" + "".join(f"{c:>9}" for c in classes) + "\n")
    for hw in map(get_hardware, known_hardware()):
        def cell(spec):
            if spec is None:
                return f"{'-':>9}"
            mark = ("*" if spec.derived else "") + ("?" if spec.unverified else "")
            return f"{spec.value:>8g}{mark or ' '}"
        out.write(f"{hw.key:<24}{hw.arch:<8}" + (f"{hw.bandwidth.value:>8g}" if hw.bandwidth else f"{'-':>8}")
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
        out.write(f"{indent}  + launch overhead {fmt_time(p.launch_overhead_s)} = {fmt_time(p.time_with_overhead_s)}\n")


def _print_composite(c: CompositePrediction, out):
    out.write(f"{c.name} on {c.hardware} ({c.peaks} peaks): {fmt_time(c.time_s)} per step "
              f"({1 / c.time_s:.4g} steps/s), {c.bound}-bound, {c.kernels} kernels\n"
              f"  flops {c.flops:.4g}  bytes {c.bytes:.4g}  AI {c.ai:.4g} FLOP/B\n")
    if c.launch_overhead_s:
        out.write(f"  + launch overhead {fmt_time(c.launch_overhead_s)} = {fmt_time(c.time_with_overhead_s)}\n")
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
            d.update(tokens_per_s=tokens_per_s, memory=plan.to_dict())
            if expected["expected_time_s"]:
                d["expected_tokens_per_s"] = tokens_per_s * result.time_s / expected["expected_time_s"]
        return json.dump(d, out, indent=2)
    (_print_composite if isinstance(result, CompositePrediction) else _print_prediction)(result, out)
    if expected["expected_time_s"]:
        out.write(f"  expected {fmt_time(expected['expected_time_s'])} ({expected['expected_efficiency']:.0%} of the "
                  f"bound; {expected['expected_source']}: {expected['expected_note']})\n")
    if plan is not None:
        out.write(f"  {tokens_per_s:.4g} tokens/s ({args.phase}, batch {args.batch}, context {args.seq_kv})\n"
                  f"  {plan.summary()}\n")


def _energy_fields(result, hw, tokens) -> dict:
    """energy_j (and tokens_per_j for a model step) at the roofline time, from ``roofline.energy``'s costs for
    this hardware; the notes say which parts are unverified or unknown (``roofline energy`` shows it all)."""
    from .energy import energy_costs, predict_energy
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
    rec = recommend_model(args.model, hw, args.phase, args.batch or 1, args.context or 4096, args.memory_limit_gb,
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
    p.add_argument("--memory-limit-gb", type=positive_float, help="model: plan memory against this (and the device's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("recommend", help="which quantization to use for a GEMM shape, or for a whole --model")
    p.add_argument("--m", type=positive_int, help="GEMM rows (default 1)")
    p.add_argument("--n", type=positive_int, help="GEMM output features (default 4096)")
    p.add_argument("--k", type=positive_int, help="GEMM input features (default 4096)")
    p.add_argument("--model", help="recommend for this whole model (weights, KV cache and workspace must fit)")
    p.add_argument("--context", type=positive_int, help="--model: context (decode) or prompt (prefill) length "
                   "(default 4096)")
    p.add_argument("--batch", type=positive_int, help="--model: sequences per step (default 1)")
    p.add_argument("--lm-head-precision", help="--model: LM head format (default: the weight format, as "
                   "quantize/ does; GPTQ/AWQ keep it bf16)")
    p.add_argument("--kv-precision", help="--model: KV-cache format (default: the residual stream's)")
    p.add_argument("--phase", choices=PHASES, default="decode")
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

    from . import compare  # `report`: its command lives beside the comparison it draws
    compare.add_commands(sub)
    from . import energy_cli  # `energy` and `schedule`: power modes, joules, tokens/J
    energy_cli.add_commands(sub)


def build_parser(layers=()) -> argparse.ArgumentParser:
    """The parser with the theory's commands, then each of ``layers``' (modules with ``add_commands``)."""
    parser = _Parser(prog="roofline", description="roofline: predict, measure and validate ML kernels "
                     "against their roofline")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_commands(sub)
    for layer in layers:
        layer.add_commands(sub)
    return parser


def main(argv=None, out=None, layers=()) -> int:
    """Run one command; 0 on success, 2 on bad input (one line on stderr)."""
    out = out or sys.stdout
    parser = build_parser(layers)
    try:
        args = parser.parse_args(argv)
        rc = args.func(args, out)
        if getattr(args, "json", False):
            out.write("\n")
        if isinstance(rc, int):
            return rc
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:  # bad values and unsupported paths: each names the value and what is allowed
        print(f"roofline: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader went away (``| head``): not an error of ours. Point stdout at devnull so the
        # interpreter's final flush does not raise again, and exit as a killed-by-SIGPIPE writer would.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return 0
