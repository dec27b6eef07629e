"""A local Hugging Face causal LM behind the interface the pipeline uses (never fetched from a hub).

Written against transformers' documented API (``AutoModelForCausalLM``, ``AutoTokenizer``,
``DynamicCache.crop``); transformers is not a dependency of this project, and this path is only
exercised where it and a local model directory exist.
"""
from __future__ import annotations

import math
import os

import torch
from torch import nn

from roofline import ModelConfig


class HFCausalLM(nn.Module):
    def __init__(self, model, tokenizer, path: str):
        super().__init__()
        self.model, self.tokenizer, self.path = model, tokenizer, path
        c = model.config
        self.config = self  # the pipeline reads model.config.to_roofline()
        self.vocab = c.vocab_size
        self._cache = None

    def to_roofline(self) -> ModelConfig:
        c = self.model.config
        return ModelConfig(os.path.basename(self.path.rstrip("/")) or "hf", c.hidden_size, c.num_attention_heads,
                           getattr(c, "num_key_value_heads", None) or c.num_attention_heads, c.intermediate_size,
                           c.num_hidden_layers, c.vocab_size, head_dim=getattr(c, "head_dim", None))

    def setup_cache(self, batch: int = 1, dtype=None):
        self._cache = None

    @torch.no_grad()
    def forward(self, tokens, start_pos: int = 0, last_only: bool = True):
        from transformers import DynamicCache
        if start_pos == 0 or self._cache is None:
            self._cache = DynamicCache()
        else:
            self._cache.crop(start_pos)
        out = self.model(input_ids=tokens, past_key_values=self._cache, use_cache=True)
        logits = out.logits[:, -1:] if last_only else out.logits
        return logits.float()

    @torch.no_grad()
    def perplexity(self, text: str) -> float:
        ids = self.tokenizer(text, return_tensors="pt").input_ids
        return math.exp(float(self.model(input_ids=ids, labels=ids).loss))


def load_local_model(path: str) -> HFCausalLM:
    if not os.path.isdir(path):
        raise ValueError(f"--model {path!r}: not 'tiny' and not a local model directory (models are never "
                         "downloaded at run time)")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ValueError(f"--model {path!r} needs the transformers package, which is not installed") from None
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, torch_dtype=torch.bfloat16).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return HFCausalLM(model, tokenizer, path)
