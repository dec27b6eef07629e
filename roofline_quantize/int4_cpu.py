"""A real packed 4-bit linear layer for CPUs (torchao 0.18 has no packed INT4 path that runs here).

Weights are quantized asymmetrically per group of 128 along K in tinygemm's convention
(``w ~ (q - 8) * scale + zero``), packed two per byte by ``aten._convert_weight_to_int4pack_for_cpu``
and multiplied by ``aten._weight_int4pack_mm_for_cpu``; scale and zero are bf16, so the layer stores
exactly the ``int4_tinygemm`` format: 4.25 bits per weight. Activations run in bf16.
"""
from __future__ import annotations

import torch

from roofline_kernels.ops import INT4_GROUP, quantize_int4_groupwise


def int4_cpu_unsupported_reason(linear: torch.nn.Linear, group_size: int = INT4_GROUP) -> str | None:
    n, k = linear.weight.shape
    if group_size != INT4_GROUP:
        return f"the CPU packed INT4 kernel is built for group size {INT4_GROUP}, not {group_size}"
    if k % group_size:
        return f"in_features={k} is not a multiple of the group size {group_size}"
    if n % 16:
        return f"out_features={n} is not a multiple of 16 (packed layout)"
    return None


class Int4PackedLinear(torch.nn.Module):
    def __init__(self, linear: torch.nn.Linear, group_size: int = INT4_GROUP):
        super().__init__()
        why = int4_cpu_unsupported_reason(linear, group_size)
        if why:
            raise ValueError(f"cannot pack {tuple(linear.weight.shape)} to INT4: {why}")
        self.in_features, self.out_features, self.group_size = linear.in_features, linear.out_features, group_size
        q, scale, zero = quantize_int4_groupwise(linear.weight.detach().float().cpu())
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        self.register_buffer("scales_and_zeros", torch.stack([scale, zero], dim=-1).to(torch.bfloat16).contiguous())
        # inference-only: the bias is a buffer, so outputs never require grad
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().to(torch.bfloat16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(x.reshape(-1, shape[-1]).to(torch.bfloat16), self.packed,
                                                       self.group_size, self.scales_and_zeros)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, int4 packed"
