"""The CLI's shared parts: options, argument types, the operator a command's flags describe.

Each layer brings its own commands: ``roofline.cli`` registers the theory's, ``roofline_kernels.cli``
measure, calibrate, selftest and doctor, ``roofline_quantize.cli`` quantize, and ``roofline.__main__`` (the thin entry point
behind ``python -m roofline`` and the ``roofline`` script) composes them. This module imports no command
module; every layer's commands import the shared options and helpers from here.

Every command takes ``--json``. Bad input prints one line on stderr and exits 2.
"""
from __future__ import annotations

import argparse
import math

from .. import (attention, ffn, gemm, gemv, get_model_config, load_calibration, load_hardware_file, model_step,
               transformer_layer)
from ..clocks import resolve
from ..hardware import base_key
from ..models import DEFAULT_CONTEXT, PHASES
from ..moe import grouped_gemm

EXIT_USAGE = 2
EXIT_BROKEN_PIPE = 128 + 13  # what a shell reports for a writer killed by SIGPIPE


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(f"{self.prog}: {message}")


class Given(argparse.Action):
    """Stores the value like argparse's default action and records that the flag was given (``args.given``: dest ->
    (flag, value)), so an operator that does not read it can refuse it (``check_op_flags``) instead of ignoring it."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        given = dict(getattr(namespace, "given", None) or {})
        given[self.dest] = (option_string or self.option_strings[0], values)
        namespace.given = given


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
    g.add_argument("--hardware", default=None,
                   help=f"registry key or alias (default: the --calibration profile's device, else "
                        f"{default or 'the detected device'})")
    p.set_defaults(hardware_default=default)
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
    g.add_argument("--lm-head-precision", action=Given,
                   help="LM head format (default 'weight': the weight format, as roofline_quantize/ "
                   "does; GPTQ/AWQ checkpoints keep it bf16)")
    g.add_argument("--expert-precision", action=Given, help="routed experts' weight format (default: the checkpoint's, "
                   "e.g. gpt-oss mxfp4, else the weight format)")
    from ..deployments import DEPLOYMENTS
    g.add_argument("--deployment", action=Given, choices=sorted(DEPLOYMENTS),
                   help="price the model in the formats a named runtime "
                   "deploys it in, each with its source (" + "; ".join(f"{n}: {d.runtime}" for n, d in
                                                                        DEPLOYMENTS.items()) +
                   "); a precision flag beside it overrides its part")


def add_precision_options(p):
    g = p.add_argument_group("precision")
    g.add_argument("--precision", action=Given,
                   help="weights and activations (storage-only formats: weights, fp16 activations)")
    g.add_argument("--weight-precision", action=Given, help="weight format (overrides --precision)")
    g.add_argument("--act-precision", action=Given, help="activation format (overrides --precision)")
    g.add_argument("--out-precision", action=Given,
                   help="output format (default: activations if 16/32-bit float, else fp16)")
    g.add_argument("--kv-precision", action=Given, help="KV-cache format (attention, layer, model)")


def resolve_hardware(args):
    """The entry the hardware options describe (``roofline.clocks.resolve``), a ``--hardware-file`` registered first."""
    if args.hardware_file:
        load_hardware_file(args.hardware_file)
    cal = load_calibration(args.calibration) if args.calibration else None
    if args.hardware is None:  # a profile names the device it was measured on
        args.hardware = base_key(cal.hardware) if cal is not None else args.hardware_default
    hw = resolve(args.hardware, args.power_mode or None, args.gpu_clock_mhz, args.active_sms, args.mem_clock_mhz, cal)
    if args.peaks is None:
        args.peaks = "calibrated" if args.calibration else "datasheet"
    return hw


def formats_kwargs(args, precision_default="fp16"):
    precision = args.precision
    if precision is None and args.weight_precision is None and args.act_precision is None:
        precision = precision_default
    return dict(precision=precision, weight=args.weight_precision, act=args.act_precision, out=args.out_precision)


DEFAULT_GROUPS = 8


def groups_of(args) -> int | None:
    """``--groups`` of a grouped_gemm (default ``DEFAULT_GROUPS``); given with another operator it is refused, not
    ignored (UsageError)."""
    groups = getattr(args, "groups", None)
    if args.op == "grouped_gemm":
        return groups or DEFAULT_GROUPS
    if groups is not None:
        raise UsageError(f"--groups {groups}: only grouped_gemm takes it (the operator is {args.op})")
    return None


_FORMATS = ("precision", "weight_precision", "act_precision", "out_precision")
_MODEL = ("model", "hidden_size", "intermediate_size", "model_heads", "model_kv_heads", "model_head_dim",
          "model_max_context", "phase", "batch", "seq_kv", "kv_precision", "expert_precision", "deployment")
# the flags each operator reads (``build_cost``, ``model_args``, measure's ``_spot_shape``): any other op flag given
# is refused, naming it, where it was ignored and the default's number printed (``predict gemv --m 64`` gave M = 1)
OP_FLAGS = {
    "gemv": {*_FORMATS, "n", "k"},
    "gemm": {*_FORMATS, "m", "n", "k"},
    "grouped_gemm": {*_FORMATS, "groups", "m", "n", "k"},
    "ffn": {*_FORMATS, "m", "hidden_size", "intermediate_size"},
    "attention": {"precision", "act_precision", "out_precision", "kv_precision", "batch", "heads", "kv_heads",
                  "seq_q", "seq_kv", "head_dim", "phase"},
    "layer": {*_FORMATS, *_MODEL},
    "model": {*_FORMATS, *_MODEL, "layers", "vocab_size", "lm_head_precision", "memory_limit_gb"},
}


IMPLIED = {("gemv", "m"): 1}  # a flag an operator does not read, at the one value it implies: said, not refused


def check_op_flags(args, exclude: tuple[str, ...] = ()) -> None:
    """A flag given that the operator does not read is refused (UsageError, one line naming it and what the operator
    takes), not ignored. ``exclude``: flags this command does not read for any operator."""
    takes = OP_FLAGS.get(args.op)
    if takes is None:
        return
    takes = takes - set(exclude)
    op_flags = set().union(*OP_FLAGS.values())
    for dest, (flag, value) in (getattr(args, "given", None) or {}).items():
        if dest in op_flags | set(exclude) and dest not in takes and IMPLIED.get((args.op, dest), object()) != value:
            allowed = sorted("--" + d.replace("_", "-") for d in takes)
            shown = f"{value:g}" if isinstance(value, float) else value  # 3, as typed, not the parsed 3.0
            raise UsageError(f"{flag} {shown}: {args.op} does not use it (it takes {', '.join(allowed)})")


def build_cost(args):
    """The operator (or composite) the predict/measure flags describe."""
    check_op_flags(args)
    f = formats_kwargs(args)
    op = args.op
    groups = groups_of(args)
    if op == "gemv":
        return gemv(args.n, args.k, **f)
    if op == "gemm":
        return gemm(args.m, args.n, args.k, **f)
    if op == "grouped_gemm":
        return grouped_gemm(groups, args.m, args.n, args.k, **f)
    if op == "ffn":
        return ffn(args.m, args.hidden_size or 4096, args.intermediate_size or 14336, **f)
    f.pop("weight")
    if op == "attention":
        seq_q = args.seq_q or (1 if args.phase == "decode" else args.seq_kv)
        return attention(args.batch, args.heads, args.kv_heads or args.heads, seq_q, args.seq_kv, args.head_dim,
                         kv=args.kv_precision, causal=True, **f)
    cfg, kw = model_args(args)
    if op == "layer":
        kw.pop("lm_head", None)
        kw.pop("embedding", None)
        return transformer_layer(cfg, args.phase, args.batch, args.seq_kv, **kw)
    return model_step(cfg, args.phase, args.batch, args.seq_kv, **kw)


def model_args(args):
    """(model config, the format keywords of model_step and memory_plan) the predict flags describe: a
    ``--deployment``'s formats (``roofline.deployments``) with any precision flag given beside it on top."""
    # a MoE model's FFN is its experts: --intermediate-size sets their width (it set the dense width, which the
    # experts do not use, and changed nothing: mixtral priced alike with and without it)
    moe = bool(get_model_config(args.model).experts) if args.intermediate_size else False
    cfg = get_model_config(args.model, hidden=args.hidden_size, heads=args.model_heads, kv_heads=args.model_kv_heads,
                           intermediate=None if moe else args.intermediate_size,
                           expert_intermediate=args.intermediate_size if moe else None, layers=args.layers,
                           vocab=args.vocab_size, head_dim=args.model_head_dim,
                           max_context=getattr(args, "model_max_context", None))
    explicit = dict(kv=args.kv_precision, lm_head=getattr(args, "lm_head_precision", None),
                    expert_weight=getattr(args, "expert_precision", None))
    if getattr(args, "deployment", None):
        from ..deployments import get_deployment
        kw = get_deployment(args.deployment).formats_for(cfg)
        if args.precision is not None:  # sets weights and activations: the deployment's give way
            kw = {k: v for k, v in kw.items() if k not in ("precision", "weight", "act")}
        kw.update({k: v for k, v in dict(explicit, precision=args.precision, weight=args.weight_precision,
                                         act=args.act_precision, out=args.out_precision).items() if v is not None})
        return cfg, kw
    return cfg, dict(formats_kwargs(args), **explicit)


PREDICT_OPS = ("gemv", "gemm", "grouped_gemm", "attention", "ffn", "layer", "model")
MEASURE_OPS = ("gemv", "gemm", "grouped_gemm", "attention")


def add_op_arguments(p, ops=PREDICT_OPS):
    p.add_argument("op", choices=ops)
    g = p.add_argument_group("shape")
    g.add_argument("--m", action=Given, type=positive_int, default=1, help="rows of activations / tokens (GEMM, FFN)")
    g.add_argument("--n", action=Given, type=positive_int, default=4096, help="output features")
    g.add_argument("--k", action=Given, type=positive_int, default=4096, help="input features (reduction)")
    if "grouped_gemm" in ops:
        g.add_argument("--groups", action=Given, type=positive_int, default=None,
                       help=f"grouped_gemm: experts, each its own N x K weight and --m rows (default {DEFAULT_GROUPS})")
    g.add_argument("--batch", action=Given, type=positive_int, default=1)
    g.add_argument("--heads", action=Given, type=positive_int, default=32)
    g.add_argument("--kv-heads", action=Given, type=positive_int, default=None, help="KV heads (default: --heads)")
    g.add_argument("--seq-q", action=Given, type=positive_int, default=None,
                   help="query length (default: 1 decode, seq-kv prefill)")
    g.add_argument("--seq-kv", "--seq-len", action=Given, type=positive_int, default=DEFAULT_CONTEXT,
                   help="context length: cached positions in decode, the prompt in prefill "
                        f"(default {DEFAULT_CONTEXT}, the one default of every command)")
    g.add_argument("--head-dim", action=Given, type=positive_int, default=128)
    g.add_argument("--phase", action=Given, choices=PHASES, default="decode")
    g.add_argument("--model", action=Given, default="llama3-8b", help="model config for layer/model")
    g.add_argument("--hidden-size", action=Given, type=positive_int)
    g.add_argument("--intermediate-size", action=Given, type=positive_int,
                   help="the FFN's width (a MoE model: its experts' width)")
    g.add_argument("--layers", action=Given, type=positive_int)
    g.add_argument("--vocab-size", action=Given, type=positive_int)
    g.add_argument("--model-heads", action=Given, type=positive_int, help="override the model's attention heads")
    g.add_argument("--model-kv-heads", action=Given, type=positive_int, help="override the model's KV heads")
    g.add_argument("--model-head-dim", action=Given, type=positive_int, help="override the model's head dim")
    g.add_argument("--model-max-context", action=Given, type=positive_int,
                   help="override the model's max_position_embeddings "
                   "(a context longer than it is refused)")
