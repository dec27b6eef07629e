"""Atomic file writes: a killed run leaves the old file or the new one, never half of either; and one writer at a time
of a file that is read, changed and written back (``locked``), so two sessions sharing a store lose no update.

``mkstemp`` creates its file 0600; a report, export or profile is meant to be read by others (CI
archives, a shared profile store), so the file gets the mode an ordinary ``open()`` would give it:
0666 less the process umask (0644 under the usual 022).
"""
from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager


def write_atomic(path: str | os.PathLike, data: str | bytes) -> str:
    """Write to a temporary file in the same directory, fsync it, then rename over ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


@contextmanager
def locked(path: str | os.PathLike):
    """An advisory lock beside ``path`` (``path.lock``) for a read-modify-write of it: a suite and a ``measure`` (or two
    suites) sharing a store each read, add and write back, and without it the later write drops the earlier's."""
    lock = f"{os.fspath(path)}.lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock)), exist_ok=True)
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def write_json_atomic(path: str | os.PathLike, obj) -> str:
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
