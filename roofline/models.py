"""Whole transformer layers and decoder model steps as sums of kernels.

Assumptions:
1. Llama-style decoder: RMSNorm -> fused QKV projection -> attention (GQA, KV cache) -> output
   projection -> RMSNorm -> gated FFN (SwiGLU). RoPE, residual adds and the KV-cache write are
   folded into their neighbours (a few bytes per token, negligible beside the weights).
2. Decode: ``batch`` sequences each add one token and attend over ``seq_len`` cached positions.
   Prefill: ``batch`` prompts of ``seq_len`` tokens, causal.
3. The LM head produces logits for the last position of each sequence only (what generation needs).
4. Linear layers use the weight format and read their inputs in the activation format; the residual
   stream (embedding, norms, attention, MoE router) is in the output format (16-bit for low-bit
   activations); the KV cache has its own format (default: the output format).
5. The LM head takes the weight format unless ``lm_head`` names its own: that default is what
   ``roofline_quantize/`` does (``apply_quantization`` quantizes every ``nn.Linear``, the LM head included;
   tests/test_models_moe.py ties the two). GPTQ/AWQ checkpoints usually keep it 16-bit: pass
   ``lm_head="bf16"`` for those.
6. Mixture of experts (``experts > 0``): every layer's FFN is the MoE block of ``moe.py`` (none of
   the named MoE models has dense layers; ``intermediate`` is then the config's unused dense width).
   A checkpoint that ships its experts quantized (gpt-oss: MXFP4) keeps them so unless
   ``expert_weight`` says otherwise.
7. Sliding-window layers (gpt-oss alternates them with full attention) attend over the last
   ``sliding_window`` positions: decode reads only the window's K/V; prefill reads all K/V once but
   computes only the visible pairs.
8. A step's roofline time is the sum of its kernels' roofline times (kernels run one after another).

9. A model attends over at most ``max_context`` positions (``max_position_embeddings`` of its config): a step,
   layer or memory plan at a longer context is refused, and the largest-context search stops there.
10. Dimensions are consistent or refused: ``hidden`` a multiple of ``heads`` unless ``head_dim`` is given
   (head_dim = hidden / heads), ``heads`` a multiple of ``kv_heads`` (each KV head serves a whole group).

Dims and ``max_context`` come from each model's published Hugging Face ``config.json`` (``source`` names it).
Where the hub file was not read here, a copy of it was (the comment beside the entry says which).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .formats import Format, get_format
from .moe import moe_ffn
from .operators import (MAX_DIM, Composite, attention, attention_pairs, check_dim, elementwise, ffn, gemm,
                        operand_formats)

PHASES = ("prefill", "decode")
DEFAULT_CONTEXT = 1024  # the one context (decode) / prompt (prefill) length every command assumes unless told
LM_HEAD_FOLLOWS_WEIGHTS = "weight"  # the --lm-head-precision default: what roofline_quantize/ does


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
    experts: int = 0  # routed experts per layer; 0: a dense FFN
    experts_per_token: int = 0
    shared_experts: int = 0  # experts every token runs (DeepSeek/Qwen2-MoE style), expert-sized each
    expert_intermediate: int | None = None  # default: intermediate
    expert_format: str | None = None  # the format the published checkpoint stores routed experts in
    sliding_window: int | None = None
    sliding_layers: int = 0  # layers attending over the window; the rest see the whole context
    max_context: int | None = None  # max_position_embeddings: the longest context the model attends over
    source: str = ""

    def __post_init__(self):
        for f in ("hidden", "heads", "kv_heads", "intermediate", "layers", "vocab"):
            check_dim(f, getattr(self, f))
        for f in ("head_dim", "expert_intermediate", "sliding_window", "max_context"):
            if getattr(self, f) is not None:
                check_dim(f, getattr(self, f))
        if self.head_dim is None and self.hidden % self.heads:
            raise ValueError(f"{self.name}: hidden={self.hidden} is not a multiple of heads={self.heads}: without "
                             "head_dim, each head is hidden / heads wide and that must be a whole number (give "
                             "head_dim to set it apart, as gpt-oss does)")
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.name}: heads={self.heads} is not a multiple of kv_heads={self.kv_heads}: each "
                             "KV head serves heads / kv_heads query heads, a whole number")
        if self.experts:
            check_dim("experts", self.experts)
            if not 1 <= self.experts_per_token <= self.experts:
                raise ValueError(f"{self.name}: experts_per_token={self.experts_per_token!r} is invalid; "
                                 f"allowed: 1..experts ({self.experts})")
        elif self.experts_per_token or self.shared_experts or self.expert_format:
            raise ValueError(f"{self.name}: experts_per_token, shared_experts and expert_format need experts > 0")
        if self.shared_experts:
            check_dim("shared_experts", self.shared_experts)
        if self.expert_format is not None:
            get_format(self.expert_format)
        if not 0 <= self.sliding_layers <= self.layers or (self.sliding_layers and not self.sliding_window):
            raise ValueError(f"{self.name}: sliding_layers={self.sliding_layers!r} is invalid; allowed: "
                             f"0..layers ({self.layers}), and > 0 only with a sliding_window")

    @property
    def dim_per_head(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def expert_width(self) -> int:
        return self.expert_intermediate or self.intermediate

    def param_counts(self) -> dict[str, int]:
        """Stored parameters by kind (all experts, whatever a step touches). The one count of them."""
        hd, h = self.dim_per_head, self.hidden
        per_layer = {"attention": h * (self.heads + 2 * self.kv_heads) * hd + self.heads * hd * h,
                     "ffn": 0 if self.is_moe else 3 * h * self.intermediate,
                     "shared_experts": 3 * h * self.shared_experts * self.expert_width,
                     "experts": 3 * h * self.experts * self.expert_width, "router": h * self.experts,
                     "norms": 2 * h}
        counts = {k: self.layers * v for k, v in per_layer.items()}
        counts["norms"] += h  # the final norm
        counts.update(embedding=self.vocab * h, lm_head=self.vocab * h)
        return counts

    @property
    def linear_params(self) -> int:
        """Parameters in the linear layers (the ones a weight format applies to), LM head included."""
        c = self.param_counts()
        return c["attention"] + c["ffn"] + c["shared_experts"] + c["experts"] + c["lm_head"]

    @property
    def active_linear_params(self) -> int:
        """Linear parameters one token runs through: ``experts_per_token`` of the routed experts."""
        if not self.is_moe:
            return self.linear_params
        return self.linear_params - self.param_counts()["experts"] * (1 - self.experts_per_token / self.experts)


def _hf(repo: str) -> str:
    return f"https://huggingface.co/{repo}/blob/main/config.json"


_LLAMA31 = 131072  # Llama 3.1/3.2/3.3: rope_scaling llama3 (factor 8 or 32) over original_max_position_embeddings 8192

MODEL_CONFIGS: dict[str, ModelConfig] = {c.name: c for c in (
    # Llama 2's config.json says 4096 today; early copies of it said 2048 (mlc-llm's model_preset.py still does).
    # Read here from copies of the three hub files in public code and logs, not from the hub itself.
    ModelConfig("llama2-7b", 4096, 32, 32, 11008, 32, 32000, max_context=4096, source=_hf("meta-llama/Llama-2-7b-hf")),
    ModelConfig("llama2-13b", 5120, 40, 40, 13824, 40, 32000, max_context=4096,
                source=_hf("meta-llama/Llama-2-13b-hf")),
    ModelConfig("llama2-70b", 8192, 64, 8, 28672, 80, 32000, max_context=4096,
                source=_hf("meta-llama/Llama-2-70b-hf")),
    # Llama 3 (8192) and 3.1 (131072) share their dims; the context is what sets them apart. 8192: a planner's
    # presets copied from the two hub files; 131072 (rope_scaling over 8192): copies of Llama-3.1-8B's, 3.2-1B's,
    # 3.2-3B's and 3.3-70B's configs (litgpt's block_size too); Llama-3.1-70B's was not read here
    ModelConfig("llama3-8b", 4096, 32, 8, 14336, 32, 128256, max_context=8192,
                source=_hf("meta-llama/Meta-Llama-3-8B")),
    ModelConfig("llama3-70b", 8192, 64, 8, 28672, 80, 128256, max_context=8192,
                source=_hf("meta-llama/Meta-Llama-3-70B")),
    ModelConfig("llama3.1-8b", 4096, 32, 8, 14336, 32, 128256, max_context=_LLAMA31,
                source=_hf("meta-llama/Llama-3.1-8B")),
    ModelConfig("llama3.1-70b", 8192, 64, 8, 28672, 80, 128256, max_context=_LLAMA31,
                source=_hf("meta-llama/Llama-3.1-70B")),
    ModelConfig("llama3.3-70b", 8192, 64, 8, 28672, 80, 128256, max_context=_LLAMA31,
                source=_hf("meta-llama/Llama-3.3-70B-Instruct")),
    ModelConfig("llama3.2-1b", 2048, 32, 8, 8192, 16, 128256, tied_embeddings=True, max_context=_LLAMA31,
                source=_hf("meta-llama/Llama-3.2-1B")),
    ModelConfig("llama3.2-3b", 3072, 24, 8, 8192, 28, 128256, tied_embeddings=True, max_context=_LLAMA31,
                source=_hf("meta-llama/Llama-3.2-3B")),
    # vocab 32000 and no sliding window: v0.2. Its 32768 is read from serving catalogs' copies; v0.1's config (as
    # mlc-llm's model_preset.py copies it) says the same 32768 beside a 4096 window, v0.3's too with a 32768 vocab
    ModelConfig("mistral-7b", 4096, 32, 8, 14336, 32, 32000, max_context=32768,
                source=_hf("mistralai/Mistral-7B-Instruct-v0.2")),
    # the base model's 131072, as transformers printed it from Qwen/Qwen2.5-7B (a copy read here); the Instruct
    # model's config is said to give 32768 (extended with YaRN): not read here
    ModelConfig("qwen2.5-7b", 3584, 28, 4, 18944, 28, 152064, max_context=_LLAMA31, source=_hf("Qwen/Qwen2.5-7B")),
    # layer_types alternate sliding_attention (even layers) and full_attention; quantization_config:
    # MXFP4 experts, with self_attn, router, embed_tokens and lm_head in modules_to_not_convert (bf16)
    ModelConfig("gpt-oss-20b", 2880, 64, 8, 2880, 24, 201088, head_dim=64, experts=32, experts_per_token=4,
                expert_intermediate=2880, expert_format="mxfp4", sliding_window=128, sliding_layers=12,
                max_context=131072, source=_hf("openai/gpt-oss-20b")),
    ModelConfig("gpt-oss-120b", 2880, 64, 8, 2880, 36, 201088, head_dim=64, experts=128, experts_per_token=4,
                expert_intermediate=2880, expert_format="mxfp4", sliding_window=128, sliding_layers=18,
                max_context=131072, source=_hf("openai/gpt-oss-120b")),
    ModelConfig("qwen3-30b-a3b", 2048, 32, 4, 6144, 48, 151936, head_dim=128, experts=128, experts_per_token=8,
                expert_intermediate=768, max_context=40960, source=_hf("Qwen/Qwen3-30B-A3B")),
    ModelConfig("mixtral-8x7b", 4096, 32, 8, 14336, 32, 32000, experts=8, experts_per_token=2,
                expert_intermediate=14336, max_context=32768, source=_hf("mistralai/Mixtral-8x7B-v0.1")),
)}
MODEL_ALIASES = {"7b": "llama2-7b", "13b": "llama2-13b", "8b": "llama3-8b", "70b": "llama3-70b",
                 "llama3.1-8b-instruct": "llama3.1-8b", "llama3.3-70b-instruct": "llama3.3-70b",
                 "gpt-oss": "gpt-oss-20b", "qwen3-30b": "qwen3-30b-a3b", "mixtral": "mixtral-8x7b",
                 "mixtral-8x7b-v0.1": "mixtral-8x7b"}


def check_context(cfg: ModelConfig, context: int, what: str = "context") -> int:
    """``context`` positions, refused past the model's ``max_context`` with the limit and where it comes from."""
    context = check_dim(what, context)
    if cfg.max_context is not None and context > cfg.max_context:
        raise ValueError(f"{what}={context} exceeds {cfg.name}'s max_position_embeddings {cfg.max_context} "
                         f"({cfg.source or 'its config'}); allowed: 1..{cfg.max_context}")
    return context


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
        if "layers" in overrides and cfg.sliding_layers and "sliding_layers" not in overrides:
            # a model whose layers alternate sliding-window and full attention keeps its share of each: gpt-oss-20b's
            # 12 of 24 at --layers 2 is 1 of 2 (12 of any count under 12 was refused, and 13 priced 1 full + 12)
            # (rounded up: gpt-oss's even layers slide, layer 0 first, so 1 layer is 1 sliding and 3 are 2)
            overrides["sliding_layers"] = -(-cfg.sliding_layers * overrides["layers"] // cfg.layers)
        cfg = dataclasses.replace(cfg, name=f"{cfg.name}(custom)", **overrides)
    return cfg


def tokens_per_step(phase: str, batch: int, seq_len: int) -> int:
    """Tokens one step produces or reads in: one per sequence decoding, the whole prompt per sequence in prefill."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}")
    return batch if phase == "decode" else batch * seq_len


@dataclass(frozen=True)
class StepFormats:
    """Every format a model step (and its memory plan) uses, resolved once."""
    weight: Format
    act: Format
    out: Format  # the residual stream: embedding table, norms, attention, router
    kv: Format
    lm_head: tuple  # (weight, act)
    experts: tuple  # (weight, act) of the routed experts
    embedding: Format | None = None  # the embedding table's storage (default: the residual stream's, ``out``)

    @property
    def embedding_format(self) -> Format:
        return self.embedding or self.out


def _own_pair(fmt, w: Format, a: Format, act=None) -> tuple:
    """(weight, act) of layers stored in their own format beside the model's (w, a)."""
    f = get_format(fmt)
    if act is not None:
        return f, get_format(act)
    if f == w:
        return w, a
    if a.is_16bit_or_wider_float and not f.is_16bit_or_wider_float:
        return f, a  # weight-only beside the model's 16-bit activations
    return f, operand_formats(precision=f)[1]  # a 16-bit head, or a native low-bit pair


def step_formats(cfg: ModelConfig, precision=None, weight=None, act=None, kv=None, out=None, lm_head=None,
                 expert_weight=None, expert_act=None, embedding=None) -> StepFormats:
    w, a, o = operand_formats(precision, weight, act, out)
    head = (w, a) if lm_head is None or str(lm_head).strip().lower() == LM_HEAD_FOLLOWS_WEIGHTS \
        else _own_pair(lm_head, w, a)
    experts = _own_pair(expert_weight or cfg.expert_format or w, w, a, expert_act)
    return StepFormats(w, a, o, get_format(kv) if kv is not None else o, head, experts,
                       get_format(embedding) if embedding is not None else None)


def describe_formats(cfg: ModelConfig, f: StepFormats) -> dict:
    """Every format a step assumes, by the part of the model it stores: what a prediction says it priced."""
    pair = lambda w, a: w.name if w == a else f"{w.name}/{a.name}"  # noqa: E731
    out = {"linear layers": pair(f.weight, f.act)}
    if cfg.is_moe:
        out["routed experts"] = pair(*f.experts) + (" (as the checkpoint ships them)" if cfg.expert_format and
                                                    f.experts[0].name == cfg.expert_format else "")
    out.update({"LM head": pair(*f.lm_head), "embedding": f.embedding_format.name, "residual stream": f.out.name,
                "KV cache": f.kv.name})
    return out


def window_pairs(seq_len: int, window: int) -> float:
    """Visible (query, key) pairs of a causal prefill where each query sees at most ``window`` keys."""
    if window >= seq_len:
        return attention_pairs(seq_len, seq_len, True)
    return window * (window + 1) / 2.0 + (seq_len - window) * window


def _attention(cfg: ModelConfig, phase, batch, seq_len, f: StepFormats, window):
    hd, o = cfg.dim_per_head, f.out
    if phase == "decode":
        seen = seq_len if window is None else min(seq_len, window)
        return attention(batch, cfg.heads, cfg.kv_heads, 1, seen, hd, act=o, kv=f.kv, out=o, causal=True)
    full = attention(batch, cfg.heads, cfg.kv_heads, seq_len, seq_len, hd, act=o, kv=f.kv, out=o, causal=True)
    if window is None or window >= seq_len:
        return full
    # a window changes only how many pairs are visible; every K/V position is still read once
    return dataclasses.replace(full, flops=full.flops * window_pairs(seq_len, window) / attention_pairs(
        seq_len, seq_len, True), shape={**full.shape, "window": window})


def _check_step(phase: str, batch: int, seq_len: int) -> None:
    """A step's tokens are its GEMMs' rows: say so in the flags' words where they pass a dimension's limit (the error
    named the GEMM's m=17592186036224, not --batch)."""
    t = tokens_per_step(phase, batch, seq_len)
    if t > MAX_DIM:
        raise ValueError(f"batch {batch} x {seq_len} tokens = {t} rows per {phase} step, over the {MAX_DIM} a "
                         "GEMM dimension may be: a smaller batch or context")


def transformer_layer(cfg: ModelConfig, phase: str, batch: int, seq_len: int, precision=None, weight=None,
                      act=None, kv=None, out=None, expert_weight=None, expert_act=None,
                      sliding: bool = False) -> Composite:
    """One layer; ``sliding=True`` prices a sliding-window layer of a model that has them."""
    batch, seq_len = check_dim("batch", batch), check_context(cfg, seq_len, "seq_len")
    _check_step(phase, batch, seq_len)
    f = step_formats(cfg, precision, weight, act, kv, out, expert_weight=expert_weight, expert_act=expert_act)
    return _layer(cfg, phase, batch, seq_len, f, sliding)


def _layer(cfg: ModelConfig, phase, batch, seq_len, f: StepFormats, sliding: bool) -> Composite:
    if sliding and not cfg.sliding_window:
        raise ValueError(f"{cfg.name} has no sliding-window layers")
    w, a, o = f.weight, f.act, f.out
    t = tokens_per_step(phase, batch, seq_len)
    hd = cfg.dim_per_head
    if cfg.is_moe:
        mlp = moe_ffn(t, cfg.hidden, cfg.experts, cfg.experts_per_token, cfg.expert_width, *f.experts,
                      out=o, shared_experts=cfg.shared_experts, shared=(w, a))
    else:
        mlp = ffn(t, cfg.hidden, cfg.intermediate, weight=w, act=a, out=o)
    return Composite(f"{cfg.name} {'sliding-window ' if sliding else ''}layer ({phase})", (
        elementwise(t * cfg.hidden, o, flops_per_element=4.0, name="attn_norm"),
        gemm(t, (cfg.heads + 2 * cfg.kv_heads) * hd, cfg.hidden, weight=w, act=a, out=o, name="qkv_proj"),
        _attention(cfg, phase, batch, seq_len, f, cfg.sliding_window if sliding else None),
        gemm(t, cfg.hidden, cfg.heads * hd, weight=w, act=a, out=o, name="o_proj"),
        elementwise(t * cfg.hidden, o, flops_per_element=4.0, name="ffn_norm"),
        mlp,
    ))


def model_step(cfg: ModelConfig, phase: str, batch: int, seq_len: int, precision=None, weight=None, act=None,
               kv=None, out=None, lm_head=None, expert_weight=None, expert_act=None, embedding=None) -> Composite:
    """One forward step of the whole decoder: embedding, all layers, final norm, LM head.

    ``lm_head``: None or "weight" (the weight format, as roofline_quantize/ does) or a format of its own.
    ``expert_weight``/``expert_act``: the routed experts' formats (default: the checkpoint's, else the
    weight format). ``embedding``: the embedding table's storage (the memory plan's; a step reads one row per token).
    """
    batch, seq_len = check_dim("batch", batch), check_context(cfg, seq_len, "seq_len")
    _check_step(phase, batch, seq_len)
    f = step_formats(cfg, precision, weight, act, kv, out, lm_head, expert_weight, expert_act, embedding)
    t = tokens_per_step(phase, batch, seq_len)
    full = cfg.layers - cfg.sliding_layers
    layers = tuple(Composite(name, _layer(cfg, phase, batch, seq_len, f, sliding).parts, repeat=n)
                   for name, n, sliding in (("layers", full, False), ("sliding_layers", cfg.sliding_layers, True))
                   if n)
    o = f.out
    return Composite(f"{cfg.name} {phase} step", (
        elementwise(t * cfg.hidden, o, flops_per_element=0.0, name="embedding"),
        *layers,
        elementwise(batch * cfg.hidden, o, flops_per_element=4.0, name="final_norm"),
        gemm(batch, cfg.vocab, cfg.hidden, weight=f.lm_head[0], act=f.lm_head[1], out=o, name="lm_head"),
    ))
