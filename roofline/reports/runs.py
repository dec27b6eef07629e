"""A run's measurement records as a picture: roofs, points and rows, for the pytest report and ``roofline report``.

A record is one measured case as the suite exports it (``reports/<env>/measurements.json``): hardware,
op, shape, precision, path, median/p20/p80, FLOPs, bytes, AI, the roof it was held against
(``predicted_time_s``, ``bound``), efficiency, the datasheet and calibrated roofs' numbers, the
outcome. Pure data in, SVG parts out: no pytest, no torch.
"""
from __future__ import annotations

from ..judge import RESOLUTION
from .plot import CLASS_COLOURS
from .plot import Roof
from .svg import SvgPoint, slug

MEMORY_ONLY = "memory roof only"  # the bound of a case held to bytes / bandwidth alone
BASELINES = ("fp16", "bf16")  # the 16-bit precisions a speedup is quoted against, in order of preference


def pick_baseline(ran: dict[str, bool]) -> str | None:
    """Of the precisions that ran (precision -> emulated), the 16-bit one speedups are quoted against: a native
    one first (fp16 on GPUs, bf16 on most CPUs), an emulated one only when nothing native ran."""
    for emulated_allowed in (False, True):
        for name in BASELINES:
            if name in ran and (emulated_allowed or not ran[name]):
                return name
    return None


def fmt_s(seconds) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def measured(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("median_s") and r.get("ai") and r.get("flops")]


def roofs_of(records: list[dict], label_prefix: str = "") -> list[Roof]:
    """Each distinct roof the records were held against: datasheet (solid) and calibrated (dashed) per
    compute class; a case held to bytes alone adds its memory roof alone."""
    roofs, seen = [], set()

    def add(label, bw, peak, cls, calibrated):
        if not bw:  # a record without this roof's bandwidth draws no roof (and is no error)
            return
        key = (round(bw, 6), round(peak, 6) if peak else None, calibrated)
        if key not in seen:
            seen.add(key)
            roofs.append(Roof(label_prefix + label, peak, bw, CLASS_COLOURS.get(cls, "#334155"), calibrated))

    for r in measured(records):
        cls = r.get("compute_class") or ""
        hw = r.get("hardware", "")
        if r.get("datasheet_peak_tflops") and r.get("datasheet_bandwidth_gbs"):
            add(f"{hw} {cls} datasheet", r["datasheet_bandwidth_gbs"], r["datasheet_peak_tflops"], cls, False)
        if r.get("bound") == MEMORY_ONLY:  # on the roof it was held to: calibrated where there is one
            cal = bool(r.get("calibrated_bandwidth_gbs"))
            add(f"{hw} memory alone ({'calibrated' if cal else 'datasheet'})",
                r.get("calibrated_bandwidth_gbs") or r.get("datasheet_bandwidth_gbs"), None, "", cal)
        elif r.get("calibrated_peak_tflops") and r.get("calibrated_bandwidth_gbs"):
            add(f"{hw} {cls} calibrated", r["calibrated_bandwidth_gbs"], r["calibrated_peak_tflops"], cls, True)
    return roofs


def beyond_roof(r: dict) -> bool:
    """A measurement past the roof it was held to: a bug or a slow calibration to explain, not a result."""
    return (r.get("efficiency") or 0) > 1 + RESOLUTION


def case_name(r: dict) -> str:
    return f"{r.get('op')} {r.get('shape')} {r.get('precision')}"


def details(r: dict) -> dict:
    d = {"case": r.get("id", "").split("::")[-1] or case_name(r), "shape": str(r.get("shape")),
         "hardware": r.get("hardware", ""), "measured": f"{fmt_s(r['median_s'])} (p20 {fmt_s(r.get('p20_s'))}, "
                                                           f"p80 {fmt_s(r.get('p80_s'))}, n={r.get('count')})",
         "expected": fmt_s(r["expected_time_s"]) if r.get("expected_time_s") else (
             "not measured near" if str(r.get("expected_note") or "").startswith("not measured near") else "no model"),
         "bound": f"{fmt_s(r.get('predicted_time_s'))} ({r.get('bound')})",
         "efficiency": f"{r['efficiency']:.1%}" if r.get("efficiency") is not None else "-",
         "outcome": r.get("outcome", "")}
    if r.get("efficiency_datasheet") is not None:
        d["vs datasheet"] = f"{r['efficiency_datasheet']:.1%}"
    if r.get("path"):
        d["path"] = r["path"]
    if r.get("speedup_vs_baseline") is not None:
        d[f"vs {r['baseline']}"] = f"{r['speedup_vs_baseline']:.2f}x"
    return d


def points_of(records: list[dict], group: str = "", marker: str = "", predicted: bool = True) -> list[SvgPoint]:
    """One measured point per record (and its predicted point on the roof it was held against)."""
    pts = []
    for r in measured(records):
        d = details(r)
        failed = r.get("outcome") == "failed"
        if predicted and r.get("predicted_time_s"):
            pts.append(SvgPoint(r["precision"], r["ai"], r["flops"] / r["predicted_time_s"] / 1e12, False, d, False,
                                group, marker))
        pts.append(SvgPoint(r["precision"], r["ai"], r["flops"] / r["median_s"] / 1e12, True, d, failed, group,
                            marker))
    return pts


ROW_HEADERS = ["precision", "case", "hardware", "measured", "p20-p80", "bound", "expected", "efficiency", "outcome"]


def rows_of(records: list[dict], group: str = "") -> list[tuple]:
    rows = []
    for r in measured(records):
        cls = ("failed " if r.get("outcome") == "failed" else "") + (f"grp-{slug(group)}" if group else "")
        rows.append((r["precision"], [r["precision"], r.get("id", "").split("::")[-1] or case_name(r),
                                      r.get("hardware", ""), fmt_s(r["median_s"]),
                                      f"{fmt_s(r.get('p20_s'))}-{fmt_s(r.get('p80_s'))}",
                                      f"{fmt_s(r.get('predicted_time_s'))} {r.get('bound', '')}",
                                      fmt_s(r.get("expected_time_s")),
                                      (f"{r['efficiency']:.1%}" + (" BEYOND ROOF" if beyond_roof(r) else ""))
                                      if r.get("efficiency") is not None else "-",
                                      r.get("outcome", "")], cls))
    return rows
