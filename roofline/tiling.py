"""DRAM traffic of a tiled GEMM when operands are re-read per tile.

Model (output-stationary tiling, the loop order cuBLAS/CUTLASS kernels use):
1. ``C[M,N]`` is cut into ``tile_m x tile_n`` output tiles; each tile streams its ``tile_m x K`` panel
   of A and ``K x tile_n`` panel of B through on-chip memory in ``tile_k`` slices.
2. So A is read ``ceil(N / tile_n)`` times, B ``ceil(M / tile_m)`` times and C written once. With
   tiles covering the whole problem every operand moves once: the compulsory bytes of ``operators``.
3. A tile fits when its A slice, B slice and FP32 accumulator fit in ``onchip_bytes`` (shared
   memory / registers, or L2 for the L2-level view).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .operators import check_dim, gemm, operand_formats
from .formats import tensor_bytes

ACCUMULATOR_FORMAT = "fp32"


@dataclass(frozen=True)
class TiledTraffic:
    tile_m: int
    tile_n: int
    tile_k: int
    a_reads: int
    b_reads: int
    dram_bytes: float
    compulsory_bytes: float
    flops: float
    tile_working_set_bytes: float

    @property
    def ai(self) -> float:
        return self.flops / self.dram_bytes

    @property
    def compulsory_ai(self) -> float:
        return self.flops / self.compulsory_bytes

    @property
    def excess(self) -> float:
        """DRAM bytes over compulsory bytes (1.0 = no re-reads)."""
        return self.dram_bytes / self.compulsory_bytes


def tiled_gemm_traffic(m, n, k, tile_m, tile_n, tile_k=64, precision=None, weight=None, act=None, out=None,
                       onchip_bytes=None) -> TiledTraffic:
    cost = gemm(m, n, k, precision, weight, act, out)
    m, n, k = cost.shape["m"], cost.shape["n"], cost.shape["k"]
    tm, tn = min(check_dim("tile_m", tile_m), m), min(check_dim("tile_n", tile_n), n)
    tk = min(check_dim("tile_k", tile_k), k)
    w, a, _ = operand_formats(precision, weight, act, out)
    working_set = tensor_bytes(a, tm * tk) + tensor_bytes(w, tk * tn) + tensor_bytes(ACCUMULATOR_FORMAT, tm * tn)
    if onchip_bytes is not None and working_set > onchip_bytes:
        raise ValueError(f"tile {tm}x{tn}x{tk} needs {working_set:.0f} B on chip but only {onchip_bytes} B "
                         "are available; use smaller tiles")
    a_reads, b_reads = math.ceil(n / tn), math.ceil(m / tm)
    ob = cost.operand_bytes
    dram = ob["activations"] * a_reads + ob["weights"] * b_reads + ob["output"]
    return TiledTraffic(tm, tn, tk, a_reads, b_reads, dram, cost.bytes, cost.flops, working_set)


def best_tiling(m, n, k, onchip_bytes, tile_k=64, precision=None, weight=None, act=None, out=None,
                candidates=(16, 32, 64, 128, 256, 512, 1024, 2048, 4096)) -> TiledTraffic:
    """The power-of-two tile that fits ``onchip_bytes`` and moves the fewest DRAM bytes."""
    best = None
    for tm in candidates:
        for tn in candidates:
            try:
                t = tiled_gemm_traffic(m, n, k, tm, tn, tile_k, precision, weight, act, out, onchip_bytes)
            except ValueError:
                continue
            if best is None or t.dram_bytes < best.dram_bytes:
                best = t
    if best is None:
        raise ValueError(f"no tile from {candidates} fits in {onchip_bytes} B on chip")
    return best
