"""Salvage a damaged outbox: move the file aside, keep every readable row for replay.

Why: a corrupt file or one with a foreign schema stops the service at start (it would
otherwise drop every result). The rows in it are results not yet acknowledged by the
broker; `inspector outbox salvage` moves the file (and its -wal/-shm) to
`<name>.damaged-<time>`, reads what it can from any table that has `event_id`, `plc`
and `result` columns, and commits those rows to a fresh outbox, from which the next
run publishes them with `"replayed": true`. Nothing is deleted.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from inspector.outputs.mqtt.outbox import Outbox

log = logging.getLogger("inspector.outputs.mqtt.outbox")
_NEEDED = ("event_id", "plc", "result")


@dataclass
class SalvageReport:
    """What a salvage did: where the file went, rows kept and unreadable, tables read."""

    path: Path
    moved_to: Path | None = None
    kept: int = 0
    unreadable: int = 0
    tables: list[str] = field(default_factory=list)

    def text(self) -> str:
        if self.moved_to is None:
            return f"{self.path}: no outbox file; nothing to salvage"
        return (f"{self.path}: moved to {self.moved_to}; {self.kept} row(s) kept for replay "
                f"from {', '.join(self.tables) or 'no usable table'}, "
                f"{self.unreadable} unreadable")


def salvage(path: Path) -> SalvageReport:
    """Move `path` aside and copy its readable rows into a fresh outbox at `path`."""
    path = Path(path)
    report = SalvageReport(path)
    if not path.exists():
        return report
    owner = path.stat()
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.rename(f"{aside}{suffix}")
    report.moved_to = aside
    rows = _read_rows(aside, report)
    fresh = Outbox(path, max_rows=max(len(rows) + 10, 200_000))
    try:
        for created, event_id, plc, result in rows:
            fresh.append(event_id, plc, result, created)
    finally:
        fresh.close()
    if os.geteuid() == 0:  # run by root: the fresh file belongs to whoever owned the old one
        for suffix in ("", "-wal", "-shm"):
            side = Path(f"{path}{suffix}")
            if side.exists():
                os.chown(side, owner.st_uid, owner.st_gid)
    log.warning("%s", report.text())
    return report


def _read_rows(path: Path, report: SalvageReport) -> list[tuple[float, str, str, str]]:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    rows: list[tuple[float, str, str, str]] = []
    seen: set[str] = set()
    try:
        for table in _candidate_tables(conn):
            report.tables.append(table)
            for row in _rows_of(conn, table, report):
                if row[1] not in seen:
                    seen.add(row[1])
                    rows.append(row)
    finally:
        conn.close()
    report.kept = len(rows)
    return rows


def _candidate_tables(conn: sqlite3.Connection) -> list[str]:
    try:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    except sqlite3.DatabaseError:
        return []
    out = []
    for name in names:
        try:
            cols = {r[1] for r in conn.execute(f'PRAGMA table_info("{name}")')}
        except sqlite3.DatabaseError:
            continue
        if set(_NEEDED) <= cols:
            out.append(name)
    return out


def _rows_of(conn: sqlite3.Connection, table: str, report: SalvageReport):
    """Rows by rowid, in batches; a batch that fails is read one row at a time, and a
    row that still fails is counted as unreadable."""
    cols = "rowid, " + ("created" if _has(conn, table, "created") else "NULL") + \
        ", event_id, plc, result"
    try:
        top = conn.execute(f'SELECT MAX(rowid) FROM "{table}"').fetchone()[0] or 0
    except sqlite3.DatabaseError:
        report.unreadable += 1
        return
    step = 500
    for lo in range(0, top, step):
        try:
            batch = conn.execute(f'SELECT {cols} FROM "{table}" WHERE rowid > ? AND rowid <= ? '
                                 "ORDER BY rowid", (lo, lo + step)).fetchall()
        except sqlite3.DatabaseError:
            batch = []
            for rid in range(lo + 1, lo + step + 1):
                try:
                    batch += conn.execute(f'SELECT {cols} FROM "{table}" WHERE rowid = ?',
                                          (rid,)).fetchall()
                except sqlite3.DatabaseError:
                    report.unreadable += 1
        for _rid, created, event_id, plc, result in batch:
            if _usable(event_id, plc, result):
                yield (float(created) if isinstance(created, (int, float)) else time.time(),
                       event_id, plc, result)
            else:
                report.unreadable += 1


def _has(conn: sqlite3.Connection, table: str, col: str) -> bool:
    return any(r[1] == col for r in conn.execute(f'PRAGMA table_info("{table}")'))


def _usable(event_id: object, plc: object, result: object) -> bool:
    """A row is replayable when both payloads are JSON objects of the same event."""
    if not (isinstance(event_id, str) and isinstance(plc, str) and isinstance(result, str)):
        return False
    try:
        p, r = json.loads(plc), json.loads(result)
    except ValueError:
        return False
    return isinstance(p, dict) and isinstance(r, dict) and r.get("event_id") == event_id
