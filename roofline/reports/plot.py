"""Roofline plots (matplotlib, imported only when a plot is drawn) as PNG bytes for reports.

The roof is drawn from ``predict.roofline_time`` (attainable FLOP/s = AI / time for one byte), so a
plot shows exactly the model the predictions use. Datasheet roofs are solid, calibrated roofs dashed;
measured points are hollow circles in their precision's colour, predictions small crosses.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..predict import critical_ai, roofline_time

PRECISION_COLOURS = {
    "fp16": "#f97316", "bf16": "#fb923c", "fp8_e4m3": "#22c55e", "fp8_e5m2": "#16a34a", "nvfp4": "#a855f7",
    "int8": "#06b6d4", "int4": "#3b82f6",
    # the rest, distinct from those
    "fp32": "#64748b", "tf32": "#94a3b8", "mxfp4": "#d946ef", "mxfp6": "#e11d48", "mxfp8": "#84cc16",
    "int4_tinygemm": "#1d4ed8", "int4_g128": "#2563eb", "nf4": "#0ea5e9", "nf4_dq": "#0284c7", "int32": "#475569",
}
CLASS_COLOURS = {"fp32": "#64748b", "tf32": "#94a3b8", "fp16": "#f97316", "bf16": "#fb923c", "fp8": "#22c55e",
                 "int8": "#06b6d4", "int4": "#3b82f6", "fp4": "#a855f7"}


def colour_for(precision: str) -> str:
    """Colour of a precision label like ``int8`` or ``int4_tinygemm/bf16`` (the weight format decides)."""
    return PRECISION_COLOURS.get(precision.split("/")[0], "#111827")


@dataclass(frozen=True)
class Roof:
    """One roof to draw (PNG here, SVG in ``roofline.reports.svg``); ``peak_tflops=None``: the memory slope alone."""
    label: str
    peak_tflops: float | None
    bandwidth_gbs: float
    colour: str = "#334155"
    calibrated: bool = False


@dataclass(frozen=True)
class Point:
    label: str
    ai: float
    tflops: float
    colour: str
    measured: bool = True


def attainable_tflops(ai, peak_tflops, bandwidth_gbs):
    _, _, t = roofline_time(ai, 1.0, peak_tflops, bandwidth_gbs)
    return ai / t / 1e12


def roofline_png(roofs: list[Roof], points: list[Point], title: str = "", size=(5.0, 3.6), dpi=90) -> bytes:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ais = [p.ai for p in points if p.ai > 0] or [1.0]
    # a memory-only roof is drawn up to just above the highest point (it has no flat part of its own)
    top = 4 * max((p.tflops for p in points), default=1.0)
    roofs = [r if r.peak_tflops else Roof(r.label, top, r.bandwidth_gbs, r.colour, r.calibrated) for r in roofs]
    ridges = [critical_ai(r.peak_tflops, r.bandwidth_gbs) for r in roofs]
    lo = min(min(ais) / 4, min(ridges, default=1) / 8)
    hi = max(max(ais) * 4, max(ridges, default=1) * 8)
    x = np.logspace(np.log10(max(lo, 1e-3)), np.log10(hi), 200)
    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    try:
        for r in roofs:
            ax.plot(x, attainable_tflops(x, r.peak_tflops, r.bandwidth_gbs), color=r.colour, lw=1.6,
                    ls="--" if r.calibrated else "-", label=r.label)
        for p in points:
            if p.measured:
                ax.scatter([p.ai], [p.tflops], s=46, facecolors="none", edgecolors=p.colour, linewidths=1.8,
                           label=p.label, zorder=3)
            else:
                ax.scatter([p.ai], [p.tflops], s=30, marker="x", color=p.colour, label=p.label, zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP/byte)")
        ax.set_ylabel("TFLOP/s")
        ax.grid(True, which="both", alpha=0.25)
        if title:
            ax.set_title(title, fontsize=9)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=6, loc="lower right")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)
