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


def test_a_history_and_a_dram_ceiling_are_written_back_one_session_at_a_time(tmp_path):
    """Each is read, added to and written back: two sessions sharing a store lost the earlier's update. While another
    session holds the lock, a write waits for it, and then keeps both."""
    import fcntl
    import threading
    import time
    from roofline.atomic import write_json_atomic
    from roofline_kernels.baseline import BASELINE_METHOD
    from roofline_kernels.ceiling import dram_history_path, load_dram_history, offer_dram
    from roofline_kernels.device import DeviceInfo, read_cpu_info
    info = DeviceInfo("cpu", "cpu", "x", "y", read_cpu_info("/nonexistent"))
    book_path = tmp_path / "history.json"
    for path, write, read in (
            (book_path, lambda: save_book(_book_with("mine"), book_path), lambda: set(load_book(book_path).cases)),
            (dram_history_path(info, tmp_path), lambda: offer_dram(info, tmp_path, 50.0, "mine"),
             lambda: {look["how"] for look in load_dram_history(info, tmp_path)["looks"]})):
        with open(f"{path}.lock", "a") as held:  # another session's read-modify-write in progress
            fcntl.flock(held, fcntl.LOCK_EX)
            writer = threading.Thread(target=write)
            writer.start()
            time.sleep(0.3)
            assert writer.is_alive(), "the write did not wait for the session holding the lock"
            if path == book_path:  # the other session writes meanwhile (as save_book would, under its lock)
                write_json_atomic(path, {"method": BASELINE_METHOD, "cases": {"theirs": [Run(1.0, (1.0,) * 3).to_dict()]}})
            else:
                write_json_atomic(path, {"best_gbs": 40.0, "best_when": "", "best_how": "theirs", "quiet_looks": 1,
                                         "looks": [{"gbs": 40.0, "when": "", "how": "theirs", "contention": False}]})
            fcntl.flock(held, fcntl.LOCK_UN)
        writer.join(5)
        assert read() == {"mine", "theirs"}, read()


def _book_with(case_id):
    book = HistoryBook()
    book.add(case_id, Run(1.0, (1.0, 1.0, 1.0)))
    return book
