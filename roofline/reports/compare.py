"""``roofline report RUN... -o compare.html``: archived runs side by side.

A run is a suite export (``reports/<env>/measurements.json``, or the directory holding it). Runs are
compared per case, a case being (op, shape, precision): efficiency against each run's own roof,
speedups against the 16-bit baseline of the same run (``runs.pick_baseline``, as the spot check picks
it: a ratio that does not depend on how loaded that run's machine was), every run's measured points on one roofline, and, for two
runs of one device, what changed, by the test the suite's regression check uses (``roofline.regress``):
the newer run's per-sample scores against the older run's, a change claimed only past the band AND at
Mann-Whitney p < 0.01. The band is ``threshold`` where given; else on a host CPU the band a one-run history
gets (at least 50%, or 3 sigmas of the older run's own samples), on a GPU 10% (its history gate, tox.ini)
or 3 sigmas of the older run's samples. Archived runs without samples fall back to the older rule: a median
moved past the band and beyond both runs' p20-p80 spans. Which versions moved is listed beside.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from . import export
from . import runs as R
from ..regress import SPREAD_MULTIPLE, YOUNG_BAND, Reference, compare, robust_sigma
from .svg import figure_block, html_page, roofline_svg

MARKERS = ("", "square", "triangle")
DEFAULT_THRESHOLD = 0.10  # a GPU board's history gate (tox.ini: median:10%)
CPU_THRESHOLD = YOUNG_BAND  # a host CPU's: what a one-run history gets (roofline.regress)


def threshold_for(run: "Run", threshold: float | None) -> float:
    return threshold if threshold is not None else (CPU_THRESHOLD if run.hardware == "cpu" else DEFAULT_THRESHOLD)
VERSION_KEYS = ("torch", "torchao", "Driver", "driver", "CUDA", "Python")


@dataclass
class Run:
    label: str
    source: str
    hardware: str
    device: str
    when: str
    records: list[dict]
    machine: dict = field(default_factory=dict)
    simulated: str | None = None

    @property
    def device_key(self) -> str:
        return f"{self.hardware} ({self.device})"

    def cases(self) -> dict[tuple, dict]:
        return {case_key(r): r for r in R.measured(self.records)}


def case_key(r: dict) -> tuple:
    """(op, shape, precision[, "hot"][, "@power mode"]): a hot run is no cold run's twin, nor a power mode's record
    (hardware ``orin@15W``) its full-speed one's; keyed on the first three alone they overwrote each other or were
    compared. Boards stay one row (the table compares them); the defaults (cold, no mode) add nothing to the name."""
    mode = str(r.get("mode") or "cold")
    power = str(r.get("hardware") or "").partition("@")[2]
    return (str(r.get("op")), str(r.get("shape")), str(r.get("precision")),
            *(() if mode == "cold" else (mode,)), *((f"@{power}",) if power else ()))


def moved(ratio: float) -> str:
    """A new/old time ratio in words: 0.5 is "2.00x faster" (it was printed "0.50x faster")."""
    return f"{ratio:.2f}x slower" if ratio > 1 else f"{1 / ratio:.2f}x faster"


def load_run(path: str) -> Run:
    """A measurements.json, or a directory holding one (searched one level down too, for reports/<env>/)."""
    p = Path(path)
    if p.is_dir():
        hits = [p / "measurements.json"] if (p / "measurements.json").is_file() else sorted(p.glob("*/measurements.json"))
        if len(hits) != 1:
            raise ValueError(f"{path!r} holds {len(hits)} measurements.json files; give a run's file or its directory "
                             "(reports/<env>/)")
        p = hits[0]
    try:
        doc = json.loads(p.read_text())
        records = list(doc["records"])
    except FileNotFoundError:
        raise ValueError(f"no such run: {path!r}; give reports/<env>/measurements.json or its directory") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{str(p)!r} is not a suite export (measurements.json with 'records'): {e}") from None
    export.check(doc, repr(str(p)))
    first = next(iter(R.measured(records)), records[0] if records else {})
    machine = doc.get("machine") or {}
    hardware, device = first.get("hardware", "?"), first.get("device", "?")
    when = str(doc.get("session_end", ""))
    torch = machine.get("torch") or ""
    label = f"{hardware} {when[:10]}" + (f" torch {torch}" if torch else "")
    return Run(label, str(p), hardware, device, when, records, machine, doc.get("SIMULATED"))


def _unique_labels(runs: list[Run]) -> None:
    seen: dict[str, int] = {}
    for r in runs:
        n = seen.get(r.label, 0)
        seen[r.label] = n + 1
        if n:
            r.label = f"{r.label} #{n + 1}"


def speedups(run: Run) -> dict[tuple, tuple[float, str]]:
    """case key -> (baseline median / median, the baseline's precision), per (op, shape, mode, hardware) where a
    16-bit baseline ran. The baseline is named: a run whose bf16 was skipped falls back to fp16, and its speedups are
    not the other runs'."""
    cases = run.cases()
    out = {}
    for key, rec in cases.items():
        op, shape, prec, *rest = key
        name = R.pick_baseline({k[2]: bool(r.get("emulated")) for k, r in cases.items()
                                if (k[0], k[1], *k[3:]) == (op, shape, *rest)})
        base = cases[(op, shape, name, *rest)] if name else None
        if base is not None:
            out[key] = (base["median_s"] / rec["median_s"], name)
    return out


def changes(old: Run, new: Run, threshold: float = DEFAULT_THRESHOLD) -> list[dict]:
    """Cases of two runs that changed: by the regression check's test where both records carry samples."""
    a, b = old.cases(), new.cases()
    out = []
    for key in sorted(a.keys() & b.keys()):
        ra, rb = a[key], b[key]
        ratio = rb["median_s"] / ra["median_s"]
        how = _changed_by_samples(ra, rb, threshold)
        if how is None:  # an archive without samples: the spans rule
            overlap = (rb.get("p20_s", rb["median_s"]) <= ra.get("p80_s", ra["median_s"])
                       and ra.get("p20_s", ra["median_s"]) <= rb.get("p80_s", rb["median_s"]))
            how = (abs(math.log(ratio)) > math.log1p(threshold) and not overlap,
                   f"median moved {ratio:.2f}x past {threshold:.0%} and beyond both p20-p80 spans")
        changed, why = how
        if changed:
            out.append({"case": " ".join(key), "old_median_s": ra["median_s"], "new_median_s": rb["median_s"],
                        "ratio": ratio, "change": "slower" if ratio > 1 else "faster", "moved": moved(ratio), "why": why,
                        "old_efficiency": ra.get("efficiency"), "new_efficiency": rb.get("efficiency")})
    return out


def _changed_by_samples(ra: dict, rb: dict, threshold: float) -> tuple[bool, str] | None:
    sa, sb = ra.get("scores") or [], rb.get("scores") or []
    if len(sa) < 2 or len(sb) < 2:
        return None
    spread = robust_sigma(sa)
    band = max(threshold, SPREAD_MULTIPLE * spread)
    ref = Reference(statistics.median(sa), tuple(sa), band, spread, "the older run's samples", 1)
    c = compare(list(sb), ref)
    return c.slower or c.faster, c.reason


def version_changes(old: Run, new: Run) -> dict[str, tuple]:
    return {k: (old.machine.get(k), new.machine.get(k)) for k in VERSION_KEYS
            if old.machine.get(k) != new.machine.get(k) and (old.machine.get(k) or new.machine.get(k))}


def device_pairs(runs: list[Run]) -> list[tuple[Run, Run]]:
    """Consecutive runs (in time) of each device."""
    pairs = []
    for key in dict.fromkeys(r.device_key for r in runs):
        mine = sorted((r for r in runs if r.device_key == key), key=lambda r: r.when)
        pairs += list(zip(mine, mine[1:]))
    return pairs


def comparison(runs: list[Run], threshold: float | None = None) -> dict:
    """Everything the page shows, as data (``--json``)."""
    _unique_labels(runs)
    keys = sorted(set().union(*(r.cases().keys() for r in runs)))
    table = [{"case": " ".join(k), **{r.label: (r.cases().get(k) or {}).get("efficiency") for r in runs},
              "marks": {r.label: _marks(r.cases().get(k)) for r in runs if _marks(r.cases().get(k))}} for k in keys]
    ups = {r.label: speedups(r) for r in runs}
    speed = [{"case": " ".join(k), **{r.label: (ups[r.label].get(k) or (None,))[0] for r in runs},
              "baselines": {r.label: ups[r.label][k][1] for r in runs if k in ups[r.label]}} for k in keys
             if any(k in ups[r.label] for r in runs)]
    pairs = [{"device": o.device_key, "old": o.label, "new": n.label, "versions": version_changes(o, n),
              "threshold": threshold_for(o, threshold), "changes": changes(o, n, threshold_for(o, threshold))}
             for o, n in device_pairs(runs)]
    return {"runs": [{"label": r.label, "source": r.source, "hardware": r.hardware, "device": r.device,
                      "when": r.when, "cases": len(r.cases()), "not_measured": _not_measured(r),
                      "SIMULATED": r.simulated,
                      **{k: r.machine.get(k) for k in VERSION_KEYS if r.machine.get(k)}} for r in runs],
            "efficiency": table, "speedups": speed, "pairs": pairs, "threshold": threshold}


def _marks(rec: dict | None) -> str:
    """What a number in a table must not be read without: the case failed, or it ran past its roof."""
    if not rec:
        return ""
    return " ".join(m for m in ("FAILED" if rec.get("outcome") == "failed" else "",
                                "BEYOND ROOF" if R.beyond_roof(rec) else "") if m)


def _not_measured(run: Run) -> dict[str, int]:
    """Records without a measurement (skipped, over the budget, refused), by outcome: counted, not dropped unsaid."""
    out: dict[str, int] = {}
    for r in run.records:
        if r not in R.measured([r]):
            key = str(r.get("outcome") or "not measured")
            out[key] = out.get(key, 0) + 1
    return out


def _cell(v, fmt, mark: str = ""):
    return "-" if v is None else fmt(v) + (f" <b>{escape(mark)}</b>" if mark else "")


def compare_html(runs: list[Run], threshold: float | None = None, history: str = "") -> str:
    data = comparison(runs, threshold)
    labels = [r.label for r in runs]
    sections = []
    run_rows = "".join(f"<tr><td>{escape(r['label'])}</td><td>{escape(r['device'])}</td><td>{escape(r['when'])}</td>"
                       f"<td>{escape(str(r.get('torch', '-')))}</td><td>{escape(str(r.get('torchao', '-')))}</td>"
                       f"<td>{r['cases']}" + "".join(f" (+{n} {escape(k)})" for k, n in r["not_measured"].items())
                       + f"</td><td>{'SIMULATED ' + escape(str(r['SIMULATED'])) if r['SIMULATED'] else ''}"
                       f"</td><td>{escape(r['source'])}</td></tr>" for r in data["runs"])
    sections.append(("Runs", '<div class="rlfig"><table><thead><tr><th>run</th><th>device</th><th>when</th>'
                     "<th>torch</th><th>torchao</th><th>cases</th><th></th><th>source</th></tr></thead>"
                     f"<tbody>{run_rows}</tbody></table></div>"))
    roofs, points, rows = [], [], []
    for i, r in enumerate(runs):
        roofs += R.roofs_of(r.records, f"{r.label}: ")
        points += R.points_of(r.records, r.label, MARKERS[i % len(MARKERS)], predicted=False)
        rows += R.rows_of(r.records, r.label)
    svg = roofline_svg(roofs, points, "measured cases of every run (markers: run; colours: precision)")
    sections.append(("Rooflines overlaid", figure_block("overlay", svg, R.ROW_HEADERS, rows, {"grp": labels})))
    pct = lambda v: f"{v:.1%}"  # noqa: E731
    eff = "".join(f"<tr><td>{escape(row['case'])}</td>" + "".join(
        f"<td>{_cell(row[lb], pct, row['marks'].get(lb, ''))}</td>" for lb in labels) + "</tr>"
                  for row in data["efficiency"])
    head = "".join(f"<th>{escape(lb)}</th>" for lb in labels)
    sections.append(("Efficiency per case (against each run's own roof)",
                     f'<div class="rlfig"><table><thead><tr><th>case</th>{head}</tr></thead><tbody>{eff}</tbody>'
                     "</table></div>"))
    sp = "".join(f"<tr><td>{escape(row['case'])}</td>" + "".join(
        f"<td>{_cell(row[lb], lambda v: f'{v:.2f}x vs ' + escape(row['baselines'].get(lb, '')))}</td>"
        for lb in labels) + "</tr>" for row in data["speedups"])
    sections.append(("Speedup against the 16-bit baseline of the same run (fp16, else bf16; native first)",
                     f'<div class="rlfig"><table><thead><tr><th>case</th>{head}</tr></thead><tbody>{sp}</tbody>'
                     "</table></div>"))
    changed = []
    for p in data["pairs"]:
        vers = "; ".join(f"{k} {a} -> {b}" for k, (a, b) in p["versions"].items()) or "no version changed"
        items = "".join(f"<tr class=\"{c['change']}\"><td>{escape(c['case'])}</td><td>{R.fmt_s(c['old_median_s'])}</td>"
                        f"<td>{R.fmt_s(c['new_median_s'])}</td><td>{c['moved']}</td></tr>"
                        for c in p["changes"])
        changed.append(f"<h3>{escape(p['device'])}: {escape(p['old'])} -> {escape(p['new'])}</h3><p>{escape(vers)}; "
                       f"{len(p['changes'])} case(s) moved by more than {p['threshold']:.0%} beyond their p20-p80 spans"
                       "</p>" + (f'<div class="rlfig"><table><thead><tr><th>case</th><th>before</th><th>after</th>'
                                 f"<th>ratio</th></tr></thead><tbody>{items}</tbody></table></div>" if items else ""))
    sections.append(("What changed between runs of one device",
                     "".join(changed) or "<p>No two runs of the same device were given.</p>"))
    if history:
        sections.append(("Timing history", history))
    return html_page(f"roofline comparison of {len(runs)} runs", sections)
