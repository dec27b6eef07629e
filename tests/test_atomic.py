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


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_ordinary_permissions(tmp_path, umask, mode):
    """CI archives reports for others to read: mkstemp's 0600 must not leak into them."""
    old = os.umask(umask)
    try:
        path = write_atomic(tmp_path / "report.csv", "a,b\n")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == mode
