"""This device's baseline store: first records kept, merged with what others stored, damage survived."""
import json

from roofline_kernels.baseline import load_book, save_book
from roofline.judge import BaselineBook


def test_first_records_are_saved_and_merged_with_the_store(tmp_path):
    path = tmp_path / "baseline.json"
    save_book(BaselineBook(entries={"a": {"efficiency": 0.5}}, recorded=["a"]), path)
    other = BaselineBook(entries={"b": {"efficiency": 0.7}}, recorded=["b"])  # another session meanwhile
    save_book(other, path)
    book = load_book(path)
    assert book.get("a") == 0.5 and book.get("b") == 0.7 and book.recorded == []


def test_a_damaged_or_missing_store_starts_afresh_and_rebaseline_ignores_it(tmp_path):
    path = tmp_path / "baseline.json"
    assert load_book(path).entries == {}
    path.write_text("{half")
    assert load_book(path).entries == {}
    path.write_text(json.dumps({"cases": {"a": {"efficiency": 0.5}}}))
    assert load_book(path).get("a") == 0.5 and load_book(path, fresh=True).get("a") is None


def test_a_baseline_is_only_held_against_the_calibration_it_was_measured_on(tmp_path):
    book = BaselineBook()
    book.record("a", 0.5, "t0", {"calibration": "2026-11-22T04:00:00"})
    assert book.get("a", "2026-11-22T04:00:00") == 0.5
    assert book.get("a", "2026-11-23T09:00:00") is None  # recalibrated: efficiency is relative to a new roof
    fresh = BaselineBook(entries={"a": {"efficiency": 0.5, "calibration": "old"}})
    fresh.record("a", 0.6, "t1", {"calibration": "new"})  # a stale entry is replaced by this run's
    assert fresh.get("a", "new") == 0.6 and fresh.recorded == ["a"]
