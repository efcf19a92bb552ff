"""A stand-in for systemd's notify socket, for the sd_notify tests."""

from __future__ import annotations

import socket
import threading
import time


class Listener:
    """A bound datagram socket (as systemd's) recording (monotonic time, message)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        bind = "\0" + address[1:] if address.startswith("@") else address
        self.sock.bind(bind)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def all(self) -> list[tuple[float, str]]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, pred, timeout: float) -> tuple[float, str] | None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, m in self.all():
                if pred(m):
                    return t, m
            time.sleep(0.05)
        return None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
