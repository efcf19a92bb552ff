"""Atomic file writes: a temporary file beside the target, then a rename.

Readers (the service loading a cache, a calibration, an archived image) never see half
a file. `fsync` makes the write survive power loss; the archive skips it on its
per-frame path, where losing the newest image in a power cut is acceptable.

Modes follow the usual rules, not mkstemp's 0600: a replaced file keeps its mode, a new
one gets 0666 minus the umask (0640 under the unit's UMask=0027), so the service's group
can read what an admin wrote.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # pragma: no cover - only without /proc
    os.umask(old)
    return old


def mode_for(path: Path) -> int:
    """The mode a write to `path` should leave: the existing file's, else 0666 & ~umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def temp_beside(path: Path, mode: int | None = None) -> tuple[int, str]:
    """mkstemp beside `path`, with the mode the final file should have (`mode` forces one:
    secrets are 0600 from their first byte)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode_for(path) if mode is None else mode)
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd, tmp


def write_atomic(path: Path, write: Callable[[BinaryIO], object], fsync: bool = True,
                 mode: int | None = None) -> None:
    """Write through `write(file_object)` to a temporary file beside `path`, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path, mode)
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


def write_bytes_atomic(path: Path, data: bytes, fsync: bool = True,
                       mode: int | None = None) -> None:
    """Write `data` to `path` atomically (see write_atomic)."""
    write_atomic(path, lambda f: f.write(data), fsync=fsync, mode=mode)
