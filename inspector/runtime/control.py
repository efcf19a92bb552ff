"""Local control channel: the CLI talks to the running service over a unix socket.

One JSON request per connection (`{"cmd": "status"}`, `{"cmd": "switch", ...}`), one
JSON answer (`{"ok": true, ...}` or `{"ok": false, "error": "..."}`). The socket lives
in the state folder, mode 0660, so only the service user and its group can steer it.
The `control` thread only accepts; each connection is served on its own short-lived
`control-conn` thread (at most MAX_CLIENTS at once), so a long recipe switch or an idle
client never delays `inspector status`. Requests are size- and depth-limited before
parsing, and whatever a handler raises becomes a short error answer; no input ends the
accept loop.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from inspector.core.safe_json import InputError, loads_limited, short_error

log = logging.getLogger(__name__)
Handler = Callable[[dict], dict]
MAX_REQUEST = 64 * 1024
MAX_CLIENTS = 16  # connections served at once; more wait in the listen backlog
READ_TIMEOUT_S = 5.0


class ControlServer:
    """The service side of the control socket: one handler per command name."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.handlers: dict[str, Handler] = {}
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self._inode = 0

    def register(self, cmd: str, handler: Handler) -> None:
        self.handlers[cmd] = handler

    def start(self) -> None:
        self._listen()
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()  # a socket left by a crashed run (the state lock is ours)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        sock.listen(8)
        sock.settimeout(0.2)
        self._sock = sock
        self._inode = os.stat(self.path).st_ino

    def alive(self) -> bool:
        """The accept loop runs and the socket file is still ours (a cleaned-up state dir
        leaves a listening socket nobody can reach)."""
        if self._thread is None or self._stop.is_set():
            return True
        try:
            ours = os.stat(self.path).st_ino == self._inode
        except OSError:
            ours = False
        return self._thread.is_alive() and ours

    def ensure_running(self) -> bool:
        """Listen again and restart the accept loop if either is gone (the supervisor
        calls this every tick); False when it had to."""
        if self.alive():
            return True
        log.error("the control socket %s is not served; listening again", self.path)
        old, self._sock = self._sock, None
        if old is not None:
            old.close()  # the old loop ends on its next accept
        if self._thread is not None:
            self._thread.join(1.0)
        self._listen()
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()
        return False

    def _serve(self) -> None:
        sock = self._sock
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if not self._stop.is_set() and sock is self._sock:
                    log.exception("control socket accept failed; the supervisor restarts it")
                return
            while not self._slots.acquire(timeout=0.2):
                if self._stop.is_set():
                    conn.close()
                    return
            try:
                threading.Thread(target=self._client, args=(conn,), name="control-conn",
                                 daemon=True).start()
            except Exception:
                self._slots.release()
                conn.close()
                log.exception("cannot start a control connection thread")

    def _client(self, conn: socket.socket) -> None:
        """One request, one answer; never raises."""
        try:
            with conn:
                conn.settimeout(READ_TIMEOUT_S)
                try:
                    answer = self._answer(_read_json(conn))
                except (OSError, InputError) as exc:
                    answer = {"ok": False, "error": short_error(f"bad request: {exc}")}
                except BaseException as exc:
                    log.exception("control request crashed")
                    answer = {"ok": False, "error": f"internal error: {type(exc).__name__}"}
                try:
                    conn.sendall(json.dumps(answer).encode() + b"\n")
                except OSError:
                    pass
        finally:
            self._slots.release()

    def _answer(self, request: dict) -> dict:
        cmd = request.get("cmd")
        handler = self.handlers.get(cmd)
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            return {"ok": False, "error": f"unknown cmd {cmd!r}; known: {known}"}
        try:
            return {"ok": True, **handler(request)}
        except Exception as exc:  # the service keeps running; the caller learns why
            log.warning("control %s failed: %s", cmd, short_error(str(exc)))
            return {"ok": False, "error": short_error(str(exc) or type(exc).__name__)}

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        if self._thread is not None:
            self._thread.join(2.0)
        try:
            if os.stat(self.path).st_ino == self._inode:  # only our own socket file
                self.path.unlink()
        except OSError:
            pass


def _read_json(conn: socket.socket, limit: int = MAX_REQUEST) -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            raise InputError(f"too large (over {limit} bytes)")
    doc = loads_limited(data or b"null", limit)
    if not isinstance(doc, dict):
        raise InputError("expected a JSON object")
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
        return _read_json(sock, 64 * MAX_REQUEST)
