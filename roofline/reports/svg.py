"""A roofline as inline SVG: no matplotlib, no script, no network, so a report opens from an archive offline.

Axes are log-log (arithmetic intensity in FLOP/byte against TFLOP/s). Each roof is drawn from the one
roofline formula (``predict.roofline_time``, through ``plot.attainable_tflops``): datasheet roofs
solid, calibrated roofs dashed, a memory-only roof (a path with no native math) as its slope alone.
Points take their precision's colour (``plot.colour_for``): measured ones filled circles, predicted
ones hollow diamonds, a failing case ringed in red with a cross. Every point is a focusable group
(``tabindex=0``, an ``aria-label``) with a ``<title>`` (the browser's tooltip) and ``data-*``
attributes holding its numbers, and carries the class ``prec-<precision>`` so a page can toggle a
precision; in print every point shows, and the tooltip text is also in the page's table.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from html import escape

from .plot import Roof, attainable_tflops, colour_for
from ..predict import critical_ai

WIDTH, HEIGHT = 680, 420
LEFT, RIGHT, TOP, BOTTOM = 64, 170, 28, 48  # the right margin holds the legend
FAIL_COLOUR = "#dc2626"


@dataclass(frozen=True)
class SvgPoint:
    precision: str
    ai: float
    tflops: float
    measured: bool
    details: dict = field(default_factory=dict)  # label -> text, shown on hover/focus and as data-* attributes
    failed: bool = False
    group: str = ""  # e.g. the run a point belongs to in a comparison: class ``grp-<group>`` and its marker
    marker: str = ""  # "square", "triangle": a second or third run overlaid; default circle / diamond

    @property
    def colour(self) -> str:
        return colour_for(self.precision)


def slug(text: str) -> str:
    """A CSS-class-safe name for a precision label (``int4_tinygemm/bf16`` -> ``int4_tinygemm-bf16``)."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-") or "x"


def _decades(lo: float, hi: float) -> list[float]:
    return [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}" if 1e-3 <= v < 1e4 else f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")


class _Axes:
    def __init__(self, x_lo, x_hi, y_lo, y_hi):
        self.lx = (math.log10(x_lo), math.log10(x_hi))
        self.ly = (math.log10(y_lo), math.log10(y_hi))
        self.x_lo, self.x_hi, self.y_lo, self.y_hi = x_lo, x_hi, y_lo, y_hi
        self.w, self.h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(self, v: float) -> float:
        return LEFT + (math.log10(v) - self.lx[0]) / (self.lx[1] - self.lx[0]) * self.w

    def y(self, v: float) -> float:
        return TOP + self.h - (math.log10(v) - self.ly[0]) / (self.ly[1] - self.ly[0]) * self.h


def _limits(roofs, points):
    ais = [p.ai for p in points if p.ai > 0] + [critical_ai(r.peak_tflops, r.bandwidth_gbs) for r in roofs
                                                if r.peak_tflops]
    ais = ais or [1.0]
    x_lo, x_hi = 10 ** math.floor(math.log10(min(ais) / 3)), 10 ** math.ceil(math.log10(max(ais) * 3))
    ys = [p.tflops for p in points if p.tflops > 0] + [r.peak_tflops for r in roofs if r.peak_tflops]
    ys += [float(attainable_tflops(x_lo, math.inf, r.bandwidth_gbs)) for r in roofs]
    ys = [y for y in ys if y > 0] or [1.0]
    y_lo, y_hi = 10 ** math.floor(math.log10(min(ys) / 2)), 10 ** math.ceil(math.log10(max(ys) * 2))
    return x_lo, x_hi, y_lo, y_hi


def _roof_path(ax: _Axes, r: Roof) -> str:
    pts = [ax.x_lo]
    if r.peak_tflops:
        ridge = critical_ai(r.peak_tflops, r.bandwidth_gbs)
        if ax.x_lo < ridge < ax.x_hi:
            pts.append(ridge)
        pts.append(ax.x_hi)
    else:  # the slope alone: it ends where it leaves the plot (clipping its y there would bend it)
        pts.append(min(ax.x_hi, critical_ai(ax.y_hi, r.bandwidth_gbs)))
    coords = []
    for a in pts:
        y = float(attainable_tflops(a, r.peak_tflops or math.inf, r.bandwidth_gbs))
        coords.append((ax.x(a), ax.y(min(max(y, ax.y_lo), ax.y_hi))))
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)


def _point(ax: _Axes, p: SvgPoint) -> str:
    x, y = ax.x(p.ai), ax.y(p.tflops)
    kind = "measured" if p.measured else "predicted"
    lines = [f"{p.precision} ({kind})"] + [f"{k}: {v}" for k, v in p.details.items()]
    data = "".join(f' data-{slug(k)}="{escape(str(v))}"' for k, v in p.details.items())
    cls = (f"pt {kind} prec-{slug(p.precision)}" + (f" grp-{slug(p.group)}" if p.group else "")
           + (" failed" if p.failed else ""))
    if p.measured and p.marker == "square":
        mark = (f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{p.colour}" stroke="#111827" '
                f'stroke-width="0.8"/>')
    elif p.measured and p.marker == "triangle":
        mark = (f'<path d="M{x:.1f},{y - 6:.1f} L{x + 6:.1f},{y + 5:.1f} L{x - 6:.1f},{y + 5:.1f} Z" fill="{p.colour}" '
                f'stroke="#111827" stroke-width="0.8"/>')
    elif p.measured:
        mark = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5.5" fill="{p.colour}" stroke="#111827" stroke-width="0.8"/>'
    else:
        mark = (f'<path d="M{x:.1f},{y - 6:.1f} L{x + 6:.1f},{y:.1f} L{x:.1f},{y + 6:.1f} L{x - 6:.1f},{y:.1f} Z" '
                f'fill="white" stroke="{p.colour}" stroke-width="2"/>')
    if p.failed:
        mark += (f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="{FAIL_COLOUR}" stroke-width="2"/>'
                 f'<path d="M{x - 4:.1f},{y - 13:.1f} l8,-8 M{x + 4:.1f},{y - 13:.1f} l-8,-8" '
                 f'stroke="{FAIL_COLOUR}" stroke-width="2"/>')
    return (f'<g class="{cls}" tabindex="0" role="img" aria-label="{escape("; ".join(lines))}" '
            f'data-precision="{escape(p.precision)}" data-kind="{kind}" data-group="{escape(p.group)}" '
            f'data-ai="{p.ai:.6g}" '
            f'data-tflops="{p.tflops:.6g}"{data}><title>{escape(chr(10).join(lines))}</title>{mark}</g>')


def roofline_svg(roofs: list[Roof], points: list[SvgPoint], title: str = "") -> str:
    """The roofline as one ``<svg>`` element (a string), ready to inline in HTML or save as a .svg file."""
    ax = _Axes(*_limits(roofs, points))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
           f'height="{HEIGHT}" class="roofline" role="group" aria-label="{escape(title or "roofline")}" '
           f'font-family="system-ui, sans-serif" font-size="11">']
    if title:
        out.append(f'<text x="{LEFT}" y="16" font-size="13" font-weight="600">{escape(title)}</text>')
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{ax.w}" height="{ax.h}" fill="none" stroke="#94a3b8"/>')
    for v in _decades(ax.x_lo, ax.x_hi):
        if ax.x_lo <= v <= ax.x_hi:
            x = ax.x(v)
            out.append(f'<line class="grid" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{TOP + ax.h}" stroke="#e2e8f0"/>'
                       f'<text x="{x:.1f}" y="{TOP + ax.h + 15}" text-anchor="middle">{_fmt(v)}</text>')
    for v in _decades(ax.y_lo, ax.y_hi):
        if ax.y_lo <= v <= ax.y_hi:
            y = ax.y(v)
            out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + ax.w}" y2="{y:.1f}" stroke="#e2e8f0"/>'
                       f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    out.append(f'<text x="{LEFT + ax.w / 2:.0f}" y="{HEIGHT - 10}" text-anchor="middle">arithmetic intensity '
               f'(FLOP/byte)</text><text transform="translate(16,{TOP + ax.h / 2:.0f}) rotate(-90)" '
               f'text-anchor="middle">TFLOP/s</text>')
    legend_y = TOP + 6
    for r in roofs:
        dash = ' stroke-dasharray="6,4"' if r.calibrated else ""
        peak = f"{r.peak_tflops:.4g} TFLOP/s, " if r.peak_tflops else "memory only, "
        label = f"{r.label}: {peak}{r.bandwidth_gbs:.4g} GB/s"
        out.append(f'<g class="roof{" calibrated" if r.calibrated else ""}"><title>{escape(label)}</title>'
                   f'<polyline points="{_roof_path(ax, r)}" fill="none" stroke="{r.colour}" stroke-width="2"{dash}/></g>')
        out.append(f'<line x1="{WIDTH - RIGHT + 10}" y1="{legend_y}" x2="{WIDTH - RIGHT + 30}" y2="{legend_y}" '
                   f'stroke="{r.colour}" stroke-width="2"{dash}/><text x="{WIDTH - RIGHT + 34}" y="{legend_y + 4}">'
                   f'{escape(r.label)}</text>')
        legend_y += 16
    legend_y += 6
    for prec in dict.fromkeys(p.precision for p in points):
        out.append(f'<g class="legend prec-{slug(prec)}"><circle cx="{WIDTH - RIGHT + 20}" cy="{legend_y}" r="5" '
                   f'fill="{colour_for(prec)}"/><text x="{WIDTH - RIGHT + 34}" y="{legend_y + 4}">{escape(prec)}'
                   f'</text></g>')
        legend_y += 16
    out.append(f'<text x="{WIDTH - RIGHT + 10}" y="{legend_y + 8}" fill="#475569">&#9679; measured  '
               f'&#9671; predicted</text>')
    out.extend(_point(ax, p) for p in points if p.ai > 0 and p.tflops > 0)
    out.append("</svg>")
    return "\n".join(out)


_PAGE_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#0f172a}h1{font-size:18px}
h2{font-size:15px;margin-top:1.6em}"""

_FIGURE_CSS = """.rlfig table{border-collapse:collapse;font-size:12px;margin:.6em 0}
.rlfig th,.rlfig td{border:1px solid #cbd5e1;padding:3px 6px;text-align:right}.rlfig th{background:#f1f5f9}
.rlfig td:first-child,.rlfig th:first-child{text-align:left}.rlfig label{margin-right:.9em;font-size:13px}
.rlfig .rltog:focus-visible+label{outline:2px solid #2563eb}.rlfig svg .pt:focus{outline:none}
.rlfig svg .pt:focus>*{stroke-width:3}.rlfig .failed td{background:#fee2e2}
@media print{.rlfig .rltog,.rlfig .rltog+label{display:none}.rlfig svg .pt{display:inline!important}
.rlfig tr{display:table-row!important}}"""


def figure_block(uid: str, svg: str, headers: list[str], rows: list[tuple], toggles: dict[str, list[str]] = None) -> str:
    """A roofline with its table and a checkbox per precision (and per group, e.g. per run), as one ``<div>``.

    The checkboxes work without script: each is a sibling before the plot and the table (directly in the
    figure's ``<div>``: a wrapper would break the ``~`` rules), and a rule per value hides
    ``.prec-<value>`` (or ``.grp-<value>``) while it is unchecked. ``rows``: (precision, cells)
    or (precision, cells, extra classes). In print every point and row shows.
    """
    uid = slug(uid)
    precisions = list(dict.fromkeys(r[0] for r in rows))
    groups = {"prec": precisions, **{k: v for k, v in (toggles or {}).items() if k != "prec"}}
    boxes, rules = [], []
    for kind, values in groups.items():
        for v in values:
            box = f"{uid}-{kind}-{slug(v)}"
            boxes.append(f'<input type="checkbox" class="rltog" id="{box}" checked>'
                         f'<label for="{box}">{escape(v)}</label>')
            rules.append(f"#{box}:not(:checked)~.rlplot .{kind}-{slug(v)},#{box}:not(:checked)~table .{kind}-{slug(v)}")
    css = (",".join(rules) + "{display:none}") if rules else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(f'<tr class="prec-{slug(r[0])} {r[2] if len(r) > 2 else ""}">'
                   + "".join(f"<td>{escape(str(c))}</td>" for c in r[1]) + "</tr>" for r in rows)
    return (f'<div class="rlfig" id="{uid}"><style>{_FIGURE_CSS}{css}</style>'
            f'{"".join(boxes)}\n<div class="rlplot">{svg}</div>\n'
            f'<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')


def html_page(title: str, sections: list[tuple[str, str]], notes: list[str] = ()) -> str:
    """A self-contained page of (heading, html) sections: nothing is fetched, no script runs."""
    parts = "".join((f"<h2>{escape(h)}</h2>" if h else "") + body for h, body in sections)
    note_html = "".join(f"<p>{escape(n)}</p>" for n in notes)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<style>{_PAGE_CSS}</style></head><body><h1>{escape(title)}</h1>{parts}{note_html}</body></html>\n')
