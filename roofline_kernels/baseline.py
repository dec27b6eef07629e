"""This device's own evidence: the efficiency each case reached on its first run, kept in the profile store.

A device family with sourced floors (tolerances.toml) is held to them. A device without them (any host
CPU: a Graviton, a Xeon, the next CI runner) is held to its own recorded baseline less a regression
band: the first run records, later runs compare (nvbench and asv compare a device with its own
history the same way). Keyed like the calibration profile, so new drivers, clocks or torch versions
start a new baseline instead of being judged by an old one.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from roofline.atomic import write_json_atomic
from roofline.judge import BaselineBook

from .calibrate import fingerprint
from .device import DeviceInfo


# Part of the file name: baselines recorded under another definition of efficiency are not compared with.
# 2: a case whose compute peak is one software kernel's speed (roofline_kernels.measure.ceiling_is_physical) is held
# to the memory roof alone, and its efficiency is against that roof.
BASELINE_METHOD = 2


def baseline_path(info: DeviceInfo, store: str | os.PathLike) -> Path:
    return Path(store) / f"baseline-{info.hardware_key}-{fingerprint(info)}-m{BASELINE_METHOD}.json"


def load_book(path: str | os.PathLike, fresh: bool = False) -> BaselineBook:
    if fresh:
        return BaselineBook()
    try:
        data = json.loads(Path(path).read_text())
        return BaselineBook(entries=dict(data["cases"]))
    except (OSError, ValueError, KeyError, TypeError):
        return BaselineBook()  # none yet, or damaged: this run records anew


def save_book(book: BaselineBook, path: str | os.PathLike) -> None:
    """Merge this run's first records into whatever the store holds now (another session may have added)."""
    current = load_book(path)
    merged = {**current.entries, **{k: book.entries[k] for k in book.recorded}}
    write_json_atomic(path, {"cases": merged})
