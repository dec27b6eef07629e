"""Vectorised roofline sweeps over numpy arrays of shapes, and across precisions and hardware.

The arrays go through the very functions the scalar path uses (``operators.gemm_flops``,
``gemm_operand_bytes``, ``predict.roofline_time``), so a sweep and ``predict`` agree exactly.
"""
from __future__ import annotations

import numpy as np

from .formats import get_format
from .hardware import get_hardware
from .operators import attention_flops, attention_operand_bytes, check_dim, gemm_flops, gemm_operand_bytes, \
    operand_formats
from .predict import UnsupportedPathError, bound_of, compute_path, roofline_time


def _finish(hw, path, flops, nbytes, peaks) -> dict:
    peak, bw = hw.peak_tflops(path.compute_class, peaks), hw.bandwidth_gbs(peaks)
    t_mem, t_comp, t = roofline_time(flops, nbytes, peak, bw)
    return {"flops": flops, "bytes": nbytes, "ai": flops / nbytes, "t_memory_s": t_mem, "t_compute_s": t_comp,
            "time_s": t, "bound": bound_of(t_mem, t_comp), "peak_tflops": peak, "bandwidth_gbs": bw,
            "compute_class": path.compute_class, "method": path.method}


def sweep_gemm(m, n, k, hardware, precision=None, weight=None, act=None, out=None, peaks="datasheet") -> dict:
    """GEMM predictions for broadcastable arrays ``m, n, k``; returns a dict of arrays."""
    m, n, k = (check_dim(name, np.asarray(v)) for name, v in (("m", m), ("n", n), ("k", k)))
    m, n, k = np.broadcast_arrays(m, n, k)
    w, a, o = operand_formats(precision, weight, act, out)
    hw = get_hardware(hardware)
    path = compute_path(hw, w.name, a.name)
    nbytes = sum(gemm_operand_bytes(m, n, k, w, a, o).values())
    return _finish(hw, path, gemm_flops(m, n, k), nbytes, peaks)


def sweep_attention(batch, heads, kv_heads, seq_q, seq_kv, head_dim, hardware, precision=None, act=None, kv=None,
                    out=None, causal=True, peaks="datasheet") -> dict:
    dims = {name: check_dim(name, np.asarray(v)) for name, v in (
        ("batch", batch), ("heads", heads), ("kv_heads", kv_heads), ("seq_q", seq_q), ("seq_kv", seq_kv),
        ("head_dim", head_dim))}
    b, h, hkv, sq, skv, d = np.broadcast_arrays(*dims.values())
    if causal and (sq > skv).any():
        raise ValueError("causal attention needs seq_q <= seq_kv everywhere in the sweep")
    _, a, o = operand_formats(precision, None, act, out)
    kvf = get_format(kv) if kv is not None else a
    hw = get_hardware(hardware)
    path = compute_path(hw, kvf.name, a.name)
    nbytes = sum(attention_operand_bytes(b, h, hkv, sq, skv, d, a, kvf, o).values())
    return _finish(hw, path, attention_flops(b, h, sq, skv, d, causal), nbytes, peaks)


def sweep_table(hardware_keys, precisions, shapes, peaks="datasheet") -> list[dict]:
    """One row per (hardware, precision, GEMM shape); unsupported pairs are rows that say so."""
    rows = []
    for hk in hardware_keys:
        hw = get_hardware(hk)
        for prec in precisions:
            w, a, _ = operand_formats(prec)
            shape_arr = np.asarray(shapes, dtype=np.int64).reshape(-1, 3)
            base = {"hardware": hw.key, "precision": prec, "weight_format": w.name, "act_format": a.name}
            try:
                res = sweep_gemm(shape_arr[:, 0], shape_arr[:, 1], shape_arr[:, 2], hw, prec, peaks=peaks)
            except UnsupportedPathError as e:
                rows.extend({**base, "m": int(s[0]), "n": int(s[1]), "k": int(s[2]), "status": f"unsupported: {e}"}
                            for s in shape_arr)
                continue
            for i, s in enumerate(shape_arr):
                rows.append({**base, "m": int(s[0]), "n": int(s[1]), "k": int(s[2]), "status": "ok",
                             "method": res["method"], "flops": float(res["flops"][i]), "bytes": float(res["bytes"][i]),
                             "ai": float(res["ai"][i]), "t_memory_s": float(res["t_memory_s"][i]),
                             "t_compute_s": float(res["t_compute_s"][i]), "time_s": float(res["time_s"][i]),
                             "bound": str(res["bound"][i])})
    return rows
