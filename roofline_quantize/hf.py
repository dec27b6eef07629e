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
        c = self.hf_config
        return ModelConfig(self.name, c.hidden_size, c.num_attention_heads,
                           getattr(c, "num_key_value_heads", None) or c.num_attention_heads, c.intermediate_size,
                           c.num_hidden_layers, c.vocab_size, head_dim=getattr(c, "head_dim", None))


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
        out = self.model(input_ids=tokens, use_cache=True, **{self._cache_kwarg: self._cache})
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
