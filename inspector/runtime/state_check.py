"""Start-up checks of the state dir and the outbox, shared by `inspector validate` and
the service.

Why: a corrupt outbox or a read-only state dir used to pass `inspector validate` (the
unit's ExecStartPre) and then end `inspector run` in a traceback, five times, until
systemd gave up. Each problem here names the path, the cause and the fix.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from inspector.outputs.mqtt.outbox import OutboxError, check_file


def outbox_path(cfg) -> Path | None:
    """The station's outbox file, or None without MQTT."""
    if cfg.mqtt is None or not cfg.mqtt.enabled:
        return None
    p = cfg.mqtt.outbox.path
    return p if p.is_absolute() else cfg.storage.state_dir / p


def state_problems(cfg) -> list[tuple[tuple, str]]:
    """(config location, message) for everything that would stop the service at start."""
    out: list[tuple[tuple, str]] = []
    d = cfg.storage.state_dir
    existing = d
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        out.append((("storage", "state_dir"), f"{existing} is not a folder"))
    elif not os.access(existing, os.W_OK | os.X_OK):
        out.append((("storage", "state_dir"),
                    f"{existing} is not writable by this user; fix with chown/chmod (the unit "
                    "runs as the inspector user), or set storage.state_dir elsewhere"))
    ob = outbox_path(cfg)
    if ob is not None and ob.exists():
        problem = outbox_problem(ob)
        if problem:
            out.append((("mqtt", "outbox", "path"), problem))
    return out


def outbox_problem(path: Path) -> str | None:
    """Why an existing outbox file cannot be used, or None. Opens it without creating or
    converting anything."""
    if not os.access(path, os.R_OK | os.W_OK):
        return (f"outbox {path} is not readable and writable by this user; fix its owner "
                "and mode (chown inspector: ..., chmod 0640)")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5.0)
    except sqlite3.Error as exc:
        return f"outbox {path}: cannot open: {exc}"
    try:
        check_file(conn, path)
    except OutboxError as exc:
        return str(exc)
    except sqlite3.Error as exc:
        return f"outbox {path}: cannot read: {exc}"
    finally:
        conn.close()
        _same_owner(path)
    return None


def _same_owner(path: Path) -> None:
    """Opening a WAL database may create -wal/-shm files; when root validates (the
    install script does), give them to the outbox's owner so the service can open them."""
    if os.geteuid() != 0:
        return
    try:
        st = os.stat(path)
        for suffix in ("-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            if side.exists() and side.stat().st_uid != st.st_uid:
                os.chown(side, st.st_uid, st.st_gid)
    except OSError:
        pass
