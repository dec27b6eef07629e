"""How much memory a model step needs (weights, KV cache, activation workspace) and what fits.

Assumptions:
1. Weights: every stored parameter, all experts included whatever a step touches, priced with
   ``tensor_bytes`` in the format ``models.step_formats`` gives its kind. Norms, router and the
   embedding table are in the residual-stream format (``roofline_quantize/`` never quantizes ``nn.Embedding``).
   A tied LM head shares the embedding's storage only while both are in one format: quantizing it
   stores a second copy (torchao's ``quantize_`` replaces ``lm_head.weight`` with a new tensor).
2. KV cache: K and V of every layer for ``batch x positions``, priced by attention's own K/V operand
   formula; positions are the context for full-attention layers and ``min(context, window)`` for
   sliding-window layers (a ring buffer of the window, as Hugging Face's and vLLM's caches keep).
3. Workspace, an estimate: inference frees each layer's intermediates, so the peak is one layer's
   live tensors: the residual and its normed copy (2 x hidden per token) plus the widest intermediate
   (QKV and the attention output, or the FFN's gate, up and product, ``k`` of them per token for
   routed experts, plus their k outputs), and FP32 logits for the last position of each sequence.
   Allocator slack, the CUDA context and library workspaces are not counted.
4. Capacity: the smaller of ``memory_limit_gb`` and what the device lets a model use: on a unified-memory
   device (GB10, Jetson), where the OS, the carveouts and the model share one pool, the registry's
   ``usable_memory_gb`` (what CUDA sees, less what the stock OS holds at idle, each with its source);
   elsewhere ``memory_gb``. GB is 1e9 bytes here like every byte figure in this package; a datasheet
   counting GiB leaves ~7% unclaimed, a margin that the uncounted CUDA context and allocator slack eat into.
5. The largest context (at the batch) and the largest batch (at the context) that fit are found by
   bisection on the total, which grows with both; the context is capped at the model's max_context, and a
   context past it is refused (``models.check_context``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .formats import tensor_bytes
from .hardware import get_hardware
from .models import PHASES, ModelConfig, StepFormats, check_context, step_formats, tokens_per_step
from .operators import MAX_DIM, attention_operand_bytes, check_dim
from .predict import BYTES_PER_GB

LOGITS_FORMAT = "fp32"  # generation reads FP32 logits (roofline_quantize/model.py: ``.float()``)


def weight_bytes(cfg: ModelConfig, f: StepFormats) -> dict[str, float]:
    """Stored bytes of the weights by kind (see assumption 1)."""
    n = cfg.param_counts()

    def stored(fmt, kind, tensors):  # ``tensors`` equal tensors hold the kind's parameters
        return tensors * tensor_bytes(fmt, n[kind] / tensors) if n[kind] else 0.0

    out = {"embedding": stored(f.embedding_format, "embedding", 1),
           "attention": stored(f.weight, "attention", cfg.layers),
           "ffn": stored(f.weight, "ffn", cfg.layers), "shared_experts": stored(f.weight, "shared_experts", cfg.layers),
           "experts": stored(f.experts[0], "experts", cfg.layers * max(cfg.experts, 1)),
           "router": stored(f.out, "router", cfg.layers), "norms": stored(f.out, "norms", 1),
           "lm_head": stored(f.lm_head[0], "lm_head", 1)}
    if cfg.tied_embeddings and f.lm_head[0] == f.embedding_format:
        out["lm_head"] = 0.0  # one table serves both
    return out


def kv_cache_bytes(cfg: ModelConfig, f: StepFormats, context: int, batch: int) -> float:
    hd, full = cfg.dim_per_head, cfg.layers - cfg.sliding_layers
    total = 0.0
    for layers, positions in ((full, context), (cfg.sliding_layers, min(context, cfg.sliding_window or context))):
        if layers:
            kv = attention_operand_bytes(batch, cfg.heads, cfg.kv_heads, 1, positions, hd, f.out, f.kv, f.out)
            total += layers * (kv["k"] + kv["v"])
    return total


def workspace_bytes(cfg: ModelConfig, f: StepFormats, phase: str, context: int, batch: int) -> float:
    tokens = tokens_per_step(phase, batch, context)
    hd = cfg.dim_per_head
    attn = (cfg.heads + 2 * cfg.kv_heads) * hd + cfg.heads * hd
    if cfg.is_moe:
        mlp = cfg.experts_per_token * (3 * cfg.expert_width + cfg.hidden) + 3 * cfg.shared_experts * cfg.expert_width
    else:
        mlp = 3 * cfg.intermediate
    return tensor_bytes(f.out, tokens * (2 * cfg.hidden + max(attn, mlp))) + \
        tensor_bytes(LOGITS_FORMAT, batch * cfg.vocab)


@dataclass(frozen=True)
class MemoryPlan:
    model: str
    phase: str
    batch: int
    context: int
    weights_bytes: dict
    kv_cache_bytes: float
    workspace_bytes: float
    capacity_gb: float | None
    capacity_source: str
    max_context: int | None = None  # at this batch; None: not even one position fits (or no capacity known)
    max_batch: int | None = None  # at this context
    searched: bool = False  # whether max_context and max_batch were looked for
    model_max_context: int | None = None
    notes: tuple = field(default=())

    @property
    def total_weights_bytes(self) -> float:
        return sum(self.weights_bytes.values())

    @property
    def total_bytes(self) -> float:
        return self.total_weights_bytes + self.kv_cache_bytes + self.workspace_bytes

    @property
    def fits(self) -> bool | None:
        return None if self.capacity_gb is None else self.total_bytes <= self.capacity_gb * BYTES_PER_GB

    def summary(self) -> str:
        """One line: the sum, the verdict against capacity and the largest context and batch that fit."""
        gb = lambda b: f"{b / BYTES_PER_GB:.3g} GB"  # noqa: E731
        text = (f"memory ({self.phase}, batch {self.batch}, context {self.context}): weights "
                f"{gb(self.total_weights_bytes)} + KV cache {gb(self.kv_cache_bytes)} + workspace "
                f"{gb(self.workspace_bytes)} = {gb(self.total_bytes)}")
        if self.fits is None:
            return f"{text}; {self.capacity_source}"
        text += f" of {self.capacity_gb:g} GB ({self.capacity_source}): "
        text += "fits" if self.fits else f"DOES NOT FIT ({gb(self.total_bytes - self.capacity_gb * BYTES_PER_GB)} over)"
        if self.searched and self.max_context is None:
            text += f"; nothing fits at batch {self.batch}, not even one position"
        elif self.searched:
            capped = " (the model's max_context)" if self.max_context == self.model_max_context else ""
            text += (f"; largest context at batch {self.batch}: {self.max_context}{capped}; largest batch at "
                     f"context {self.context}: {self.max_batch or 'none'}")
        return text + "".join(f"; {n}" for n in self.notes)

    def to_dict(self) -> dict:
        return {"model": self.model, "phase": self.phase, "batch": self.batch, "context": self.context,
                "weights_gb": {k: v / BYTES_PER_GB for k, v in self.weights_bytes.items() if v},
                "total_weights_gb": self.total_weights_bytes / BYTES_PER_GB,
                "kv_cache_gb": self.kv_cache_bytes / BYTES_PER_GB, "workspace_gb": self.workspace_bytes / BYTES_PER_GB,
                "total_gb": self.total_bytes / BYTES_PER_GB, "capacity_gb": self.capacity_gb,
                "capacity_source": self.capacity_source, "fits": self.fits, "max_context": self.max_context,
                "max_batch": self.max_batch, "model_max_context": self.model_max_context, "notes": list(self.notes)}


def capacity(hardware=None, memory_limit_gb=None) -> tuple[float | None, str]:
    """(GB, where it came from): the smaller of the limit and the memory the hardware lets a model use
    (``Hardware.model_memory``: the usable figure of a unified-memory device, else its memory)."""
    if memory_limit_gb is not None and not (0 < memory_limit_gb < float("inf")):
        raise ValueError(f"memory_limit_gb={memory_limit_gb!r} is invalid; allowed: a positive number")
    hw = get_hardware(hardware) if hardware is not None else None
    options = []
    if memory_limit_gb is not None:
        options.append((float(memory_limit_gb), f"memory limit {memory_limit_gb:g} GB"))
    spec = hw.model_memory if hw is not None else None
    if spec is not None:
        usable = spec is hw.usable_memory
        what = (f"{hw.key} usable memory {spec.value:g} of {hw.memory.value:g} GB" if usable and hw.memory
                else f"{hw.key} memory {spec.value:g} GB")
        flags = f" [{spec.flags}]" if spec.flags else ""
        options.append((spec.value, what + (f" ({spec.note})" if spec.note else "") + (flags if usable else "")))
    return min(options) if options else (None, "no capacity known (hardware without memory_gb, no limit)")


def _total(cfg, f, phase, context, batch) -> float:
    return sum(weight_bytes(cfg, f).values()) + kv_cache_bytes(cfg, f, context, batch) + \
        workspace_bytes(cfg, f, phase, context, batch)


def _largest(fits, hi: int) -> int | None:
    """The largest n in 1..hi with fits(n), for a fits() that stays False once it turns False."""
    if not fits(1):
        return None
    lo = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return lo


def memory_plan(cfg: ModelConfig, phase: str, batch: int, context: int, hardware=None, memory_limit_gb=None,
                formats: StepFormats | None = None, find_limits: bool = True, **format_kwargs) -> MemoryPlan:
    """Weights + KV cache + workspace for ``batch`` sequences of ``context`` tokens, against capacity.

    ``formats`` (from ``models.step_formats``) or the same keywords ``model_step`` takes;
    ``find_limits=False`` skips the search for the largest context and batch.
    """
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
    batch, context = check_dim("batch", batch), check_context(cfg, context)
    f = formats or step_formats(cfg, **format_kwargs)
    cap_gb, cap_source = capacity(hardware, memory_limit_gb)
    max_context = max_batch = None
    notes = []
    if cap_gb is not None and find_limits:
        cap = cap_gb * BYTES_PER_GB
        max_context = _largest(lambda t: _total(cfg, f, phase, t, batch) <= cap, cfg.max_context or MAX_DIM)
        max_batch = _largest(lambda b: _total(cfg, f, phase, context, b) <= cap, MAX_DIM)
    return MemoryPlan(cfg.name, phase, batch, context, weight_bytes(cfg, f), kv_cache_bytes(cfg, f, context, batch),
                      workspace_bytes(cfg, f, phase, context, batch), cap_gb, cap_source, max_context, max_batch,
                      cap_gb is not None and find_limits, cfg.max_context, tuple(notes))
