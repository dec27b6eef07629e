"""Files the tool writes are replaced atomically: a failed write leaves the old file and no debris."""
import os

import pytest

from roofline.atomic import write_atomic, write_json_atomic


def test_write_then_replace(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert path.read_text().strip().endswith("}") and '"a": 2' in path.read_text()
    assert os.listdir(path.parent) == ["out.json"]


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    write_atomic(path, "old")

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(path, "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]
