"""This device's own history of each case, kept in the profile store: the evidence regressions are judged by.

nvbench and asv compare a device with its own history; so does this. Per case, the accepted runs (per-sample
scores, their median, when): ``roofline.regress`` makes the reference and its band from them, and says
which runs may join (none measured under contention, none that failed, none slower than the band allows).
Keyed like the calibration profile's device fields, so new drivers, clocks or torch versions start a new
history instead of being judged by an old one. Written atomically, merged with what another session added.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from roofline.atomic import locked, write_json_atomic
from roofline.regress import MIN_EFFECT, RUNS_KEPT, Reference, Run, reference

from .calibrate import fingerprint
from .device import DeviceInfo

# Part of the file name: histories recorded under another definition of the score are not compared with.
# 3: each run's per-sample times replace one efficiency per case.
BASELINE_METHOD = 3


def baseline_path(info: DeviceInfo, store: str | os.PathLike) -> Path:
    return Path(store) / f"history-{info.hardware_key}-{fingerprint(info)}-m{BASELINE_METHOD}.json"


@dataclass
class HistoryBook:
    """Accepted runs per case id, plus the runs this session added (saved at its end)."""
    cases: dict = field(default_factory=dict)      # case id -> [Run]
    added: dict = field(default_factory=dict)      # case id -> [Run] added this session
    min_effect: float = MIN_EFFECT                 # roofline.regress.MIN_EFFECT_CPU on a shared host CPU

    def reference(self, case_id: str, device_spread: tuple[float, str] | None = None) -> Reference | None:
        """``device_spread``: this device's run-to-run spread near the case's shape (``EfficiencyModel.run_to_run``),
        which the band is never narrower than."""
        return reference(self.cases.get(case_id, []), self.min_effect, device_spread)

    def add(self, case_id: str, run: Run) -> None:
        self.cases.setdefault(case_id, []).append(run)
        self.added.setdefault(case_id, []).append(run)


def load_book(path: str | os.PathLike, fresh: bool = False, min_effect: float = MIN_EFFECT) -> HistoryBook:
    if fresh:
        return HistoryBook(min_effect=min_effect)
    try:
        data = json.loads(Path(path).read_text())
        return HistoryBook(cases={k: [Run.from_dict(r) for r in v] for k, v in data["cases"].items()},
                           min_effect=min_effect)
    except (OSError, ValueError, KeyError, TypeError):
        return HistoryBook(min_effect=min_effect)  # none yet, or damaged: this run starts anew


def save_book(book: HistoryBook, path: str | os.PathLike) -> None:
    """Append this session's accepted runs to whatever the store holds now (another session may have added), one
    session at a time (``locked``)."""
    with locked(path):
        current = load_book(path)
        for case_id, runs in book.added.items():
            current.cases[case_id] = (current.cases.get(case_id, []) + runs)[-RUNS_KEPT:]
        write_json_atomic(path, {"method": BASELINE_METHOD,
                                 "cases": {k: [r.to_dict() for r in v] for k, v in current.cases.items()}})
