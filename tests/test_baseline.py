"""This device's history store: runs appended, merged with what another session stored, damage survived."""
import json

from roofline.regress import RUNS_KEPT, Run
from roofline_kernels.baseline import HistoryBook, load_book, save_book


def _run(m):
    return Run(m, (m, m * 1.01, m * 0.99), "t", None)


def test_this_sessions_runs_are_appended_to_what_another_session_stored(tmp_path):
    path = tmp_path / "history.json"
    mine, other = HistoryBook(), HistoryBook()
    mine.add("a", _run(1.0))
    other.add("a", _run(1.1))  # another session meanwhile
    other.add("b", _run(2.0))
    save_book(other, path)
    save_book(mine, path)
    book = load_book(path)
    assert [r.median for r in book.cases["a"]] == [1.1, 1.0] and [r.median for r in book.cases["b"]] == [2.0]
    assert book.reference("a").runs == 2 and book.reference("c") is None


def test_the_history_keeps_its_last_runs_only(tmp_path):
    path = tmp_path / "history.json"
    book = HistoryBook()
    for i in range(RUNS_KEPT + 5):
        book.add("a", _run(1.0 + i))
    save_book(book, path)
    runs = load_book(path).cases["a"]
    assert len(runs) == RUNS_KEPT and runs[-1].median == 1.0 + RUNS_KEPT + 4


def test_a_damaged_or_missing_store_starts_afresh_and_rebaseline_ignores_it(tmp_path):
    path = tmp_path / "history.json"
    assert load_book(path).cases == {}
    path.write_text("{not json")
    assert load_book(path).cases == {}
    path.write_text(json.dumps({"cases": {"a": [_run(1.0).to_dict()]}}))
    assert load_book(path).reference("a") is not None and load_book(path, fresh=True).cases == {}
