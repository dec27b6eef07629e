"""The energy commands: ``energy`` (an operator's or a model step's predicted joules, watts and tokens/J) and
``schedule`` (which power mode, precision and batch for a latency, throughput or energy target).

Registered by ``roofline.cli.build_parser``; they reuse ``roofline.cli.options``' shared options and helpers.
"""
from __future__ import annotations

import dataclasses
import json

from .options import (PREDICT_OPS, UsageError, add_hardware_options, add_op_arguments, add_precision_options, build_cost, fmt_time,
                  positive_float, positive_int, resolve_hardware)
from ..clocks import power_budget_w
from ..energy import energy_costs, load_energy_profile, predict_energy
from ..hardware import get_hardware, load_hardware_file
from ..models import DEFAULT_CONTEXT, PHASES, ModelConfig, get_model_config
from ..plan import tokens_per_step
from ..predict import predict
from ..schedule import DEFAULT_BATCHES, TARGETS, schedule

MODEL_DIMS = ("hidden", "heads", "kv_heads", "intermediate", "layers", "vocab")


def parse_model(text: str):
    """A model name, or its dims ``hidden=4096,heads=32,kv_heads=8,intermediate=14336,layers=32,vocab=128256``
    (optionally ``head_dim=``): the scheduler prices any Llama-style decoder."""
    if "=" not in text:
        return get_model_config(text)
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    dims = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        key = key.strip().replace("-", "_")
        if key not in fields or key == "name":
            raise UsageError(f"--model {text!r}: unknown dim {key!r}; dims: {', '.join(MODEL_DIMS)}, head_dim")
        try:
            dims[key] = int(value)
        except ValueError:
            raise UsageError(f"--model {text!r}: {key}={value!r} is not an integer") from None
    missing = [d for d in MODEL_DIMS if d not in dims]
    if missing:
        raise UsageError(f"--model {text!r}: missing {', '.join(missing)} (a model by dims needs "
                         f"{', '.join(MODEL_DIMS)})")
    return ModelConfig("custom(" + ",".join(f"{k}={v}" for k, v in dims.items()) + ")", **dims)


def _int_list(text: str, what: str) -> tuple:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise UsageError(f"{what} {text!r}: expected positive integers separated by commas, e.g. 1,4,16")
    return values


def _profile(args):
    return load_energy_profile(args.energy_profile) if args.energy_profile else None


def _tokens(args, cost) -> float:
    if args.op in ("model", "layer"):
        return tokens_per_step(args.phase, args.batch, args.seq_kv)
    if args.op == "attention":
        return args.batch * (args.seq_q or (1 if args.phase == "decode" else args.seq_kv))
    return 1 if args.op == "gemv" else args.m


def cmd_energy(args, out):
    hw = resolve_hardware(args)
    pred = predict(build_cost(args), hw, args.peaks)
    budget = power_budget_w(hw.base_key, hw.power_mode) if hw.power_mode else None
    e = predict_energy(pred, energy_costs(hw, _profile(args)), _tokens(args, pred),
                       budget_w=budget.value if budget else None)
    if args.json:
        return json.dump({"prediction": pred.to_dict(), "energy": e.to_dict(), "energy_j": e.energy_j,
                          "tokens_per_j": e.tokens_per_j, "power_w": e.power_w,
                          "budget": None if budget is None else dataclasses.asdict(budget)}, out, indent=2)
    static = f"{e.static_j:.4g} J" if e.static_j is not None else "unknown"
    out.write(f"{getattr(pred, 'name', args.op)} on {hw.key}: {fmt_time(pred.time_s)} ({pred.bound}-bound)\n"
              f"  energy {e.energy_j:.4g} J = DRAM {e.dram_j:.4g} + compute {e.compute_j:.4g} + static {static}\n"
              f"  {e.power_w:.3g} W" + (f" ({e.power_range_w[0]:.3g}-{e.power_range_w[1]:.3g} W over the DRAM "
                                        "estimate's range)" if e.power_range_w else "") +
              (f" (mode budget {budget.value:g} W{', EXCEEDED' if e.over_budget else ''})" if budget else "") +
              f"; {e.tokens:g} tokens: {e.tokens_per_s:.4g} tokens/s, {e.tokens_per_j:.4g} tokens/J\n"
              f"  costs: {e.basis}\n")
    for n in e.notes:
        out.write(f"  note: {n}\n")


def cmd_schedule(args, out):
    if args.hardware_file:
        load_hardware_file(args.hardware_file)
    hw = get_hardware(args.hardware)
    modes = [m.strip() for m in args.power_modes.split(",") if m.strip()] if args.power_modes else None
    batches = _int_list(args.batch, "--batch") if args.batch else DEFAULT_BATCHES
    s = schedule(parse_model(args.model), hw, args.target, args.max_power_w, args.min_tokens_per_s, args.phase,
                 args.context, batches, modes, args.baseline, args.memory_limit_gb, _profile(args),
                 runners_up=args.runners_up)
    if args.json:
        return json.dump(s.to_dict(), out, indent=2)
    limits = "".join([f", at most {s.max_power_w:g} W" if s.max_power_w else "",
                      f", at least {s.min_tokens_per_s:g} tokens/s" if s.min_tokens_per_s else ""])
    out.write(f"schedule {s.model} {s.phase} (context {s.context}) on {s.hardware}: target {s.target}{limits}\n"
              f"choice: {s.choice.label}\n  why: {s.reason}\n"
              f"  {'':<2}{'mode / precision / batch':<40}{'tokens/s':>10}{'ms/step':>10}{'W':>7}{'tokens/J':>10}"
              f"{'budget W':>10}{'GB':>7}\n")
    for mark, o in [("*", s.choice)] + [(" ", o) for o in s.runners_up]:
        budget = f"{o.budget_w:g}" if o.budget_w is not None else "-"
        out.write(f"  {mark} {o.label:<40}{o.tokens_per_s:>10.4g}{o.time_s * 1e3:>10.4g}{o.power_w:>7.3g}"
                  f"{o.tokens_per_j:>10.4g}{budget:>10}{o.memory_gb:>7.3g}\n")
    for line in s.excluded:
        out.write(f"  excluded: {line}\n")
    out.write(f"  energy costs: {s.basis}\n")


def add_commands(sub) -> None:
    p = sub.add_parser("energy", help="predicted energy, watts and tokens/J of an operator or a model step")
    # not a grouped GEMM: its experts' rows are not tokens (a token visits several), so no energy per token
    add_op_arguments(p, tuple(op for op in PREDICT_OPS if op != "grouped_gemm"))
    add_precision_options(p)
    add_hardware_options(p)
    p.add_argument("--energy-profile", help="per-mode energy costs measured by the power-mode sweep (JSON)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_energy)

    p = sub.add_parser("schedule", help="power mode, precision and batch for a latency, throughput or energy target")
    p.add_argument("--hardware", default="jetson_orin_nano_super", help="registry key (default jetson_orin_nano_super)")
    p.add_argument("--hardware-file", help="JSON file defining custom hardware (registered before lookup)")
    p.add_argument("--model", default="llama3-8b", help="a model name, or its dims: hidden=H,heads=N,kv_heads=K,"
                   "intermediate=I,layers=L,vocab=V[,head_dim=D]")
    p.add_argument("--target", choices=TARGETS, default="energy")
    p.add_argument("--max-power-w", type=positive_float, help="admit only modes whose budget (or, without one, "
                   "predicted power) is at most this")
    p.add_argument("--min-tokens-per-s", type=positive_float, help="admit only options at least this fast")
    p.add_argument("--phase", choices=PHASES, default="decode")
    p.add_argument("--context", type=positive_int, default=DEFAULT_CONTEXT,
                   help=f"context (decode) or prompt (prefill) length (default {DEFAULT_CONTEXT}, the one default of "
                        "every command)")
    p.add_argument("--batch", help="batch sizes to consider, e.g. 1,4,16 (default 1,2,4,...,64)")
    p.add_argument("--power-modes", help="modes to consider, e.g. 15W,25W (default: every mode of the board)")
    p.add_argument("--baseline", default="fp16", help="unquantized format (fp16, bf16, fp32)")
    p.add_argument("--memory-limit-gb", type=positive_float, help="plan memory against this (and the device's)")
    p.add_argument("--energy-profile", help="per-mode energy costs measured by the power-mode sweep (JSON)")
    p.add_argument("--runners-up", type=positive_int, default=3, help="how many runners-up to show (default 3)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_schedule)
