"""One service per state dir: an exclusive `flock` on `<state_dir>/inspector.lock`.

Why: a second `inspector run` with the same config took over the first one's control
socket, deleted it on exit, fought over one MQTT client id and one outbox. The kernel
releases the lock when the process ends (kill -9 included), so a stale lock file never
blocks a restart.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from inspector.core.errors import InspectorError

LOCK_NAME = "inspector.lock"


class AlreadyRunning(InspectorError, RuntimeError):
    """Another process holds the state dir; the message says which and what to do."""


class StateDirError(InspectorError, RuntimeError):
    """The state dir cannot be created or written; the message says how to fix it."""


class InstanceLock:
    """The state dir's lock, held while the service (or a salvage) runs."""

    def __init__(self, state_dir: Path, what: str = "inspector run") -> None:
        self.path = Path(state_dir) / LOCK_NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> InstanceLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateDirError(
                f"state dir {self.path.parent}: {exc.strerror or exc}; it must be a writable "
                "folder of the service user (chown/chmod, or set storage.state_dir)") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise AlreadyRunning(
                f"state dir {self.path.parent} is in use by another inspector ({holder}); "
                "stop that one first (systemctl stop inspector), or give this station its "
                "own storage.state_dir") from None
        if os.geteuid() == 0:  # root (a salvage): leave the file usable by the service user
            st = os.stat(self.path.parent)
            os.fchown(fd, st.st_uid, st.st_gid)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, {self.what}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (harmless)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
