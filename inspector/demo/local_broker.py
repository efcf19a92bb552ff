"""A local mosquitto broker on a free loopback port, for the demo, benchmarks and tests.

`inspector demo` starts one so that the whole contract (outbox, PUBACK, retained status)
is exercised on a fresh machine; tests add TLS listeners and password files. Every wait
is bounded; the broker never listens beyond 127.0.0.1.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any


def mosquitto_binary() -> str | None:
    """Path of the broker, or None (tests then skip with a reason)."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port() -> int:
    """A loopback TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One mosquitto process; `port` is plain MQTT, `tls_port` / `mtls_port` with TLS.

    `certs` (tests) has `ca`, `server_cert` and `server_key` paths.
    """

    def __init__(self, folder: Path, *, certs: Any | None = None,
                 passwords: dict[str, str] | None = None, persistence: bool = False,
                 tcp_nodelay: bool = False, queue_qos0: bool = False) -> None:
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed")
        self.binary = binary
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.certs = certs
        self.persistence = persistence
        self.tcp_nodelay = tcp_nodelay  # mosquitto's default is Nagle on (false)
        # keep QoS 0 messages for a persistent session while it is away (Sparkplug's data
        # is QoS 0: a test host that reconnects must not miss any)
        self.queue_qos0 = queue_qos0
        self.port = free_port()
        self.tls_port = free_port() if certs else None
        self.mtls_port = free_port() if certs else None
        self.conf = self.folder / "mosquitto.conf"
        self.log = self.folder / "mosquitto.log"
        self.passwd = self.folder / "passwd" if passwords is not None else None
        self.proc: subprocess.Popen | None = None
        if passwords is not None:
            self.set_passwords(passwords)
        self._write_config()

    def _write_config(self) -> None:
        lines = [f"log_dest file {self.log}",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "max_queued_messages 0",  # unbounded: a slow test subscriber loses nothing
                 "per_listener_settings false",
                 f"set_tcp_nodelay {'true' if self.tcp_nodelay else 'false'}",
                 f"queue_qos0_messages {'true' if self.queue_qos0 else 'false'}"]
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")
        if self.passwd is not None:
            lines += ["allow_anonymous false", f"password_file {self.passwd}"]
        else:
            lines.append("allow_anonymous true")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.folder}/",
                      "autosave_interval 0"]
        lines.append(f"listener {self.port} 127.0.0.1")
        if self.certs is not None:
            c = self.certs
            for port, require in ((self.tls_port, "false"), (self.mtls_port, "true")):
                lines += [f"listener {port} 127.0.0.1", f"cafile {c.ca}",
                          f"certfile {c.server_cert}", f"keyfile {c.server_key}",
                          f"require_certificate {require}"]
        self.conf.write_text("\n".join(lines) + "\n")

    def set_passwords(self, passwords: dict[str, str]) -> None:
        """Rewrite the password file; a running broker reloads it (SIGHUP)."""
        assert self.passwd is not None, "broker was created without passwords"
        self.passwd.unlink(missing_ok=True)
        self.passwd.touch(mode=0o600)
        for user, pw in passwords.items():
            subprocess.run(["mosquitto_passwd", "-b", str(self.passwd), user, pw], check=True,
                           capture_output=True, timeout=10)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)

    def start(self, timeout: float = 10.0) -> Broker:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic() + timeout
        ports = [p for p in (self.port, self.tls_port, self.mtls_port) if p]
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited ({self.proc.returncode}): {err}\n"
                                   f"{self.log_text()}")
            if all(_accepts(p) for p in ports):
                return self
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"mosquitto did not listen within {timeout} s:\n{self.log_text()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (saves persistence), wait; SIGKILL if it does not exit."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close_pipe()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._close_pipe()

    def _close_pipe(self) -> None:
        """Close the ended process's stderr pipe: a soak restarts the broker many times,
        and each restart would otherwise leave one descriptor open."""
        if self.proc is not None and self.proc.poll() is not None and self.proc.stderr:
            self.proc.stderr.close()

    def restart(self, timeout: float = 10.0) -> None:
        self.stop()
        self.start(timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
