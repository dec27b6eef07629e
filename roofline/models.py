"""Whole transformer layers and decoder model steps as sums of kernels.

Assumptions:
1. Llama-style decoder: RMSNorm -> fused QKV projection -> attention (GQA, KV cache) -> output
   projection -> RMSNorm -> gated FFN (SwiGLU). RoPE, residual adds and the KV-cache write are
   folded into their neighbours (a few bytes per token, negligible beside the weights).
2. Decode: ``batch`` sequences each add one token and attend over ``seq_len`` cached positions.
   Prefill: ``batch`` prompts of ``seq_len`` tokens, causal.
3. The LM head produces logits for the last position of each sequence only (what generation needs).
4. Linear layers (and the LM head) use the weight format and read their inputs in the activation
   format; the residual stream (embedding, norms, attention) is in the output format (16-bit for
   low-bit activations); the KV cache has its own format (default: the output format).
5. A step's roofline time is the sum of its kernels' roofline times (kernels run one after another).

Dims come from each model's published Hugging Face ``config.json``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .operators import Composite, attention, check_dim, elementwise, ffn, gemm, operand_formats

PHASES = ("prefill", "decode")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    layers: int
    vocab: int
    head_dim: int | None = None
    tied_embeddings: bool = False

    def __post_init__(self):
        for f in ("hidden", "heads", "kv_heads", "intermediate", "layers", "vocab"):
            check_dim(f, getattr(self, f))
        if self.head_dim is not None:
            check_dim("head_dim", self.head_dim)
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.name}: heads={self.heads} is not a multiple of kv_heads={self.kv_heads}")

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def linear_params(self) -> int:
        """Parameters in the linear layers (the ones a weight format applies to), LM head included."""
        hd = self.dim_per_head
        attn = self.hidden * (self.heads + 2 * self.kv_heads) * hd + self.heads * hd * self.hidden
        return self.layers * (attn + 3 * self.hidden * self.intermediate) + self.hidden * self.vocab


MODEL_CONFIGS: dict[str, ModelConfig] = {c.name: c for c in (
    ModelConfig("llama2-7b", 4096, 32, 32, 11008, 32, 32000),
    ModelConfig("llama2-13b", 5120, 40, 40, 13824, 40, 32000),
    ModelConfig("llama2-70b", 8192, 64, 8, 28672, 80, 32000),
    ModelConfig("llama3-8b", 4096, 32, 8, 14336, 32, 128256),
    ModelConfig("llama3-70b", 8192, 64, 8, 28672, 80, 128256),
    ModelConfig("llama3.2-1b", 2048, 32, 8, 8192, 16, 128256, tied_embeddings=True),
    ModelConfig("llama3.2-3b", 3072, 24, 8, 8192, 28, 128256, tied_embeddings=True),
    ModelConfig("mistral-7b", 4096, 32, 8, 14336, 32, 32000),
    ModelConfig("qwen2.5-7b", 3584, 28, 4, 18944, 28, 152064),
)}
MODEL_ALIASES = {"7b": "llama2-7b", "13b": "llama2-13b", "8b": "llama3-8b", "70b": "llama3-70b",
                 "llama3.1-8b": "llama3-8b", "llama3.1-70b": "llama3-70b", "llama3.3-70b": "llama3-70b"}


def get_model_config(name: str | ModelConfig, **overrides) -> ModelConfig:
    """A named config, optionally with some dims replaced (``hidden=5120``...)."""
    if isinstance(name, ModelConfig):
        cfg = name
    else:
        key = str(name).strip().lower()
        key = MODEL_ALIASES.get(key, key)
        if key not in MODEL_CONFIGS:
            raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_CONFIGS)} "
                             f"(aliases: {', '.join(MODEL_ALIASES)})")
        cfg = MODEL_CONFIGS[key]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(ModelConfig)}
        if unknown:
            raise ValueError(f"unknown model field(s) {sorted(unknown)}")
        cfg = dataclasses.replace(cfg, name=f"{cfg.name}(custom)", **overrides)
    return cfg


def _tokens(phase: str, batch: int, seq_len: int) -> int:
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
    return batch if phase == "decode" else batch * seq_len


def transformer_layer(cfg: ModelConfig, phase: str, batch: int, seq_len: int, precision=None, weight=None,
                      act=None, kv=None, out=None) -> Composite:
    batch, seq_len = check_dim("batch", batch), check_dim("seq_len", seq_len)
    w, a, o = operand_formats(precision, weight, act, out)
    t = _tokens(phase, batch, seq_len)
    hd = cfg.dim_per_head
    seq_q = 1 if phase == "decode" else seq_len
    return Composite(f"{cfg.name} layer ({phase})", (
        elementwise(t * cfg.hidden, o, flops_per_element=4.0, name="attn_norm"),
        gemm(t, (cfg.heads + 2 * cfg.kv_heads) * hd, cfg.hidden, weight=w, act=a, out=o, name="qkv_proj"),
        attention(batch, cfg.heads, cfg.kv_heads, seq_q, seq_len, hd, act=o, kv=kv or o, out=o, causal=True),
        gemm(t, cfg.hidden, cfg.heads * hd, weight=w, act=a, out=o, name="o_proj"),
        elementwise(t * cfg.hidden, o, flops_per_element=4.0, name="ffn_norm"),
        ffn(t, cfg.hidden, cfg.intermediate, weight=w, act=a, out=o),
    ))


def model_step(cfg: ModelConfig, phase: str, batch: int, seq_len: int, precision=None, weight=None, act=None,
               kv=None, out=None) -> Composite:
    """One forward step of the whole decoder: embedding, all layers, final norm, LM head."""
    batch, seq_len = check_dim("batch", batch), check_dim("seq_len", seq_len)
    w, a, o = operand_formats(precision, weight, act, out)
    t = _tokens(phase, batch, seq_len)
    layer = transformer_layer(cfg, phase, batch, seq_len, weight=w, act=a, kv=kv, out=o)
    return Composite(f"{cfg.name} {phase} step", (
        elementwise(t * cfg.hidden, o, flops_per_element=0.0, name="embedding"),
        Composite("layers", layer.parts, repeat=cfg.layers),
        elementwise(batch * cfg.hidden, o, flops_per_element=4.0, name="final_norm"),
        gemm(batch, cfg.vocab, cfg.hidden, weight=w, act=a, out=o, name="lm_head"),
    ))
