"""A small Llama-style decoder (gpt-fast's layout) that runs anywhere, with seeded random weights.

Its layers are exactly the kernels ``roofline.models.model_step`` prices: a fused QKV projection,
GQA attention over a KV cache, output projection, SwiGLU FFN (w1, w3, w2), RMSNorms and an LM head
that produces the last position's logits. Rotary embeddings are left out: they change neither the
bytes nor the FLOPs, and logits stay a deterministic function of the weights.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from roofline import ModelConfig


@dataclass(frozen=True)
class TinyConfig:
    dim: int = 1024
    n_layers: int = 4
    n_heads: int = 16
    n_kv_heads: int = 4
    intermediate: int = 2816
    vocab: int = 8192
    max_seq: int = 512
    seed: int = 0

    def to_roofline(self) -> ModelConfig:
        return ModelConfig("tiny", self.dim, self.n_heads, self.n_kv_heads, self.intermediate, self.n_layers,
                           self.vocab)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        x32 = x.float()
        return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class Attention(nn.Module):
    def __init__(self, c: TinyConfig):
        super().__init__()
        self.c, self.head_dim = c, c.dim // c.n_heads
        self.wqkv = nn.Linear(c.dim, (c.n_heads + 2 * c.n_kv_heads) * self.head_dim, bias=False)
        self.wo = nn.Linear(c.n_heads * self.head_dim, c.dim, bias=False)
        self.k_cache = self.v_cache = None

    def setup_cache(self, batch: int, dtype):
        shape = (batch, self.c.n_kv_heads, self.c.max_seq, self.head_dim)
        held = next(itertools.chain(self.parameters(), self.buffers()), None)  # where the layer runs (a packed INT4
        device = held.device if held is not None else "cpu"                  # layer holds buffers, not a .weight)
        self.k_cache, self.v_cache = (torch.zeros(shape, dtype=dtype, device=device),
                                      torch.zeros(shape, dtype=dtype, device=device))

    def forward(self, x, start_pos: int):
        b, t, _ = x.shape
        c, hd = self.c, self.head_dim
        q, k, v = self.wqkv(x).split([c.n_heads * hd, c.n_kv_heads * hd, c.n_kv_heads * hd], dim=-1)
        q = q.view(b, t, c.n_heads, hd).transpose(1, 2)
        k = k.view(b, t, c.n_kv_heads, hd).transpose(1, 2)
        v = v.view(b, t, c.n_kv_heads, hd).transpose(1, 2)
        end = start_pos + t
        self.k_cache[:b, :, start_pos:end] = k.to(self.k_cache.dtype)
        self.v_cache[:b, :, start_pos:end] = v.to(self.v_cache.dtype)
        keys, values = self.k_cache[:b, :, :end].to(q.dtype), self.v_cache[:b, :, :end].to(q.dtype)
        if t > 1 and start_pos == 0:
            y = F.scaled_dot_product_attention(q, keys, values, is_causal=True, enable_gqa=True)
        elif t == 1:
            y = F.scaled_dot_product_attention(q, keys, values, enable_gqa=True)
        else:
            raise ValueError("chunked prefill (several tokens after a filled cache) is not supported")
        return self.wo(y.transpose(1, 2).reshape(b, t, c.n_heads * hd))


class FeedForward(nn.Module):
    def __init__(self, c: TinyConfig):
        super().__init__()
        self.w1 = nn.Linear(c.dim, c.intermediate, bias=False)
        self.w3 = nn.Linear(c.dim, c.intermediate, bias=False)
        self.w2 = nn.Linear(c.intermediate, c.dim, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, c: TinyConfig):
        super().__init__()
        self.attention_norm, self.attention = RMSNorm(c.dim), Attention(c)
        self.ffn_norm, self.feed_forward = RMSNorm(c.dim), FeedForward(c)

    def forward(self, x, start_pos):
        h = x + self.attention(self.attention_norm(x), start_pos)
        return h + self.feed_forward(self.ffn_norm(h))


class TinyLlama(nn.Module):
    def __init__(self, c: TinyConfig = TinyConfig()):
        super().__init__()
        self.config = c
        gen = torch.Generator().manual_seed(c.seed)
        self.tok_embeddings = nn.Embedding(c.vocab, c.dim)
        self.layers = nn.ModuleList(Block(c) for _ in range(c.n_layers))
        self.norm = RMSNorm(c.dim)
        self.output = nn.Linear(c.dim, c.vocab, bias=False)
        with torch.no_grad():
            for name, p in self.named_parameters():
                if p.dim() == 2:  # scaled so activations neither vanish nor explode through the layers
                    p.copy_(torch.randn(p.shape, generator=gen) / p.shape[1] ** 0.5)

    def setup_cache(self, batch: int = 1, dtype=torch.bfloat16):
        for layer in self.layers:
            layer.attention.setup_cache(batch, dtype)

    @torch.no_grad()
    def forward(self, tokens: torch.Tensor, start_pos: int = 0, last_only: bool = True) -> torch.Tensor:
        if tokens.shape[1] + start_pos > self.config.max_seq:
            raise ValueError(f"{start_pos} + {tokens.shape[1]} tokens exceed max_seq={self.config.max_seq}")
        x = self.tok_embeddings(tokens)
        for layer in self.layers:
            x = layer(x, start_pos)
        x = self.norm(x[:, -1:] if last_only else x)
        return self.output(x).float()


def build_tiny(config: TinyConfig = TinyConfig(), dtype=torch.bfloat16) -> TinyLlama:
    model = TinyLlama(config).to(dtype).eval()
    model.setup_cache(1, dtype)
    return model
