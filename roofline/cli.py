"""``python -m roofline`` / ``roofline``: the theory from the command line.

Every command takes ``--json``. Bad input prints one line on stderr and exits 2.
Commands that measure (``measure``, ``calibrate``) import ``kernels`` inside the command, so the
theory commands never touch torch.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys

from . import (FORMATS, apply_power_mode, known_hardware, attention, ffn, gemm, gemv, get_hardware, get_model_config,
               load_calibration, load_hardware_file, model_step, predict, recommend_quantization, scale_clocks,
               sweep_table, transformer_layer)
from .atomic import write_atomic
from .models import PHASES
from .predict import CompositePrediction

EXIT_USAGE = 2


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
    cfg = get_model_config(args.model, hidden=args.hidden_size, heads=args.model_heads, kv_heads=args.model_kv_heads,
                           intermediate=args.intermediate_size, layers=args.layers, vocab=args.vocab_size,
                           head_dim=args.model_head_dim)
    build = transformer_layer if op == "layer" else model_step
    return build(cfg, args.phase, args.batch, args.seq_kv, weight=args.weight_precision, kv=args.kv_precision, **f)


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
    if args.json:
        return json.dump(result.to_dict(), out, indent=2)
    (_print_composite if isinstance(result, CompositePrediction) else _print_prediction)(result, out)


def cmd_recommend(args, out):
    hw = resolve_hardware(args)
    rec = recommend_quantization(hw, args.m, args.n, args.k, args.phase, args.memory_limit_gb,
                                 baseline=args.baseline, peaks=args.peaks)
    if args.json:
        return json.dump(rec.to_dict(), out, indent=2)
    out.write(f"{rec.precision}: {rec.method}\n  {rec.reason}\n  predicted speedup vs {args.baseline}: "
              f"{rec.predicted_speedup:.3g}x ({fmt_time(rec.baseline.time_s)} -> {fmt_time(rec.prediction.time_s)})\n")
    for prec, method, t, note in rec.ranking:
        out.write(f"    {prec:<20}{fmt_time(t) if t else '-':>12}  {note[:90]}\n")


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


def _progress(line: str) -> None:
    print(f"[roofline] {line}", file=sys.stderr, flush=True)


def _measure_context(args):
    """(device info, hardware entry with calibration if any, peaks) for measure."""
    from kernels.calibrate import load_or_calibrate
    from kernels.device import detect
    from kernels.measure import hardware_for
    info = detect(args.hardware)
    cal = load_calibration(args.calibration) if args.calibration else None
    hw = hardware_for(info, cal)
    needs_cal = args.peaks == "calibrated" or hw.bandwidth is None
    if cal is None and needs_cal and args.peaks != "datasheet":
        cal = load_or_calibrate(info, args.cache_dir, quick=True, progress=_progress, hw=hw)
        hw = hardware_for(info, cal)
    peaks = args.peaks or ("calibrated" if cal is not None else "datasheet")
    return info, hw, peaks


def cmd_measure(args, out):
    from kernels.measure import measure_kernel
    from kernels.ops import make_attention, make_gemm, make_gemv
    info, hw, peaks = _measure_context(args)
    f = formats_kwargs(args, precision_default="fp32")
    f.pop("out")
    if args.op == "gemv":
        kernel = make_gemv(args.n, args.k, device=info.torch_device, **f)
    elif args.op == "gemm":
        kernel = make_gemm(args.m, args.n, args.k, device=info.torch_device, **f)
    else:
        seq_q = args.seq_q or (1 if args.phase == "decode" else args.seq_kv)
        kernel = make_attention(args.batch, args.heads, args.kv_heads or args.heads, seq_q, args.seq_kv,
                                args.head_dim, f["precision"] or f["act"] or "fp32", kv=args.kv_precision,
                                device=info.torch_device)
    _progress(f"measuring {kernel.op} {kernel.precision} on {info.name} ({args.mode})")
    m = measure_kernel(kernel, info, hw, args.mode, peaks, args.warmup_ms, args.rep_ms, cuda_graph=args.cuda_graph)
    if args.json:
        return json.dump(m.to_dict(), out, indent=2, default=str)
    t = m.timing
    out.write(f"{m.op} {m.precision} {m.shape} on {m.hardware} ({m.device_name}), {t.mode}; {m.path}\n"
              f"  measured   median {fmt_time(t.median_s)} (p20 {fmt_time(t.p20_s)}, p80 {fmt_time(t.p80_s)}; "
              f"n={t.count}, rel IQR {t.rel_iqr:.1%}{'' if t.converged else ', spread not settled'})\n")
    out.write(f"  predicted  {fmt_time(m.predicted_time_s)} against {peaks} peaks; {m.prediction_note}\n"
              f"  efficiency {m.efficiency:.1%}" + ("  <-- BEATS THE ROOF: a bug to explain" if m.beats_roof else "")
              + "\n")
    out.write(f"  achieved   {m.achieved_gbs:.4g} GB/s, {m.achieved_tflops:.4g} TFLOP/s\n"
              f"  contention {', '.join(m.contention) or 'none seen'}\n")


def cmd_calibrate(args, out):
    from kernels.calibrate import default_cache_dir, load_or_calibrate, save, stored_profiles
    from kernels.device import detect
    from kernels.measure import hardware_for
    if args.show:
        return _show_profiles(stored_profiles(args.cache_dir), args.cache_dir or default_cache_dir(), args.json, out)
    info = detect(args.hardware)
    cal = load_or_calibrate(info, args.cache_dir, quick=args.quick, refresh=args.refresh, progress=_progress,
                            hw=hardware_for(info))
    if args.output:
        save(cal, args.output)
        _progress(f"profile written to {args.output}")
    if args.json:
        return json.dump(cal.to_dict(), out, indent=2, default=str)
    out.write(f"calibration for {cal.hardware} ({info.name}), {cal.timestamp}; profile: {cal.path}\n"
              f"  DRAM bandwidth {cal.bandwidth_gbs:.4g} GB/s; caches: "
              + ", ".join(f"{k} {v:.4g}" for k, v in cal.cache_bandwidth_gbs.items()) + " GB/s\n")
    for cls, v in cal.peaks_tflops.items():
        out.write(f"  {cls:<6} {v:.4g} TFLOP/s\n")
    for prec, why in cal.details.get("skipped", {}).items():
        out.write(f"  {prec:<6} skipped: {why}\n")


def _show_profiles(profiles, store, as_json, out):
    if as_json:
        return json.dump([dict(c.to_dict(), path=c.path) for c in profiles], out, indent=2, default=str)
    out.write(f"profile store {store}: {len(profiles)} profile(s)\n")
    for c in profiles:
        d = c.details
        out.write(f"- {c.hardware} ({c.device.get('name', '?')}), measured {c.timestamp}"
                  f"{' quick' if d.get('quick') else ' full'} in {d.get('seconds', float('nan')):.0f} s; {c.path}\n"
                  f"    DRAM {c.bandwidth_gbs:.4g} GB/s (two looks {d.get('dram_spread', 0):.0%} apart; working set "
                  f"{d.get('dram_working_set', '?')}); " + ", ".join(f"{k} {v:.4g} TFLOP/s" for k, v in
                                                               c.peaks_tflops.items()) + "\n"
                  f"    torch {c.versions.get('torch')}, torchao {c.versions.get('torchao')}"
                  + (f"; contention: {'; '.join(d['contention'])}" if d.get("contention") else "") + "\n")


def cmd_quantize(args, out):
    from kernels.calibrate import load_or_calibrate
    from kernels.device import detect
    from quantize.pipeline import load_local_model, run_pipeline
    info = detect(args.hardware)
    cal = load_calibration(args.calibration) if args.calibration else (
        load_or_calibrate(info, args.cache_dir, quick=True, progress=_progress) if info.kind == "cpu" else None)
    model = None if args.model == "tiny" else load_local_model(args.model)
    _progress(f"recommend -> quantize ({args.precision}) -> measure on {info.name}")
    rep = run_pipeline(model, phase=args.phase, precision=args.precision, prompt_len=args.prompt_len,
                       device_info=info, calibration=cal, rep_ms=args.rep_ms)
    if args.json:
        return json.dump(rep.to_dict(), out, indent=2, default=str)
    q, rec = rep.quantization, rep.recommendation
    out.write(f"model {rep.model} on {rep.hardware} ({rep.device}), {rep.phase}\n"
              f"  recommended {rec['precision']}: {rec['method']} (predicted {rec['predicted_speedup']:.2f}x on "
              f"the {'x'.join(map(str, rec['gemm']))} GEMM)\n"
              f"  applied     {rep.precision} via {q['config']}; {len(q['quantized'])} layers quantized, "
              f"{len(q['skipped'])} skipped" + "".join(f"\n              skipped {n}: {w}" for n, w in q["skipped"]) + "\n"
              f"  bytes       {q['bytes_before'] / 1e6:.1f} MB -> {q['bytes_after'] / 1e6:.1f} MB "
              f"({q['bytes_vs_prediction']:.3f}x the roofline formats' prediction)\n")
    for ph in ("decode", "prefill"):
        b, a = getattr(rep.before, f"{ph}_s"), getattr(rep.after, f"{ph}_s")
        pred = rep.predicted["speedup"][ph]
        out.write(f"  {ph:<11} {fmt_time(b)} -> {fmt_time(a)}: measured {rep.measured_speedup[ph]:.2f}x, predicted "
                  + (f"{pred:.2f}x" if pred else "n/a") + "\n")
    out.write(f"  decode      {rep.before.tokens_per_s:.1f} -> {rep.after.tokens_per_s:.1f} tokens/s; bandwidth "
              f"achieved {rep.before.bandwidth_achieved_gbs:.1f} -> {rep.after.bandwidth_achieved_gbs:.1f} GB/s\n"
              f"  accuracy    logits {rep.accuracy['logits_rel_error']:.2%} from FP32, top-1 agreement "
              f"{rep.accuracy['top1_agreement']:.1%}" + (f", perplexity {rep.accuracy['perplexity']:.3g}"
                                                       if "perplexity" in rep.accuracy else "") + "\n")
    for n in rep.notes:
        out.write(f"  note        {n}\n")


def add_store_option(p):
    p.add_argument("--cache-dir", help="the profile store, shared with pytest (default: $ROOFLINE_CACHE_DIR, "
                   "$XDG_CACHE_HOME/roofline or ~/.cache/roofline)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="roofline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("recommend", help="which quantization to use for a GEMM shape")
    p.add_argument("--m", type=positive_int, default=1)
    p.add_argument("--n", type=positive_int, default=4096)
    p.add_argument("--k", type=positive_int, default=4096)
    p.add_argument("--phase", choices=PHASES, default="decode")
    p.add_argument("--memory-limit-gb", type=positive_float)
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

    p = sub.add_parser("measure", help="measure an operator on this device, next to its prediction")
    add_op_arguments(p, MEASURE_OPS)
    add_precision_options(p)
    add_hardware_options(p, default=None)
    p.add_argument("--mode", choices=("cold", "hot"), default="cold")
    p.add_argument("--warmup-ms", type=positive_float, default=25.0)
    p.add_argument("--rep-ms", type=positive_float, default=100.0)
    p.add_argument("--cuda-graph", action="store_true", help="replay the kernel from a CUDA graph (launch-bound kernels)")
    add_store_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("calibrate", help="measure this device's bandwidth and per-precision peaks; save the profile")
    p.add_argument("--hardware", default=None, help="registry key to file the profile under (default: detected)")
    p.add_argument("--quick", action="store_true", help="smaller sweeps (seconds instead of a minute)")
    p.add_argument("--refresh", action="store_true", help="measure again even if a cached profile exists")
    add_store_option(p)
    p.add_argument("--show", action="store_true", help="print the profiles stored and when they were measured")
    p.add_argument("--output", help="also write the profile here (atomically)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("quantize", help="recommend -> quantize -> measure -> compare on this device")
    p.add_argument("--model", default="tiny", help="'tiny' (built-in decoder) or a local Hugging Face model dir")
    p.add_argument("--precision", default="auto",
                   help="auto (the roofline's recommendation), int8, int8_dynamic, int4, fp8, fp8_weight_only, "
                        "nvfp4, mxfp4")
    p.add_argument("--phase", choices=PHASES, default="decode")
    p.add_argument("--prompt-len", type=positive_int, default=64)
    p.add_argument("--rep-ms", type=positive_float, default=200.0)
    p.add_argument("--hardware", default=None, help="registry key to predict against (default: detected)")
    p.add_argument("--calibration", help="calibration profile (default: this device's cached one)")
    add_store_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quantize)
    return parser


def main(argv=None, out=None) -> int:
    out = out or sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.func(args, out)
        if getattr(args, "json", False):
            out.write("\n")
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as e:  # bad values and unsupported paths: each names the value and what is allowed
        print(f"roofline: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return 0
