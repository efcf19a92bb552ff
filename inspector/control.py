"""Local control channel: the CLI talks to the running service over a unix socket.

One JSON request per connection (`{"cmd": "status"}`, `{"cmd": "switch", ...}`), one
JSON answer (`{"ok": true, ...}` or `{"ok": false, "error": "..."}`). The socket lives
in the state folder, mode 0660, so only the service user and its group can steer it.
Handlers run on the `control` thread, never on the pipeline's threads.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)
Handler = Callable[[dict], dict]
MAX_REQUEST = 64 * 1024


class ControlServer:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.handlers: dict[str, Handler] = {}
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def register(self, cmd: str, handler: Handler) -> None:
        self.handlers[cmd] = handler

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()  # a socket left by a crashed run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        sock.listen(8)
        sock.settimeout(0.2)
        self._sock = sock
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with conn:
                conn.settimeout(5.0)
                try:
                    answer = self._answer(_read_json(conn))
                except (OSError, ValueError) as exc:
                    answer = {"ok": False, "error": f"bad request: {exc}"}
                try:
                    conn.sendall(json.dumps(answer).encode() + b"\n")
                except OSError:
                    pass

    def _answer(self, request: dict) -> dict:
        cmd = request.get("cmd")
        handler = self.handlers.get(cmd)
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return {"ok": False, "error": f"unknown cmd {cmd!r}; known: {known}"}
        try:
            return {"ok": True, **handler(request)}
        except Exception as exc:  # the service keeps running; the caller learns why
            log.warning("control %s failed: %s", cmd, exc)
            return {"ok": False, "error": str(exc)}

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(2.0)
        self.path.unlink(missing_ok=True)


def _read_json(conn: socket.socket) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too large")
    doc = json.loads(data.decode("utf-8") or "null")
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    return doc


def call(path: Path, request: dict, timeout: float = 30.0) -> dict:
    """Send one request to the running service and return its answer.

    Raises ConnectionError with a clear message when no service listens at `path`.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        raise ConnectionError(f"no running inspector service at {path}: {exc.strerror or exc}"
                              ) from exc
    with sock:
        sock.sendall(json.dumps(request).encode() + b"\n")
        return _read_json(sock)
