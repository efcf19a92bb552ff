"""Atomic file writes: a temporary file beside the target, then a rename.

Readers (the service loading a cache, a calibration, an archived image) never see half
a file. `fsync` makes the write survive power loss; the archive skips it on its
per-frame path, where losing the newest image in a power cut is acceptable.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, write: Callable[[BinaryIO], object], fsync: bool = True) -> None:
    """Write through `write(file_object)` to a temporary file beside `path`, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes, fsync: bool = True) -> None:
    write_atomic(path, lambda f: f.write(data), fsync=fsync)
