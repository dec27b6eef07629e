"""pytest plugin: the power-mode sweep's report, measured beside predicted per mode and case.

- ``mode_rows`` (pure): per record of a sweep, the mode's budget and idle draw, measured and roofline
  time, measured and predicted energy per call (``roofline.energy`` with the sourced defaults, at the roof
  and at the measured time), watts, tokens/s and tokens/J. Energy is reported, not enforced: the defaults
  are unverified (roofline/energy.py) and the ratio says how far off they are on this board.
- ``fit_modes`` (pure): each mode's energy costs fitted to its measurements (static power = its idle draw):
  an energy profile the scheduler takes (``roofline schedule --energy-profile``).
- ``power_svg`` (pure): tokens/s and tokens/J against watts, one colour per case, measured filled and
  predicted hollow, each case's modes joined (inline SVG: ``--self-contained-html`` holds).
- At the session's end: power_modes.json / .csv / .svg and the profile in the report dir (atomically), the
  profile also in the profile store unless simulated, and a section in the HTML report.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import math
from html import escape
from pathlib import Path
from types import SimpleNamespace

from roofline.atomic import write_atomic, write_json_atomic
from roofline.clocks import apply_power_mode, power_budget_w
from roofline.energy import (EnergySample, base_key, costs_from_dict, default_costs, energy_costs, fit_energy,
                             predict_energy)
from tests.validation.report import SESSION_KEY

COLUMNS = ["mode", "budget_w", "idle_w", "case", "outcome", "tokens", "measured_s", "roof_s", "efficiency",
           "measured_j", "predicted_j", "predicted_j_at_measured_time", "energy_ratio", "measured_w", "predicted_w",
           "measured_tokens_per_s", "predicted_tokens_per_s", "measured_tokens_per_j", "predicted_tokens_per_j"]
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#4b5563")


def mode_rows(records: list[dict], idle_w: dict | None = None) -> list[dict]:
    """Rows of the per-mode table from the sweep's records (those carrying a ``power_mode``)."""
    rows = []
    for r in records:
        mode, hw_key = r.get("power_mode"), r.get("hardware") or ""
        if not mode or not r.get("median_s") or not r.get("predicted_datasheet_s"):
            continue
        if r.get("op") == "grouped_gemm":  # an expert's rows are no tokens (a token visits several): no per-token row
            continue
        key = base_key(hw_key)
        budget = power_budget_w(key, mode)
        pred = SimpleNamespace(bytes=r["bytes"], flops=r["flops"], compute_class=r.get("compute_class") or "fp16",
                               time_s=r["predicted_datasheet_s"])
        costs = energy_costs(apply_power_mode(key, mode))
        tokens = r.get("tokens_per_call") or 1
        at_roof = predict_energy(pred, costs, tokens)
        at_measured = predict_energy(pred, costs, tokens, time_s=r["median_s"])
        measured_j = r.get("energy_j") if (r.get("energy_j") or 0) > 0 else None
        rows.append({
            "mode": mode, "budget_w": budget.value if budget else None, "idle_w": (idle_w or {}).get(mode),
            "case": f"{r['op']} {r['shape']} {r['precision']}", "outcome": r.get("outcome"), "tokens": tokens,
            "measured_s": r["median_s"], "roof_s": r["predicted_datasheet_s"],
            "efficiency": r["predicted_datasheet_s"] / r["median_s"], "measured_j": measured_j,
            "predicted_j": at_roof.energy_j, "predicted_j_at_measured_time": at_measured.energy_j,
            "energy_ratio": measured_j / at_measured.energy_j if measured_j else None,
            "measured_w": measured_j / r["median_s"] if measured_j else None, "predicted_w": at_roof.power_w,
            "measured_tokens_per_s": tokens / r["median_s"], "predicted_tokens_per_s": tokens / r["predicted_datasheet_s"],
            "measured_tokens_per_j": tokens / measured_j if measured_j else None,
            "predicted_tokens_per_j": at_roof.tokens_per_j, "energy_basis": costs.basis,
            "hardware": key, "energy_source": r.get("energy_source")})
    return rows


def fit_modes(records: list[dict], idle_w: dict | None = None, source: str = "measured") -> dict:
    """{mode: EnergyCosts} fitted to each mode's measured energy (cases without a reading left out)."""
    by_mode: dict[str, list] = {}
    for r in records:
        if r.get("power_mode") and (r.get("energy_j") or 0) > 0 and r.get("median_s"):
            by_mode.setdefault(r["power_mode"], []).append((r, EnergySample(
                r["energy_j"], r["median_s"], r["bytes"], r["flops"], r.get("compute_class") or "fp16", r["op"])))
    out = {}
    for mode, pairs in by_mode.items():
        key = base_key(pairs[0][0]["hardware"])
        out[mode] = fit_energy([s for _, s in pairs], default_costs(apply_power_mode(key, mode)),
                               (idle_w or {}).get(mode), f"{source}, {key} in {mode}")
    return out


def _axis(values, pad=0.08):
    lo, hi = min(values), max(values)
    span = (hi - lo) or abs(hi) or 1.0
    return max(0.0, lo - pad * span), hi + pad * span


def _panel(rows, x0, ykey, title, cases) -> list[str]:
    w, h, left, top = 300, 230, 52, 30
    pts = [(r[f"{k}_w"], r[f"{k}_{ykey}"]) for r in rows for k in ("measured", "predicted")
           if r.get(f"{k}_w") and r.get(f"{k}_{ykey}")]
    if not pts:
        return [f'<text x="{x0 + left}" y="{top + 20}">{escape(title)}: nothing measured</text>']
    (xl, xh) = _axis([p[0] for p in pts])
    # cases differ by orders of magnitude in tokens per call (a GEMV 1, a prefill GEMM 2048): log y
    yl, yh = (math.floor(math.log10(min(p[1] for p in pts))), math.ceil(math.log10(max(p[1] for p in pts))))
    yh = yh if yh > yl else yl + 1
    fx = lambda v: x0 + left + (v - xl) / (xh - xl) * w  # noqa: E731
    fy = lambda v: top + h - (math.log10(v) - yl) / (yh - yl) * h  # noqa: E731
    out = [f'<text x="{x0 + left}" y="18" font-weight="600">{escape(title)} (log)</text>',
           f'<rect x="{x0 + left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#94a3b8"/>',
           f'<text x="{x0 + left + w / 2}" y="{top + h + 32}" text-anchor="middle">board power (W)</text>']
    for i in range(5):
        xv = xl + (xh - xl) * i / 4
        out.append(f'<text x="{fx(xv):.1f}" y="{top + h + 14}" text-anchor="middle">{xv:.3g}</text>')
    for e in range(yl, yh + 1):
        out.append(f'<line x1="{x0 + left}" y1="{fy(10.0 ** e):.1f}" x2="{x0 + left + w}" y2="{fy(10.0 ** e):.1f}" '
                   f'stroke="#e2e8f0"/><text x="{x0 + left - 4}" y="{fy(10.0 ** e) + 4:.1f}" text-anchor="end">'
                   f'{10.0 ** e:g}</text>')
    for case, colour in cases.items():
        mine = [r for r in rows if r["case"] == case]
        for kind, dash in (("measured", ""), ("predicted", ' stroke-dasharray="4,3"')):
            line = [(r[f"{kind}_w"], r[f"{kind}_{ykey}"], r["mode"]) for r in mine
                    if r.get(f"{kind}_w") and r.get(f"{kind}_{ykey}")]
            if len(line) > 1:
                coords = " ".join(f"{fx(a):.1f},{fy(b):.1f}" for a, b, _ in sorted(line))
                out.append(f'<polyline points="{coords}" fill="none" stroke="{colour}"{dash}/>')
            for a, b, mode in line:
                tip = escape(f"{case} in {mode}, {kind}: {a:.3g} W, {b:.4g} {ykey.replace('_', ' ')}")
                shape = (f'<circle cx="{fx(a):.1f}" cy="{fy(b):.1f}" r="4" fill="{colour}"/>' if kind == "measured" else
                         f'<rect x="{fx(a) - 4:.1f}" y="{fy(b) - 4:.1f}" width="8" height="8" fill="white" '
                         f'stroke="{colour}" transform="rotate(45 {fx(a):.1f} {fy(b):.1f})"/>')
                out.append(f'<g tabindex="0"><title>{tip}</title>{shape}<text x="{fx(a) + 6:.1f}" y="{fy(b) - 5:.1f}" '
                           f'font-size="9" fill="#475569">{escape(mode)}</text></g>')
    return out


def power_svg(rows: list[dict], title: str = "") -> str:
    cases = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(dict.fromkeys(r["case"] for r in rows))}
    width, height = 760, 300 + 16 * len(cases)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'font-family="system-ui, sans-serif" font-size="11" role="group" aria-label="{escape(title)}">']
    out += _panel(rows, 0, "tokens_per_s", "tokens/s vs W", cases)
    out += _panel(rows, 380, "tokens_per_j", "tokens/J vs W", cases)
    y = 300
    for case, colour in cases.items():
        out.append(f'<circle cx="60" cy="{y - 4}" r="4" fill="{colour}"/><text x="70" y="{y}">{escape(case)}</text>')
        y += 16
    out.append(f'<text x="430" y="300" fill="#475569">&#9679; measured  &#9671; predicted (roof, sourced costs)</text>'
               "</svg>")
    return "\n".join(out)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def table_html(rows: list[dict]) -> str:
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(r.get(c)))}</td>" for c in COLUMNS) + "</tr>" for r in rows)
    return f'<table class="power-modes"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _state(config) -> dict | None:
    from tests.validation.power_sweep import sweep_state
    state = sweep_state(config)
    return state if state and state.get("controller") else None


def pytest_sessionfinish(session):
    """After the restore (power_sweep's, tryfirst) and before pytest-html draws its summary (trylast)."""
    config = session.config
    state = _state(config)
    if state is None:
        return
    from conftest import suite_session
    ctl, sim = state["controller"], suite_session(config).simulation
    idle = {s.mode: s.idle_w for s in ctl.switches}
    records = config.stash[SESSION_KEY]["records"]
    rows, fitted = mode_rows(records, idle), fit_modes(records, idle, "SIMULATED rails" if sim else "measured VDD_IN")
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    profile = {"hardware": ctl.key, "timestamp": stamp, "SIMULATED": sim.key if sim else None,
               "modes": {m: c.to_dict() for m, c in fitted.items()}}
    out = Path(config.getoption("--roofline-report-dir"))
    state["report"] = {"session_end": stamp, "SIMULATED": sim.key if sim else None, "hardware": ctl.key,
                       "modes": state["modes"], "switches": [s.to_dict() for s in ctl.switches],
                       "errors": state["errors"], "restored": state["restored"], "final_mode": state.get("final"),
                       "rows": rows, "energy_profile": profile}
    write_json_atomic(out / "power_modes.json", state["report"])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_atomic(out / "power_modes.csv", buf.getvalue())
    state["svg"] = power_svg(rows, f"{ctl.key}: {', '.join(state['modes'])}")
    write_atomic(out / "power_modes.svg", state["svg"])
    if fitted:
        write_json_atomic(out / "energy_profile.json", profile)
        if sim is None:
            _store_profile(config, ctl.key, profile)


def _store_profile(config, key: str, profile: dict) -> None:
    """Merge this run's modes into the device's energy profile in the profile store."""
    import json
    from roofline_kernels.calibrate import store_dir
    path = store_dir(config.getoption("--roofline-cache-dir")) / f"energy-{key}.json"
    merged = {"hardware": key, "modes": {}}
    if path.exists():
        try:
            old = json.loads(path.read_text())
            merged["modes"] = {m: c for m, c in old.get("modes", {}).items() if costs_from_dict(c, str(path))}
        except (ValueError, OSError, AttributeError):
            pass  # an unreadable profile is replaced, not merged
    merged["modes"].update(profile["modes"])
    merged["timestamp"] = profile["timestamp"]
    write_json_atomic(path, merged)
    profile["stored"] = str(path)


def pytest_html_results_summary(prefix, summary, postfix, session):
    state = _state(session.config)
    report = (state or {}).get("report")
    if not report:
        return
    sim = " (SIMULATED: synthesised times, fixture rails)" if report["SIMULATED"] else ""
    restored = escape(str(report["restored"]))
    prefix.append(f"<h3>Power modes{sim}</h3><p>{escape(', '.join(report['modes']))} on {escape(report['hardware'])};"
                  f" {restored}; energy reported, not enforced (the default costs are unverified; a fitted profile "
                  f"is in energy_profile.json)</p>{state['svg']}{table_html(report['rows'])}")
