"""Logging: one `key=value` line per record on stdout, for journald; secrets redacted.

    level=info logger=inspector.service thread=MainThread msg="inspecting with 1 camera(s)"

Under systemd (`$JOURNAL_STREAM` set) each line starts with its syslog priority
(`<6>`), which journald turns into the entry's priority, and carries no timestamp
(the journal has its own); elsewhere lines start with `ts=` (ISO 8601, UTC). Values
with spaces, quotes or `=` are quoted, newlines escaped, so a traceback stays one line.
Extra fields: `log.info("stopped", extra={"kv": {"results": 12}})`.

Secrets never reach the log: every message is passed through `redact`, which replaces
values registered with `register_secret` (the MQTT password, read once at start) and
anything that looks like `password=...`, `"token": "..."` or `user:pass@host`.
`setup` also enables faulthandler, so that the watchdog's SIGABRT leaves the stack of
every thread in the journal.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import re
import sys
import threading
import time

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
MASK = "***"
_KEY = r"(?:password|passwd|passphrase|secret|token|api[_-]?key|credential)s?"
_PATTERNS = [
    # password=xyz, password: xyz, "password": "xyz", password_env=... not a secret value
    re.compile(rf"""(?i)(\b{_KEY}\b["']?\s*[:=]\s*["']?)([^"'\s,;}}&]+)"""),
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)([^@\s]+)(@)"),  # scheme://user:pass@
]
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}
_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "kv"}


def register_secret(value: str | None) -> None:
    """Never print `value` (e.g. a password just read); short values are ignored."""
    if value and len(value) >= 3:
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """`text` with registered secrets and password-like values replaced by the mask."""
    with _SECRETS_LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for s in secrets:
        if s in text:
            text = text.replace(s, MASK)
    text = _PATTERNS[0].sub(lambda m: m.group(1) + MASK, text)
    return _PATTERNS[1].sub(lambda m: m.group(1) + MASK + m.group(3), text)


def _value(v: object) -> str:
    s = str(v)
    if s and not any(c in s for c in ' "=\n\r\t\\'):
        return s
    for a, b in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        s = s.replace(a, b)
    return f'"{s}"'


class KeyValueFormatter(logging.Formatter):
    """logfmt-style lines; `journal=True` adds the syslog priority prefix, drops `ts`."""

    def __init__(self, journal: bool = False) -> None:
        super().__init__()
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        fields: list[tuple[str, object]] = []
        if not self.journal:
            t = time.gmtime(record.created)
            fields.append(("ts", time.strftime("%Y-%m-%dT%H:%M:%S", t)
                           + f".{int(record.msecs):03d}Z"))
        fields += [("level", record.levelname.lower()), ("logger", record.name),
                   ("thread", record.threadName), ("msg", record.getMessage())]
        kv = getattr(record, "kv", None)
        if isinstance(kv, dict):
            fields += list(kv.items())
        fields += [(k, v) for k, v in record.__dict__.items()
                   if k not in _RESERVED and not k.startswith("_")]
        if record.exc_info:
            fields.append(("exc", self.formatException(record.exc_info)))
        if record.stack_info:
            fields.append(("stack", record.stack_info))
        line = " ".join(f"{k}={_value(redact(str(v)))}" for k, v in fields)
        if self.journal:
            line = f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


def setup(level: str | int = "INFO", stream=None) -> logging.Handler:
    """Route every log record through one KeyValueFormatter handler on stdout."""
    if isinstance(level, str):
        level = getattr(logging, level.upper(), logging.INFO)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(KeyValueFormatter(journal=bool(os.environ.get("JOURNAL_STREAM"))))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_inspector", False):
            root.removeHandler(h)
    handler._inspector = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    if not faulthandler.is_enabled():
        try:
            faulthandler.enable(all_threads=True)
        except (RuntimeError, ValueError, OSError):  # no usable stderr
            pass
    return handler
