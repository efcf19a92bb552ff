"""sd_notify: tell systemd the truth about the service (Type=notify units).

systemd passes `$NOTIFY_SOCKET` (a unix datagram socket path, or `@name` for an
abstract one) and, with `WatchdogSec=`, `$WATCHDOG_USEC` (and `$WATCHDOG_PID`). The
service sends `READY=1` once cameras are open and the detector is enrolled, `STATUS=`
lines for `systemctl status`, `WATCHDOG=1` only while the supervisor sees progress
(inspector.runtime.supervisor decides, this module only talks), and `STOPPING=1` on shutdown.

Written here in a few lines of socket code rather than with a dependency
(python-systemd needs libsystemd headers to build; sdnotify is unmaintained). Without
`$NOTIFY_SOCKET` (development, tests) every call is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

log = logging.getLogger(__name__)


def _address(raw: str) -> str | bytes:
    """`@name` is an abstract socket (leading NUL byte); anything else is a path."""
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def watchdog_interval(env: dict[str, str] | None = None) -> float | None:
    """Seconds between the watchdog deadlines systemd enforces, or None when off.

    `$WATCHDOG_PID`, when set, must be this process: a child started by the service
    must not feed the service's watchdog.
    """
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid.strip() != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        return None
    return value / 1e6 if value > 0 else None


class Notifier:
    """One datagram socket to systemd; safe to call from any thread."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self.sent = 0
        self.errors = 0

    @classmethod
    def from_env(cls) -> Notifier:
        """Notifier for `$NOTIFY_SOCKET` (None: every call does nothing)."""
        return cls(os.environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` lines as one datagram; False if not sent (never raises)."""
        if self.address is None:
            return False
        msg = "\n".join(f.replace("\n", " ") for f in fields).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.connect(_address(self.address))
                self._sock.sendall(msg)
            except OSError as exc:
                self.errors += 1
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
                if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
                    log.warning("sd_notify to %s failed (%d so far): %s", self.address,
                                self.errors, exc)
                return False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str = "stopping") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
