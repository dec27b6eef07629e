"""Timing history as a trend: pytest-benchmark's saved runs, the median per case over time, the gate drawn.

pytest-benchmark saves one JSON file per run (``--benchmark-autosave``) under its storage
(``reports/benchmarks/<env>/<device>/<machine>/NNNN_<commit>_<date>.json``; ``<device>``: the measurement
layer's ``device.history_dir``), each with ``machine_info`` (the
suite adds hardware, device, torch and torchao to it), ``datetime``, ``commit_info`` and per benchmark
``stats.median``. Here those files become one series per (device, case), in time order, drawn as
small SVG charts: the medians as a line, and the regression gate of ``--benchmark-compare-fail=
median:N%`` as a dashed step: each run may be at most N% slower than the run before it (what
pytest-benchmark compares against: the last saved run). A run above its step is drawn red.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from .runs import fmt_s

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 300, 130, 46, 8, 20, 18
OVER_GATE = "#dc2626"


@dataclass
class Run:
    when: str
    median_s: float
    commit: str = ""
    torch: str = ""
    source: str = ""


@dataclass
class Series:
    device: str
    case: str
    runs: list[Run] = field(default_factory=list)

    def over_gate(self, gate_pct: float | None) -> list[int]:
        """Indices of runs slower than the run before them by more than the gate."""
        if gate_pct is None:
            return []
        return [i for i in range(1, len(self.runs))
                if self.runs[i].median_s > self.runs[i - 1].median_s * (1 + gate_pct / 100)]


def parse_gate(option) -> float | None:
    """``median:10%`` (or a list of such, pytest-benchmark's --benchmark-compare-fail) -> 10.0; else None."""
    for text in ([option] if isinstance(option, str) else list(option or [])):
        m = re.fullmatch(r"\s*median:(\d+(?:\.\d+)?)%\s*", str(text))
        if m:
            return float(m.group(1))
    return None


def load_series(root, hardware: str | None = None) -> list[Series]:
    """Every saved run under ``root`` (a directory tree of pytest-benchmark JSON files), as one series per
    (device, case); only ``hardware``'s runs when given. Unreadable files are skipped, not fatal."""
    found: dict[tuple[str, str], Series] = {}
    for path in sorted(Path(root).rglob("*.json")):
        try:
            doc = json.loads(path.read_text())
            machine, benches, when = dict(doc["machine_info"] or {}), list(doc["benchmarks"]), str(doc["datetime"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not a pytest-benchmark run file (or a damaged one): skipped
        hw = machine.get("hardware")
        if hardware is not None and hw != hardware:
            continue
        device = f"{hw or machine.get('node', '?')} ({machine.get('device') or machine.get('cpu', {}).get('brand_raw', '?')})"
        # the storage's device folder (``device.history_dir``: key, power mode, a CPU's model and threads) parts what
        # the machine_info alone merged: two hosts both "cpu (AMD EPYC)" made one trend, and one's runs crossed the gate
        # against the other's
        rel = path.parent.parent.relative_to(root) if path.parent.parent != Path(root) else None
        if rel is not None and str(rel) not in (".", ""):
            device += f" [{rel}]"
        for b in benches:
            try:
                median = float(b["stats"]["median"])
            except (KeyError, TypeError, ValueError):
                continue
            s = found.setdefault((device, b.get("name", "?")), Series(device, b.get("name", "?")))
            s.runs.append(Run(when, median, (doc.get("commit_info") or {}).get("id", "")[:10],
                              machine.get("torch") or "", path.name))
    for s in found.values():
        s.runs.sort(key=lambda r: r.when)
    return sorted(found.values(), key=lambda s: (s.device, s.case))


def trend_svg(s: Series, gate_pct: float | None) -> str:
    """One case's medians over its runs, with the gate's dashed steps; every run a focusable point."""
    n = len(s.runs)
    top = max([r.median_s for r in s.runs] + [r.median_s * (1 + (gate_pct or 0) / 100) for r in s.runs[:-1]]) * 1.1
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def x(i):
        return PAD_L + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v):
        return PAD_T + ph - ph * v / top

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" class="trend" '
           f'role="group" aria-label="{escape(s.case)} over {n} runs" font-family="system-ui, sans-serif" '
           f'font-size="10"><text x="4" y="12" font-weight="600">{escape(s.case[:52])}</text>'
           f'<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" fill="none" stroke="#cbd5e1"/>'
           f'<text x="{PAD_L - 4}" y="{PAD_T + 8}" text-anchor="end">{fmt_s(top)}</text>'
           f'<text x="{PAD_L - 4}" y="{PAD_T + ph}" text-anchor="end">0</text>']
    if gate_pct is not None:
        for i in range(1, n):
            g = y(s.runs[i - 1].median_s * (1 + gate_pct / 100))
            out.append(f'<line class="gate" x1="{x(i - 1):.1f}" y1="{g:.1f}" x2="{x(i):.1f}" y2="{g:.1f}" '
                       f'stroke="{OVER_GATE}" stroke-width="1" stroke-dasharray="4,3"/>')
    if n > 1:
        out.append('<polyline fill="none" stroke="#334155" stroke-width="1.5" points="'
                   + " ".join(f"{x(i):.1f},{y(r.median_s):.1f}" for i, r in enumerate(s.runs)) + '"/>')
    bad = set(s.over_gate(gate_pct))
    for i, r in enumerate(s.runs):
        label = (f"{r.when[:19]}: median {fmt_s(r.median_s)}" + (f", commit {r.commit}" if r.commit else "")
                 + (f", torch {r.torch}" if r.torch else "") + (" - OVER THE GATE" if i in bad else ""))
        out.append(f'<g class="run{" over" if i in bad else ""}" tabindex="0" aria-label="{escape(label)}" '
                   f'data-median-s="{r.median_s:.6g}" data-when="{escape(r.when)}"><title>{escape(label)}</title>'
                   f'<circle cx="{x(i):.1f}" cy="{y(r.median_s):.1f}" r="3.5" '
                   f'fill="{OVER_GATE if i in bad else "#334155"}"/></g>')
    out.append(f'<text x="{PAD_L}" y="{H - 4}">{escape(s.runs[0].when[:10])}</text><text x="{W - PAD_R}" '
               f'y="{H - 4}" text-anchor="end">{escape(s.runs[-1].when[:10])}</text></svg>')
    return "".join(out)


def history_html(series: list[Series], gate_pct: float | None, source: str = "") -> str:
    """Small multiples per device: one trend per case, the gate named once."""
    if not series:
        return f"<p>No timing history{f' in {escape(source)}' if source else ''} yet.</p>"
    gate = (f"gate: a run may be at most {gate_pct:g}% slower (median) than the run before it (dashed)"
            if gate_pct is not None else "no regression gate was set for this run (--benchmark-compare-fail)")
    parts = [f"<h3>Timing history</h3><p>{escape(gate)}; {len(series)} series"
             + (f" from {escape(source)}" if source else "") + ".</p>"]
    for device in dict.fromkeys(s.device for s in series):
        mine = [s for s in series if s.device == device]
        over = sum(bool(s.over_gate(gate_pct)) for s in mine)
        parts.append(f"<h4>{escape(device)}: {len(mine)} cases, {max(len(s.runs) for s in mine)} runs"
                     + (f", {over} over the gate at least once" if over else "") + "</h4>"
                     '<div style="display:flex;flex-wrap:wrap;gap:6px">'
                     + "".join(trend_svg(s, gate_pct) for s in mine) + "</div>")
    return "".join(parts)
