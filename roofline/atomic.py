"""Atomic file writes: a killed run leaves the old file or the new one, never half of either.

``mkstemp`` creates its file 0600; a report, export or profile is meant to be read by others (CI
archives, a shared profile store), so the file gets the mode an ordinary ``open()`` would give it:
0666 less the process umask (0644 under the usual 022).
"""
from __future__ import annotations

import json
import os
import tempfile


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


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def write_json_atomic(path: str | os.PathLike, obj) -> str:
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
