"""A local Hugging Face causal LM behind the interface the pipeline uses (never fetched from a hub).

Written against transformers' documented API (``AutoModelForCausalLM``, ``AutoTokenizer``,
``DynamicCache.crop``); transformers is not a dependency of this project, and this path is only
exercised where it and a local model directory exist.
"""
from __future__ import annotations

import inspect
import math
import os

import torch
from torch import nn

from roofline import ModelConfig


class HFDims:
    """The model's dims as the theory reads them (a plain object: not a submodule)."""

    def __init__(self, hf_config, name: str):
        self.hf_config, self.name = hf_config, name

    def to_roofline(self) -> ModelConfig:
        """The fields the theory prices, read from config.json as transformers names it: the routed experts
        (``num_local_experts`` or ``num_experts``, ``num_experts_per_tok``, Qwen's ``moe_intermediate_size``), the
        sliding-window layers (``layer_types``, or every layer where ``sliding_window`` is set and not switched off by
        ``use_sliding_window``), tied embeddings and the context limit. Only the dense dims were read: Mixtral was
        priced as one 14336-wide FFN (1.44e10 decode bytes for 2.57e10), gpt-oss without its experts or windows."""
        c = self.hf_config
        experts = getattr(c, "num_local_experts", None) or getattr(c, "num_experts", None) or 0
        per_token = (getattr(c, "num_experts_per_tok", None) or getattr(c, "experts_per_token", None) or 0) \
            if experts else 0
        if experts and not per_token:
            raise ValueError(f"{self.name}: config.json has {experts} experts but no num_experts_per_tok: how many a "
                             "token runs is what its experts cost")
        if experts and (getattr(c, "first_k_dense_replace", 0) or 0):  # DeepSeek: the first layers dense, the rest MoE
            raise ValueError(f"{self.name}: its first {c.first_k_dense_replace} layers are dense and the rest MoE "
                             "(first_k_dense_replace): a mix of layer kinds the theory does not price")
        width = (getattr(c, "moe_intermediate_size", None) or None) if experts else None
        # shared experts every token runs: DeepSeek counts them, Qwen2-MoE gives their summed width
        shared = getattr(c, "n_shared_experts", None) or 0
        if experts and not shared and getattr(c, "shared_expert_intermediate_size", None):
            shared = max(1, round(c.shared_expert_intermediate_size / (width or c.intermediate_size)))
        window = getattr(c, "sliding_window", None)
        types = list(getattr(c, "layer_types", None) or [])
        if not window or getattr(c, "use_sliding_window", True) is False:
            window, sliding = None, 0
        else:
            sliding = sum(t == "sliding_attention" for t in types) if types else c.num_hidden_layers
            window = window if sliding else None
        return ModelConfig(self.name, c.hidden_size, c.num_attention_heads,
                           getattr(c, "num_key_value_heads", None) or c.num_attention_heads, c.intermediate_size,
                           c.num_hidden_layers, c.vocab_size, head_dim=getattr(c, "head_dim", None),
                           tied_embeddings=bool(getattr(c, "tie_word_embeddings", False)),
                           experts=experts, experts_per_token=per_token, shared_experts=shared if experts else 0,
                           expert_intermediate=width,
                           sliding_window=window, sliding_layers=sliding,
                           max_context=getattr(c, "max_position_embeddings", None))


class HFCausalLM(nn.Module):
    def __init__(self, model, tokenizer, path: str):
        super().__init__()
        self.model, self.tokenizer, self.path = model, tokenizer, path
        self.config = HFDims(model.config, os.path.basename(path.rstrip("/")) or "hf")
        self._cache = None
        # transformers 5.25 renamed forward's `past_key_values` to `cache` (the old name warns until 5.40);
        # earlier releases take only `past_key_values`
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in params  # transformers 4.50 on; **kwargs alone is no promise

    def setup_cache(self, batch: int = 1, dtype=None):
        self._cache = None

    @torch.no_grad()
    def forward(self, tokens, start_pos: int = 0, last_only: bool = True):
        from transformers import DynamicCache
        if start_pos == 0 or self._cache is None:
            self._cache = DynamicCache()
        elif self._cache.get_seq_length() > start_pos:
            # a negative count (drop that many tokens) means the same in transformers 4 and 5; v5
            # refuses a positive one
            self._cache.crop(-(self._cache.get_seq_length() - start_pos))
        # the last position's logits alone where that is all a step uses, as the theory prices a step's LM head
        # (one row a sequence): without it the head ran over every prompt position (a 512-token prefill of a 1B
        # model: a quarter of its FLOPs) and the measured prefill was not the predicted one
        keep = {"logits_to_keep": 1} if last_only and self._logits_to_keep else {}
        out = self.model(input_ids=tokens, use_cache=True, **{self._cache_kwarg: self._cache}, **keep)
        logits = out.logits[:, -1:] if last_only else out.logits
        return logits.float()

    @torch.no_grad()
    def perplexity(self, text: str) -> float:
        ids = self.tokenizer(text, return_tensors="pt").input_ids
        return math.exp(float(self.model(input_ids=ids, labels=ids).loss))


def check_model_dir(path: str) -> None:
    """A local model directory, or ValueError naming it (nothing is downloaded at run time)."""
    if not os.path.isdir(path):
        raise ValueError(f"--model {path!r}: not 'tiny' and not a local model directory (models are never "
                         "downloaded at run time)")


def load_local_model(path: str) -> HFCausalLM:
    check_model_dir(path)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        if e.name == "transformers":
            raise ValueError(f"--model {path!r} needs the transformers package, which is not installed") from None
        from roofline_kernels.stack import import_failure
        raise ValueError(f"--model {path!r}: {import_failure('transformers', e)}") from None
    except Exception as e:  # a transformers that breaks at import (its torch too old or too new): told, not crashed
        from roofline_kernels.stack import import_failure
        raise ValueError(f"--model {path!r}: {import_failure('transformers', e)}") from None
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.bfloat16).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return HFCausalLM(model, tokenizer, path)
