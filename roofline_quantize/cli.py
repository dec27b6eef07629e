"""``quantize``: recommend -> quantize -> measure -> compare, composed into ``python -m roofline``."""
from __future__ import annotations

import json

from roofline.cli.options import PHASES, Given, fmt_time, positive_int, positive_float
from roofline_kernels.cli import _progress, add_store_option
from roofline_quantize.autoquant import DEFAULT_MAX_LOGIT_ERROR, DEFAULT_TOP_K


def cmd_quantize(args, out):
    given = getattr(args, "given", None) or {}
    if args.precision != "auto" and given:  # auto's own options: with a forced precision they were ignored
        raise ValueError(f"{', '.join(f'{f} {v}' for f, v in given.values())}: only --precision auto measures "
                         f"candidates; --precision {args.precision} applies that one")
    from roofline_kernels.target import resolve_target
    from roofline_quantize.configs import check_supported, get_precision
    from roofline_quantize.hf import check_model_dir
    from roofline_quantize.pipeline import load_local_model, run_pipeline
    # what the request cannot be, refused before a calibration is loaded or measured (it had run first)
    if args.model != "tiny":
        check_model_dir(args.model)
    forced = None if args.precision == "auto" else get_precision(args.precision)
    target = resolve_target(args.hardware, calibration=args.calibration, store=args.cache_dir, progress=_progress,
                            check=(lambda info, hw: check_supported(forced, info)) if forced else None)
    info, cal = target.info, target.calibration
    model = None if args.model == "tiny" else load_local_model(args.model)
    _progress(f"recommend -> quantize ({args.precision}) -> measure on {info.name}")
    rep = run_pipeline(model, phase=args.phase, precision=args.precision, prompt_len=args.prompt_len,
                       device_info=info, calibration=cal, rep_ms=args.rep_ms, max_logit_error=args.max_logit_error,
                       top_k=args.candidates)
    if args.json:
        return json.dump(rep.to_dict(), out, indent=2, default=str)
    q, rec = rep.quantization, rep.recommendation
    out.write(f"model {rep.model} on {rep.hardware} ({rep.device}), {rep.phase}\n"
              f"  recommended {rec['precision']}: {rec['method']} (predicted {rec['predicted_speedup']:.2f}x on "
              f"the {'x'.join(map(str, rec['gemm']))} GEMM; ranked by {rec.get('ranked_by', 'roofline bound')})\n"
              + _autoquant_lines(rec.get("autoquant")) +
              f"  applied     {rep.precision} via {q['config']}; {len(q['quantized'])} layers quantized, "
              f"{len(q['skipped'])} skipped" + "".join(f"\n              skipped {n}: {w}" for n, w in q["skipped"]) + "\n"
              f"  bytes       {q['bytes_before'] / 1e6:.1f} MB -> {q['bytes_after'] / 1e6:.1f} MB "
              f"({q['bytes_vs_prediction']:.3f}x the roofline formats' prediction)\n")
    for ph in ("decode", "prefill"):
        b, a = getattr(rep.before, f"{ph}_s"), getattr(rep.after, f"{ph}_s")
        pred = rep.predicted["speedup"][ph]
        out.write(f"  {ph:<11} {fmt_time(b)}{_span(rep.before, ph)} -> {fmt_time(a)}{_span(rep.after, ph)} (hot): "
                  f"measured {rep.measured_speedup[ph]:.2f}x, predicted " + (f"{pred:.2f}x" if pred else "n/a") + "\n")
    for name, t in (("before", rep.before), ("after", rep.after)):
        if t.contention:
            out.write(f"  contention  {name}: {', '.join(t.contention)}\n")
    out.write(f"  decode      {rep.before.tokens_per_s:.1f} -> {rep.after.tokens_per_s:.1f} tokens/s; bandwidth "
              f"achieved {rep.before.bandwidth_achieved_gbs:.1f} -> {rep.after.bandwidth_achieved_gbs:.1f} GB/s\n"
              f"  accuracy    logits {rep.accuracy['logits_rel_error']:.2%} from FP32, top-1 agreement "
              f"{rep.accuracy['top1_agreement']:.1%}" + (f", perplexity {rep.accuracy['perplexity']:.3g}"
                                                       if "perplexity" in rep.accuracy else "") + "\n")
    for n in rep.notes:
        out.write(f"  note        {n}\n")


def _autoquant_lines(auto) -> str:
    if not auto:
        return ""
    lines = [f"  measured    {len(auto['trials'])} candidates on this model ({auto['phase']}, logit budget "
             f"{auto['max_logit_error']:.0%}): pick {auto['measured_pick']}; {auto['why']}"]
    for t in auto["trials"]:
        lines.append(f"              {t['precision']:<16}" + (
            f"{t['speedup']:.2f}x, logits {t['logits_rel_error']:.1%}" if t["status"] == "measured"
            else f"{t['status']}: {t['reason'][:100]}"))
    return "\n".join(lines) + "\n"


def _span(timing, phase: str) -> str:
    """`` (p20-p80, n)`` of a phase's timing, where it was kept."""
    sp = (getattr(timing, "spread", None) or {}).get(phase)
    return f" (p20-p80 {fmt_time(sp['p20_s'])}-{fmt_time(sp['p80_s'])}, n={sp['count']})" if sp else ""


def add_commands(sub) -> None:
    """Register this layer's subcommands on ``sub`` (an argparse subparsers action)."""
    p = sub.add_parser("quantize", help="recommend -> quantize -> measure -> compare on this device")
    p.add_argument("--model", default="tiny", help="'tiny' (built-in decoder) or a local Hugging Face model dir")
    p.add_argument("--precision", default="auto",
                   help="auto (the roofline's recommendation), int8, int8_dynamic, int4, fp8, fp8_weight_only, "
                        "nvfp4, mxfp4")
    p.add_argument("--phase", choices=PHASES, default="decode")
    p.add_argument("--max-logit-error", type=positive_float, default=DEFAULT_MAX_LOGIT_ERROR, action=Given,
                   help="auto: the largest relative logit error vs FP32 a candidate may have "
                        f"(default {DEFAULT_MAX_LOGIT_ERROR})")
    p.add_argument("--candidates", type=positive_int, default=DEFAULT_TOP_K, action=Given,
                   help=f"auto: how many of the roofline's best-ranked paths to measure (default {DEFAULT_TOP_K})")
    p.add_argument("--prompt-len", type=positive_int, default=64)
    p.add_argument("--rep-ms", type=positive_float, default=200.0)
    p.add_argument("--hardware", default=None, help="registry key to predict against (default: detected)")
    p.add_argument("--calibration", help="calibration profile (default: this device's cached one)")
    add_store_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_quantize)
