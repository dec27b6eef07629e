"""``roofline report``: archived runs side by side (``roofline.reports.compare`` draws the comparison)."""
from __future__ import annotations

import json
from pathlib import Path

from ..reports.compare import comparison, compare_html, load_run
from .options import positive_float


def add_commands(sub) -> None:
    """``roofline report``: registered by ``roofline.cli`` with the theory's commands (no torch needed)."""
    p = sub.add_parser("report", help="archived runs side by side (measurements.json files or their directories)")
    p.add_argument("runs", nargs="+", metavar="RUN", help="reports/<env>/measurements.json or reports/<env>/")
    p.add_argument("-o", "--output", default="compare.html", help="the page to write (default compare.html)")
    p.add_argument("--threshold", type=positive_float, default=None,
                   help="a median must move by more than this fraction (and beyond p20-p80) to be a change "
                        "(default: the history gate of tox.ini, 0.1 on a GPU, 0.5 on a host CPU)")
    p.add_argument("--history", action="append", default=[], metavar="DIR",
                   help="pytest-benchmark storage to draw as trends (e.g. reports/benchmarks/cpu); repeatable")
    p.add_argument("--gate", type=positive_float, default=None, metavar="PCT",
                   help="the regression gate to draw on the trends, in %% (tox: 50 on a CPU, 10 on GPU boards)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON as well")
    p.set_defaults(func=cmd_report)


def cmd_report(args, out):
    from ..atomic import write_atomic
    from ..reports.history import history_html, load_series
    for d in args.history:
        if not Path(d).is_dir():
            raise ValueError(f"--history {d!r}: no such directory; give pytest-benchmark's storage, e.g. "
                             "reports/benchmarks/cpu")
    runs = [load_run(path) for path in args.runs]
    history = "".join(history_html(load_series(d), args.gate, d) for d in args.history)
    write_atomic(args.output, compare_html(runs, args.threshold, history))
    if args.json:
        return json.dump(comparison(runs, args.threshold), out, indent=2, default=str)
    data = comparison(runs, args.threshold)
    out.write(f"wrote {args.output}: {len(runs)} runs, {len(data['efficiency'])} cases\n")
    for p in data["pairs"]:
        out.write(f"  {p['device']}: {p['old']} -> {p['new']}: {len(p['changes'])} case(s) changed"
                  + "".join(f"\n    {c['case']}: {c['moved']}" for c in p["changes"]) + "\n")
