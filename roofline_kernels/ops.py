"""Per-precision kernels: inputs built once, a callable to time, and the theory's bytes and FLOPs.

Each builder returns a ``Kernel`` whose ``cost`` comes from ``roofline.operators`` for the formats the
kernel really stores (one formula in one place), whose ``fn`` runs only the kernel, and whose
``reference`` computes the same result in FP32 from the dequantised operands (for correctness
checks). A (precision, device) pair without a kernel raises ``UnsupportedKernel`` naming both.

CPU paths (torch 2.13):
- fp32 / bf16 / fp16: ``F.linear`` (fp16 is converted on CPUs without AVX512-FP16/AMX-FP16: emulated)
- fp8 e4m3/e5m2 W8A8: ``torch._scaled_mm`` (no FP8 units on a CPU: emulated, bf16 output)
- int8 W8A8: ``torch._int_mm`` (int32 output); int8 weight-only: ``aten._weight_int8pack_mm``
- int4 weight-only group 128: ``aten._weight_int4pack_mm_for_cpu`` on a really packed 4-bit weight
  with bf16 scale+zero per group (format ``int4_tinygemm``: 4.25 bits per weight)
CUDA paths: the native ``_scaled_mm`` / ``_int_mm`` calls (what CUDA refuses is refused up front:
``GEMM_RULES``, each rule with the upstream file that enforces it) and torchao's configs through ``roofline_kernels.torchao_paths`` (int8/int4 weight-only,
NVFP4/MXFP4 on Blackwell), probed when built. ``target="cuda"`` with ``device="cpu"`` chooses CUDA's
paths with CPU tensors: how a simulated GPU (fake capability) runs them here.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

from roofline import attention, gemm, gemv, get_format
from roofline.moe import FUSED_GROUPED_LAUNCHES, grouped_gemm
from roofline.operators import operand_formats

from .kernel import (_FLOAT_DTYPES, INT4_GROUP, Kernel, UnsupportedKernel, _check_device, _cuda_capability, _dtype, _rand,
                     _torch, count_launches, gemm_path, gemm_refusal, grouped_mm_refusal)


# Every GEMM/GEMV kernel this module builds, as (label, builder keyword arguments): the suite's precision
# sweep and the spot check (`measure --precision all`) both run this list, so a new kernel joins both.
GEMM_KERNELS = [
    ("fp32", dict(precision="fp32")),
    ("bf16", dict(precision="bf16")),
    ("fp16", dict(precision="fp16")),
    ("fp8_e4m3", dict(precision="fp8_e4m3")),
    ("fp8_e5m2", dict(precision="fp8_e5m2")),
    ("int8", dict(precision="int8")),
    ("int8/bf16", dict(weight="int8", act="bf16")),
    ("int4_tinygemm/bf16", dict(weight="int4_tinygemm", act="bf16")),
    ("nvfp4", dict(precision="nvfp4")),
    ("mxfp4", dict(precision="mxfp4")),
]
ATTENTION_KERNELS = ["fp32", "bf16", "fp16"]


def make_gemm(m, n, k, precision=None, weight=None, act=None, device="cpu", seed=0, op="gemm",
              target=None) -> Kernel:
    """``y[M,N] = x[M,K] @ W[N,K]^T`` in the given precision; see the module docstring for paths.

    ``device`` is where the tensors live; ``target`` (default: ``device``) is the device whose paths are
    chosen. They differ only on a simulated GPU: CUDA's paths, gates and shape rules, CPU tensors.
    """
    target = target or device
    _check_device(device, target)
    torch = _torch()
    w, a, label = gemm_formats(precision, weight, act)
    w_fmt, a_fmt = get_format(w), get_format(a)
    probe = gemm(m, n, k, weight=w, act=a)  # validates the dims once, with the theory's messages
    m, n, k = probe.shape["m"], probe.shape["n"], probe.shape["k"]
    gen = torch.Generator().manual_seed(seed)
    x32, w32 = _rand((m, k), gen, "cpu"), _rand((n, k), gen, "cpu") / k**0.5
    on_cpu = target == "cpu"

    def kern(call, inputs, ref, out, path, operands, emulated=False, rtol=1e-2, atol=1e-2, note=""):
        cost, elements = priced_gemm(op, m, n, k, w, a, out, target)
        return Kernel(op, label, target, call, inputs, ref, cost, path, emulated, operands, rtol, atol, note, elements)

    # what the target refuses is refused here, naming the rule, before anything is built
    why = cpu_gemm_refusal(w, a, n, k) if on_cpu else gemm_refusal(w, a, m, n, k, _cuda_capability(target))
    if why:
        raise UnsupportedKernel(label, target, why)

    if w == a and w in _FLOAT_DTYPES:
        dt = _dtype(w)
        x, W = x32.to(device, dt), w32.to(device, dt)
        emulated = on_cpu and w == "fp16" and not _cpu_has_fp16()
        tol = 1e-4 if w == "fp32" else 2e-2
        return kern(lambda i: torch.nn.functional.linear(i["x"], i["w"]), {"x": x, "w": W},
                    lambda: x.float() @ W.float().t(), w,
                    "F.linear" + (" (fp16 converted in software: no AVX512-FP16/AMX-FP16 on this CPU)"
                                  if emulated else ""), {"activations": [x], "weights": [W]}, emulated, tol, tol)

    if w_fmt.compute_class == "fp8" and a_fmt.compute_class == "fp8" and w_fmt.kind == a_fmt.kind == "float":
        x8 = x32.to(device).to(getattr(torch, "float8_e4m3fn" if a == "fp8_e4m3" else "float8_e5m2"))
        W8 = w32.to(device).to(getattr(torch, "float8_e4m3fn" if w == "fp8_e4m3" else "float8_e5m2"))
        one = torch.tensor(1.0, device=device)
        return kern(lambda i: torch._scaled_mm(i["x"], i["w"].t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16),
                    {"x": x8, "w": W8}, lambda: x8.float() @ W8.float().t(), "bf16",
                    "torch._scaled_mm" + (" (emulated: no FP8 units on a CPU)" if on_cpu else " (native)"),
                    {"activations": [x8], "weights": [W8]}, emulated=on_cpu, rtol=2e-2, atol=2e-2)

    if w == a == "int8":
        xi = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8).to(device)
        Wi = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8).to(device)
        return kern(lambda i: torch._int_mm(i["x"], i["w"].t()), {"x": xi, "w": Wi},
                    lambda: xi.float() @ Wi.float().t(), "int32", "torch._int_mm (W8A8, int32 output)",
                    {"activations": [xi], "weights": [Wi]}, rtol=0, atol=0)

    if not on_cpu and (w in ("int8", "int4_tinygemm") and a in ("bf16", "fp16") or w == a and w in ("nvfp4", "mxfp4")):
        return _torchao_kernel(kern, label, w, a, x32, w32, device, target)  # its gates: roofline_kernels.torchao_paths

    if a == "bf16" and w == "int8":
        x = x32.to(torch.bfloat16)
        scale = (w32.abs().amax(dim=1) / 127).clamp_min(1e-8)
        Wi = torch.round(w32 / scale[:, None]).clamp(-127, 127).to(torch.int8)
        s = scale.to(torch.bfloat16)
        return kern(lambda i: torch.ops.aten._weight_int8pack_mm(i["x"], i["w"], i["s"]), {"x": x, "w": Wi, "s": s},
                    lambda: (x.float() @ Wi.float().t()) * s.float(), "bf16",
                    "aten._weight_int8pack_mm (int8 weight-only, per-channel bf16 scale)",
                    {"activations": [x], "weights": [Wi, s]}, rtol=2e-2, atol=2e-2)

    if a == "bf16" and w == "int4_tinygemm":  # on a CPU (CUDA's is torchao's, above); its shape rule asked above
        x = x32.to(torch.bfloat16)
        q, scale, zero = quantize_int4_groupwise(w32)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        sz = torch.stack([scale, zero], dim=-1).to(torch.bfloat16).contiguous()
        w_dq = (q.float() - 8) * sz[..., 0].float().repeat_interleave(INT4_GROUP, 0).t() \
            + sz[..., 1].float().repeat_interleave(INT4_GROUP, 0).t()
        return kern(lambda i: torch.ops.aten._weight_int4pack_mm_for_cpu(i["x"], i["w"], INT4_GROUP, i["sz"]),
                    {"x": x, "w": packed, "sz": sz}, lambda: x.float() @ w_dq.t(), "bf16",
                    "aten._weight_int4pack_mm_for_cpu (packed 4-bit weight, bf16 scale+zero per 128)",
                    {"activations": [x], "weights": [packed, sz]}, rtol=2e-2, atol=2e-2)

    raise UnsupportedKernel(label, target, _no_gemm_kernel(w, a, target, label))


def _no_gemm_kernel(w: str, a: str, target: str, label: str = "") -> str:
    """Why no GEMM kernel of this module takes these formats on ``target`` (the last branch of ``make_gemm``;
    ``label``, the kernel's name, is said off a CPU)."""
    if w in ("nvfp4", "mxfp4") or a in ("nvfp4", "mxfp4"):
        where = "this CPU has none, and no emulated path is offered" if target == "cpu" else (
            f"on {target} the FP4 kernels take {w if w in ('nvfp4', 'mxfp4') else a} for both operands; got {label}")
        return ("native block-scaled FP4 matmul needs Blackwell (sm_100 or sm_120/121) and matching formats: "
                + where)
    hint = " (INT4 weight-only is 'int4_tinygemm' with bf16 activations)" if "int4" in (w, a) else ""
    return (f"no kernel for {w} weights x {a} activations{hint}; kernels: fp32, bf16, fp16, fp8_e4m3/fp8_e5m2 W8A8, "
            "int8 W8A8, int8/bf16 and int4_tinygemm/bf16 weight-only")


def cpu_gemm_refusal(w: str, a: str, n: int, k: int) -> str | None:
    """Why ``make_gemm`` builds no kernel for these formats and [N, K] weight on a CPU, or None: the formats its CPU
    branches take (same-dtype floats, FP8 W8A8 emulated, int8 W8A8, int8 and packed int4 weight-only with bf16
    activations) and the packed INT4 kernel's shape rule. Asked by ``make_gemm`` first and by ``refuse_unbuildable``
    without tensors."""
    w_fmt, a_fmt = get_format(w), get_format(a)
    if (w == a and w in _FLOAT_DTYPES or w == a == "int8" or (w, a) == ("int8", "bf16")
            or w_fmt.compute_class == a_fmt.compute_class == "fp8" and w_fmt.kind == a_fmt.kind == "float"):
        return None
    if (w, a) == ("int4_tinygemm", "bf16"):
        return cpu_int4_refusal(n, k)
    return _no_gemm_kernel(w, a, "cpu")


def cpu_int4_refusal(n: int, k: int) -> str | None:
    """Why the CPU's packed INT4 kernel refuses an [N, K] weight, or None (``aten._convert_weight_to_int4pack_for_cpu``
    packs groups of ``INT4_GROUP`` along K and 16 rows of N at a time)."""
    if k % INT4_GROUP or n % 16:
        return f"the packed INT4 kernel needs K % {INT4_GROUP} == 0 and N % 16 == 0; got N={n}, K={k}"
    return None


def refuse_unbuildable(op: str, shape: dict, kwargs: dict, target: str) -> None:
    """Raise what building this kernel (``spot.build``: ``make_gemm``, ``make_grouped_gemm``, ``make_attention``)
    would refuse on ``target``, in the builder's words and order, without making a tensor, so a command refuses it
    before a calibration runs: a shape the theory rejects (ValueError, its message) or the path's rule
    (``UnsupportedKernel``). On CUDA the capability is asked of the device present, as the builder asks it."""
    if op == "attention":
        a = get_format(kwargs.get("precision") or "fp32").name
        kv = get_format(shape.get("kv") or a).name
        why = sdpa_dtype_refusal(a, kv)
        if why:
            raise UnsupportedKernel(f"{a} (kv {kv})", target, why)
        attention(shape["batch"], shape["heads"], shape["kv_heads"], shape["seq_q"], shape["seq_kv"],
                  shape["head_dim"], act=a, kv=kv, causal=shape["seq_q"] > 1)  # the theory's own messages
        why = attention_refusal(a, shape["heads"], shape["kv_heads"], shape["seq_q"], shape["seq_kv"], target)
        if why:
            raise UnsupportedKernel(a, target, why)
        return
    w, a, label = gemm_formats(kwargs.get("precision"), kwargs.get("weight"), kwargs.get("act"))
    m = 1 if op == "gemv" else shape["m"]
    if op == "grouped_gemm":
        grouped_gemm(shape["groups"], m, shape["n"], shape["k"], weight=w, act=a)
    else:
        gemm(m, shape["n"], shape["k"], weight=w, act=a)
    why = (cpu_gemm_refusal(w, a, shape["n"], shape["k"]) if target == "cpu"
           else gemm_refusal(w, a, m, shape["n"], shape["k"], _cuda_capability(target)))
    if why:
        raise UnsupportedKernel(label, target, why)


TINYGEMM_PAD_K, TINYGEMM_PAD_N = 1024, 8


def priced_dims(weight: str, act: str, n: int, k: int, target: str) -> tuple[int, int]:
    """The [N, K] a path really stores and multiplies: torchao's tinygemm layout pads the weight to K % 1024 == 0
    and N % 8 == 0 when it packs it, and pads every activation to that K (torchao
    quantization/quantize_/workflows/int4/int4_tile_packed_to_4d_tensor.py: from_hp ``find_multiple(in_features,
    1024)``, the linear's ``find_multiple(act_mat.shape[-1], 1024)``). Elsewhere the shape as asked."""
    if target == "cuda" and gemm_path(weight, act) == "tinygemm":
        return -(-n // TINYGEMM_PAD_N) * TINYGEMM_PAD_N, -(-k // TINYGEMM_PAD_K) * TINYGEMM_PAD_K
    return n, k


def priced_gemm(op: str, m: int, n: int, k: int, weight: str, act: str, out: str, target: str, groups: int = 1):
    """(OpCost, weight elements) of the work a GEMM/GEMV path (or ``groups`` experts of it: ``grouped_gemm``) really
    does on ``target``: at the padded shape where the path pads (``priced_dims``), so the bytes charged are the
    bytes stored and read."""
    n, k = priced_dims(weight, act, n, k, target)
    if op == "grouped_gemm":
        cost = grouped_gemm(groups, m, n, k, weight=weight, act=act, out=out)
    elif op == "gemm":
        cost = gemm(m, n, k, weight=weight, act=act, out=out)
    else:
        cost = gemv(n, k, weight=weight, act=act, out=out)
    units = KERNEL_UNITS.get((weight, act)) if target == "cuda" else None
    if units:
        cost = dataclasses.replace(cost, compute_class=units[0], compute_note=units[1])
    return cost, groups * n * k


# Paths whose math runs on other units than the formats pick, on CUDA: priced at those units' peak.
KERNEL_UNITS = {
    (w, a): ("fp32", "aten._weight_int8pack_mm on CUDA converts the activation to fp32 and multiplies with fp32 "
                     "FMAs on CUDA cores, one thread per output, no tensor cores (aten/src/ATen/native/cuda/int8mm.cu "
                     "weight_int8pack_mm_kernel)")
    for w, a in (("int8", "bf16"), ("int8", "fp16"))
}


def gemm_formats(precision=None, weight=None, act=None) -> tuple[str, str, str]:
    """(weight format, activation format, label) of a GEMM kernel asked for as ``make_gemm`` takes it."""
    if act is None and weight is None and precision is not None and get_format(precision).compute_class is None:
        act = "bf16"  # a weight-only storage format: the CPU kernels take bf16 activations
    w_fmt, a_fmt, _ = operand_formats(precision, weight, act)
    w, a = w_fmt.name, a_fmt.name
    return w, a, a if w == a else f"{w}/{a}"


def make_peak_gemm(size: int, precision: str, device: str = "cpu", target=None) -> Kernel:
    """The ``size``-cube GEMM a compute peak of ``precision`` is calibrated with: the format's GEMM alone. For NVFP4
    that is one block-scaled ``torch._scaled_mm`` on operands quantized beforehand
    (``torchao_paths.nvfp4_gemm_kernel``), not torchao's ``lin(x)``, which quantizes the activation in every call."""
    if get_format(precision).name == "nvfp4" and (target or device) == "cuda":
        from .torchao_paths import nvfp4_gemm_kernel
        return nvfp4_gemm_kernel(size, size, size, device=device, target=target)
    return make_gemm(size, size, size, precision, device=device, target=target)


def make_gemv(n, k, precision=None, weight=None, act=None, device="cpu", seed=0, target=None) -> Kernel:
    return make_gemm(1, n, k, precision, weight, act, device, seed, op="gemv", target=target)


def make_grouped_gemm(groups, m, n, k, precision=None, weight=None, act=None, device="cpu", seed=0,
                      target=None, fused: bool | str | None = None) -> Kernel:
    """MoE experts: ``groups`` experts, each its own ``[N, K]`` weight in the given precision, each multiplying its own
    ``m`` rows; the cost is ``roofline.moe.grouped_gemm``'s. On a CUDA device where ``torch._grouped_mm`` runs its
    fused CUTLASS kernel (``roofline.moe.FUSED_GROUPED_RULES``: bf16 on sm_90/sm_100) all experts in that one call, as
    MoE implementations make it there; elsewhere as CPU frameworks run them (Hugging Face's Mixtral/Qwen MoE forward
    loops over the experts a batch touches), one ``make_gemm`` kernel after another, the path saying why not fused.
    ``fused`` overrides the decision, True or why not (a simulated board builds a probe shape and decides at the full
    one). The expected time is read from the GEMM model at one expert's shape (``roofline.efficiency``): measuring
    this checks that reading, and a fused kernel may beat it."""
    w, a, label = gemm_formats(precision, weight, act)
    grouped_gemm(groups, m, n, k, weight=w, act=a)  # validates every dimension with the theory's messages
    target = target or device
    _check_device(device, target)
    check_grouped_room(groups, m, n, k, device)
    not_fused = grouped_mm_refusal(w, a, groups, k, _cuda_capability(target) if target != "cpu" else None)
    if fused is not None and target != "cpu":  # decided at another shape (a simulated board's probe: the full one)
        not_fused = None if fused is True else (fused or not_fused or "decided at the full shape")
    if target != "cpu" and not not_fused:
        return _fused_grouped(groups, m, n, k, w, a, label, device, seed, target)
    parts = [make_gemm(m, n, k, precision, weight, act, device, seed + g, target=target) for g in range(groups)]
    first = parts[0]
    names = [list(p.inputs) for p in parts]
    calls = [p.call for p in parts]

    def call(inputs):
        return [c({name: inputs[f"{g}.{name}"] for name in ns}) for g, (c, ns) in enumerate(zip(calls, names))]

    c = first.cost
    cost, _ = priced_gemm("grouped_gemm", m, n, k, c.weight_format, c.act_format, c.out_format, target, groups)
    operands = {name: [t for p in parts for t in p.operands.get(name, ())] for name in first.operands}
    # said wherever torch._grouped_mm takes these formats at all (fp32, bf16, fp16: GroupedMMUtils.h)
    why = (f" (not torch._grouped_mm's fused kernel: {not_fused})" if target != "cpu" and w == a and
           w in ("fp32", "bf16", "fp16") else "")
    return Kernel("grouped_gemm", first.precision, first.device, call,
                  {f"{g}.{name}": v for g, p in enumerate(parts) for name, v in p.inputs.items()},
                  lambda: _torch().stack([p.reference() for p in parts]), cost,
                  f"{len(parts)} x {first.path}, one after another{why}", first.emulated, operands, first.rtol,
                  first.atol, first.note, sum(p.weight_elements for p in parts), sum(p.launches for p in parts))


def _fused_grouped(groups, m, n, k, w, a, label, device, seed, target) -> Kernel:
    """Every expert in one ``torch._grouped_mm`` call (``grouped_mm_refusal``: bf16 on sm_90/sm_100, the fused CUTLASS
    kernel MoE implementations call there): the experts' rows as one ``[groups x m, K]`` activation, their weights as
    ``[groups, N, K]`` read transposed (column-major, as ``F.linear`` reads a weight), ``offs`` the cumulative rows."""
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    x = _rand((groups * m, k), gen, "cpu").to(device, torch.bfloat16)
    W = (_rand((groups, n, k), gen, "cpu") / k**0.5).to(device, torch.bfloat16)
    offs = (torch.arange(1, groups + 1, dtype=torch.int32) * m).to(device)
    cost, _ = priced_gemm("grouped_gemm", m, n, k, w, a, "bf16", target, groups)

    def reference():
        xs, ws = x.float().reshape(groups, m, k), W.float()
        return torch.cat([xs[g] @ ws[g].t() for g in range(groups)])
    return Kernel("grouped_gemm", label, target, lambda i: torch._grouped_mm(i["x"], i["w"].transpose(-2, -1),
                                                                               offs=i["offs"]),
                  {"x": x, "w": W, "offs": offs}, reference, cost,
                  f"torch._grouped_mm (fused CUTLASS grouped GEMM: {groups} experts in one call)", False,
                  {"activations": [x], "weights": [W]}, 2e-2, 2e-2, "", groups * n * k, FUSED_GROUPED_LAUNCHES)


GROUPED_BUILD_BYTES = 12  # per element of each expert's operands while built: its fp32 values (4), the fp32 copy a
# reference or a dequantized weight keeps (4), and the stored tensor with room for a packing's temporaries (4)
GROUPED_MEMORY_FRACTION = 0.5  # of the memory available now: the cold rotation's copies need the rest


def check_grouped_room(groups: int, m: int, n: int, k: int, device: str) -> None:
    """Refuse, naming ``groups`` and how many fit, a grouped kernel whose experts would not fit the memory available
    now: each expert is built on its own (many mid-sized allocations succeed until the kernel's OOM killer ends the
    process, where one too-large allocation fails cleanly)."""
    from .measure import available_memory_bytes
    one = GROUPED_BUILD_BYTES * (n * k + m * k + m * n)
    # built on the host (fp32 values, a reference's copy), stored on the device: both must have room
    room = GROUPED_MEMORY_FRACTION * min(available_memory_bytes(SimpleNamespace(torch_device=d))
                                         for d in {"cpu", device})
    if groups * one > room:
        raise ValueError(f"groups={groups}: {groups} experts of {m}x{n}x{k} need about {groups * one / 1e9:.3g} GB to "
                         f"build, more than {GROUPED_MEMORY_FRACTION:.0%} of the {room / GROUPED_MEMORY_FRACTION / 1e9:.3g} "
                         f"GB available now; allowed here: groups <= {max(0, int(room // one))}")


def quantize_int4_groupwise(w32):
    """Asymmetric 4-bit per group of 128 along K, in tinygemm's convention: w ~ (q - 8) * scale + zero."""
    torch = _torch()
    n, k = w32.shape
    g = w32.reshape(n, k // INT4_GROUP, INT4_GROUP)
    lo, hi = g.amin(dim=-1), g.amax(dim=-1)
    scale = ((hi - lo) / 15).clamp_min(1e-8)
    zero = lo + 8 * scale
    q = torch.round((g - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32).reshape(n, k)
    return q, scale.t().contiguous(), zero.t().contiguous()  # scales as [K/g, N]


def _cpu_has_fp16() -> bool:
    from .device import read_cpu_info
    return bool({"avx512_fp16", "amx_fp16", "asimdhp"} & read_cpu_info().flags)  # Arm's FP16 arithmetic too


def _torchao_kernel(kern, label, w, a, x32, w32, device, target):
    """GPU paths through torchao (``roofline_kernels.torchao_paths``, the one place its configs are chosen): int8 /
    int4 weight-only, and on Blackwell NVFP4 / MXFP4 with dynamically quantized activations (their bf16
    input is read and quantized inside the call: the theory's bytes count it at 4 bits). The forward is
    probed when built, so a config that quantizes but cannot run is refused here, not mid-measurement."""
    torch = _torch()
    try:
        from .torchao_paths import TorchaoPathUnavailable, quantized_linear
    except ImportError as e:
        raise UnsupportedKernel(label, target, f"torchao is not importable: {e}") from None
    dt = _dtype(a) if a in _FLOAT_DTYPES else torch.bfloat16
    try:
        q = quantized_linear(w32, w, a, device, _cuda_capability(target))
    except TorchaoPathUnavailable as e:
        raise UnsupportedKernel(label, target, e.why) from None
    x = x32.to(device, dt)
    out = a if a in ("fp16", "bf16") else "bf16"
    # the reference uses the unquantized weights: 4-bit formats carry ~10% quantization noise
    tol = 5e-2 if w == "int8" else 0.15
    # a module the simulation could not quantize (the packing needs CUDA) holds bf16 weights: not weighed
    operands = {"activations": [x], "weights": [q.module]} if q.probed else {"activations": [x]}
    kernel = kern(lambda i: i["lin"](i["x"]), {"x": x, "lin": q.module}, lambda: x.float() @ w32.to(device).t(), out,
                  f"torchao {q.config_name}: {q.path}", operands, rtol=tol, atol=tol,
                  note="" if q.probed else q.probe_note)
    return dataclasses.replace(kernel, launches=count_launches(kernel.fn))  # a tensor subclass: several ops per call


def sdpa_dtype_refusal(act: str, kv: str) -> str | None:
    """Why ``make_attention`` builds no SDPA for these Q and KV formats (names), or None."""
    if act not in _FLOAT_DTYPES or kv != act:
        return "SDPA runs fp32/bf16/fp16 with Q, K and V in one dtype; a quantized KV cache needs a dedicated kernel"
    return None


def attention_refusal(precision: str, heads: int, kv_heads: int, seq_q: int, seq_kv: int, target: str) -> str | None:
    """Why ``make_attention`` refuses this SDPA shape on ``target`` (before any tensor is made), or None."""
    if seq_q > 1 and seq_q != seq_kv:
        return ("SDPA's is_causal aligns the mask to the top-left; chunked prefill "
                f"(seq_q={seq_q} < seq_kv={seq_kv}) needs an explicit mask kernel")
    if target == "cuda" and get_format(precision).name == "fp32" and heads != kv_heads:
        # flash attention has no fp32 kernel and memory-efficient attention no GQA: SDPA falls back to its
        # math path, which materialises the score matrix; its time says nothing about a fused kernel's roof
        return ("fp32 SDPA with grouped KV heads has no fused CUDA kernel (flash: 16-bit only; memory-efficient: "
                "no GQA), so it would time the math fallback")
    return None


def make_attention(batch, heads, kv_heads, seq_q, seq_kv, head_dim, precision="bf16", kv=None, device="cpu",
                   seed=0, target=None) -> Kernel:
    """SDPA with grouped KV heads; causal when ``seq_q > 1`` (prefill), a KV-cache read when decoding."""
    target = target or device
    _check_device(device, target)
    torch = _torch()
    a = get_format(precision).name
    kv_name = get_format(kv).name if kv is not None else a
    why = sdpa_dtype_refusal(a, kv_name)
    if why:
        raise UnsupportedKernel(f"{a} (kv {kv_name})", target, why)
    causal = seq_q > 1
    cost = attention(batch, heads, kv_heads, seq_q, seq_kv, head_dim, act=a, kv=kv_name, causal=causal)
    # refused before any tensor is made: a sweep tries many shapes a device refuses
    why = attention_refusal(a, heads, kv_heads, seq_q, seq_kv, target)
    if why:
        raise UnsupportedKernel(a, target, why)
    gen = torch.Generator().manual_seed(seed)
    dt = _dtype(a)
    q = _rand((batch, heads, seq_q, head_dim), gen, device, dt)
    k_ = _rand((batch, kv_heads, seq_kv, head_dim), gen, device, dt)
    v = _rand((batch, kv_heads, seq_kv, head_dim), gen, device, dt)
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def reference():
        rep = heads // kv_heads
        kk, vv = k_.float().repeat_interleave(rep, 1), v.float().repeat_interleave(rep, 1)
        scores = q.float() @ kk.transpose(-1, -2) / head_dim**0.5
        if causal:  # queries are the last seq_q positions
            qpos = torch.arange(seq_kv - seq_q, seq_kv, device=q.device)[:, None]
            scores = scores.masked_fill(torch.arange(seq_kv, device=q.device)[None, :] > qpos, float("-inf"))
        return scores.softmax(-1) @ vv

    tol = 1e-4 if a == "fp32" else 3e-2
    gqa = heads != kv_heads
    emulated = target == "cpu" and a == "fp16" and not _cpu_has_fp16()
    return Kernel("attention", a, target,
                  lambda i: sdpa(i["q"], i["k"], i["v"], is_causal=causal, enable_gqa=gqa), {"q": q, "k": k_, "v": v},
                  reference, cost, "F.scaled_dot_product_attention" + (" (GQA)" if gqa else "") + (
                      " (fp16 converted in software: no AVX512-FP16/AMX-FP16 on this CPU)" if emulated else ""),
                  emulated=emulated, operands={"q": [q], "k": [k_], "v": [v]}, rtol=tol, atol=tol)
