"""The tolerance table (tolerances.toml), looked up by hardware family, bound and precision."""
from __future__ import annotations

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: JetPack 6's Python, for which NVIDIA builds its Jetson torch wheel
    import tomli as tomllib
from dataclasses import dataclass
from pathlib import Path

TABLE = tomllib.loads((Path(__file__).with_name("tolerances.toml")).read_text())


@dataclass(frozen=True)
class Tolerance:
    family: str
    ratio_enforced: bool
    ratio_band: float
    ratio_band_upper: float
    floor: float | None
    floor_source: str
    reported: str = ""  # why this precision's efficiency is reported, not held to a floor (tolerances.toml [*.reported])


def _section(family: str) -> dict:
    """A family's section over the defaults; floors become {kind: {precision: (value, source)}}."""
    base = dict(TABLE["default"])
    own = TABLE.get(family, {})
    merged = {**base, **{k: v for k, v in own.items() if k != "floor"}}
    floors: dict[str, dict] = {}
    if family != "cpu":  # the CPU's floors stand alone: GPU defaults mean nothing there
        for kind, v in base["floor"].items():
            floors[kind] = {p: (x, f"[default.floor.{kind}]") for p, x in v.items()}
    for kind, v in own.get("floor", {}).items():
        floors.setdefault(kind, {}).update({p: (x, f"[{family}.floor.{kind}]") for p, x in v.items()})
    merged["floor"] = floors
    reported = dict(base.get("reported", {})) if family != "cpu" else {}
    reported.update(own.get("reported", {}))
    merged["reported"] = reported
    merged["reported_ops"] = {**(base.get("reported_ops", {}) if family != "cpu" else {}), **own.get("reported_ops", {})}
    return merged


def tolerance(family: str, bound: str, precision: str, op: str = "") -> Tolerance:
    sec = _section(family)
    floors = sec["floor"]
    floor, source = floors.get(op, {}).get(precision) or floors.get(bound, {}).get(precision) or (None, "none")
    reported = sec["reported_ops"].get(op, "") or sec["reported"].get(precision, "")
    if reported:  # no source bounds this path's efficiency: reported, then held to this device's first run
        floor, source = None, f"reported, not enforced: {reported}"
    return Tolerance(family, bool(sec["ratio_enforced"]), float(sec["ratio_band"]),
                     float(sec.get("ratio_band_upper", sec["ratio_band"])), floor, source, reported)
