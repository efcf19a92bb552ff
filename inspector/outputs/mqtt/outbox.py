"""Durable outbox: every result is committed to SQLite (WAL) before it is published.

A row holds the `plc` and `result` payloads of one part. The publisher reads rows in
id order, publishes them at QoS 1 and deletes a row only after its PUBACKs. Whatever
is still here after a broker outage or a crash is published again. Caps by row count
and age keep the file bounded on a line PC; a cap drops the oldest rows, and every
drop is counted (persisted in the `meta` table) and logged with its event ids.

Two connections: appends use `synchronous=FULL` by default (a result survives power
loss once `append` returned); deletes use NORMAL, since losing a delete only causes a
duplicate that consumers drop by `event_id`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from inspector.core.errors import InspectorError

log = logging.getLogger("inspector.outputs.mqtt.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the publisher's cursor
    created  REAL NOT NULL,                      -- unix time of the commit (age cap)
    event_id TEXT NOT NULL,
    plc      TEXT NOT NULL,
    result   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped_total', 0);
"""
_LOG_IDS = 20  # event ids named per drop log line
_COLUMNS = {"outbox": ["id", "created", "event_id", "plc", "result"], "meta": ["key", "value"]}
SALVAGE_HINT = ("stop the service and run `inspector outbox salvage --config STATION.yaml`: "
                "it moves the file aside and keeps every readable row for replay")


class Row(NamedTuple):
    """One outbox row: a part's `plc` and `result` payloads (JSON text) and its event id."""

    id: int
    created: float
    event_id: str
    plc: str
    result: str


class OutboxError(InspectorError, RuntimeError):
    """The outbox file cannot be opened or written; the message names the file."""


class OutboxDamaged(OutboxError):
    """The file is not a usable outbox (corrupt, foreign schema); the message says how
    to salvage its rows."""


def check_file(conn: sqlite3.Connection, path: Path) -> None:
    """Raise OutboxDamaged unless `conn` is an intact outbox or an empty database.

    Why: `CREATE TABLE IF NOT EXISTS` accepts any table named `outbox`, and a foreign
    schema then fails on every append, silently dropping results.
    """
    try:
        bad = conn.execute("PRAGMA quick_check").fetchone()[0]
        tables = {r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        cols = {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")]
                for t in _COLUMNS if t in tables}
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        raise OutboxDamaged(f"outbox {path}: not a usable SQLite database ({exc}); "
                            f"{SALVAGE_HINT}") from exc
    if bad != "ok":
        raise OutboxDamaged(f"outbox {path}: integrity check failed ({bad}); {SALVAGE_HINT}")
    for table, want in _COLUMNS.items():
        if table in cols and cols[table] != want:
            raise OutboxDamaged(
                f"outbox {path}: table {table!r} has columns {cols[table]}, expected "
                f"{want} (a foreign or older file); {SALVAGE_HINT}")


class Outbox:
    """SQLite outbox shared by the pipeline thread (append) and the publisher thread."""

    durable = True

    def __init__(self, path: Path, max_rows: int = 200_000, max_age_s: float = 7 * 86400.0,
                 synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._w = self._connect(synchronous)
            check_file(self._w, self.path)
            self._w.executescript(_SCHEMA)
            self._r = self._connect("NORMAL")
            self._count = self._w.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        except OutboxError:
            raise
        except sqlite3.OperationalError as exc:  # cannot open/write: permissions, disk
            raise OutboxError(f"outbox {self.path}: {exc}; check that the state dir "
                              f"{self.path.parent} exists, is writable by the service user "
                              "and has free space") from exc
        except sqlite3.DatabaseError as exc:
            raise OutboxDamaged(f"outbox {self.path}: {exc}; {SALVAGE_HINT}") from exc
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"outbox {self.path}: {exc}") from exc
        # Write transactions of both connections take _wlock first: they queue in Python
        # instead of in SQLite's busy handler, which sleeps up to 100 ms per retry.
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()  # the publisher-side connection object
        self._clock = threading.Lock()
        self.dropped_since_start = 0

    def _connect(self, synchronous: str) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                               check_same_thread=False)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise OutboxError(f"outbox {self.path}: cannot switch to WAL (got {mode})")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        return conn

    # -- pipeline side ---------------------------------------------------------------

    def append(self, event_id: str, plc: str, result: str, created: float | None = None) -> int:
        """Commit one result; returns its row id. Enforces the row cap in the same commit."""
        created = time.time() if created is None else created
        with self._wlock:
            w = self._w
            try:
                w.execute("BEGIN IMMEDIATE")
                cur = w.execute(
                    "INSERT INTO outbox (created, event_id, plc, result) VALUES (?, ?, ?, ?)",
                    (created, event_id, plc, result))
                row_id = cur.lastrowid
                with self._clock:
                    excess = self._count + 1 - self.max_rows
                dropped = self._drop(
                    w, "SELECT id, event_id FROM outbox ORDER BY id LIMIT ?", (excess,),
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                ) if excess > 0 else []
                w.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(w)
                raise OutboxError(f"outbox {self.path}: append failed: {exc}") from exc
        with self._clock:
            self._count += 1 - len(dropped)
        if dropped:
            self._log_drop(dropped, f"max_rows={self.max_rows}")
        assert row_id is not None
        return row_id

    # -- publisher side --------------------------------------------------------------

    def fetch_after(self, after_id: int, limit: int) -> list[Row]:
        """The oldest `limit` rows with id > `after_id`, in commit order."""
        with self._rlock:
            rows = self._r.execute(
                "SELECT id, created, event_id, plc, result FROM outbox WHERE id > ? "
                "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        return [Row(*r) for r in rows]

    def delete(self, ids: Iterable[int]) -> int:
        """Remove acknowledged rows (one transaction); returns how many were present."""
        ids = list(ids)
        if not ids:
            return 0
        with self._wlock, self._rlock:
            try:
                self._r.execute("BEGIN IMMEDIATE")
                n = 0
                for i in range(0, len(ids), 500):
                    chunk = ids[i:i + 500]
                    n += self._r.execute(
                        f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})",
                        chunk).rowcount
                self._r.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(self._r)
                raise OutboxError(f"outbox {self.path}: delete failed: {exc}") from exc
        with self._clock:
            self._count -= n
        return n

    def enforce_age(self, now: float | None = None) -> int:
        """Drop rows older than max_age_s; returns how many were dropped."""
        cutoff = (time.time() if now is None else now) - self.max_age_s
        with self._wlock, self._rlock:
            try:
                self._r.execute("BEGIN IMMEDIATE")
                dropped = self._drop(
                    self._r, "SELECT id, event_id FROM outbox WHERE created < ? ORDER BY id",
                    (cutoff,), "DELETE FROM outbox WHERE created < ?")
                self._r.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(self._r)
                raise OutboxError(f"outbox {self.path}: age cap failed: {exc}") from exc
        with self._clock:
            self._count -= len(dropped)
        if dropped:
            self._log_drop(dropped, f"max_age_s={self.max_age_s:g}")
        return len(dropped)

    def _drop(self, conn: sqlite3.Connection, select: str, args: tuple,
              delete: str) -> list[tuple]:
        """Inside an open transaction: delete the rows `select` names (same predicate in
        `delete`, so exactly those go) and add them to the persisted drop counter."""
        victims = conn.execute(select, args).fetchall()
        if victims:
            conn.execute(delete, args)
            conn.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped_total'",
                         (len(victims),))
        return victims

    def _log_drop(self, victims: list[tuple], cap: str) -> None:
        self.dropped_since_start += len(victims)
        ids = ", ".join(v[1] for v in victims[:_LOG_IDS])
        more = f" and {len(victims) - _LOG_IDS} more" if len(victims) > _LOG_IDS else ""
        log.warning("outbox %s: cap %s hit, dropped %d oldest unpublished result(s) "
                    "(%d dropped since start): event_id %s%s",
                    self.path, cap, len(victims), self.dropped_since_start, ids, more)

    # -- introspection ---------------------------------------------------------------

    def depth(self) -> int:
        with self._clock:
            return self._count

    def max_id(self) -> int:
        with self._rlock:
            return self._r.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0]

    def oldest_created(self) -> float | None:
        with self._rlock:
            return self._r.execute("SELECT MIN(created) FROM outbox").fetchone()[0]

    def dropped_total(self) -> int:
        """Rows dropped by caps over the life of the file (survives restarts)."""
        with self._rlock:
            return self._r.execute(
                "SELECT value FROM meta WHERE key = 'dropped_total'").fetchone()[0]

    def journal_mode(self) -> str:
        with self._rlock:
            return self._r.execute("PRAGMA journal_mode").fetchone()[0]

    def close(self) -> None:
        with self._wlock, self._rlock:
            for conn in (self._w, self._r):
                try:
                    conn.close()
                except sqlite3.Error:  # pragma: no cover - closing never matters
                    pass


def _rollback(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        pass


class MemoryOutbox:
    """Same interface, in memory, not durable: for the benchmark's `outbox off` column."""

    durable = False

    def __init__(self, max_rows: int = 200_000) -> None:
        self.path = None
        self.max_rows = max_rows
        self._rows: dict[int, Row] = {}
        self._next = 1
        self._lock = threading.Lock()
        self.dropped_since_start = 0

    def append(self, event_id: str, plc: str, result: str, created: float | None = None) -> int:
        with self._lock:
            row = Row(self._next, time.time() if created is None else created, event_id, plc,
                      result)
            self._rows[row.id] = row
            self._next += 1
            while len(self._rows) > self.max_rows:
                self._rows.pop(next(iter(self._rows)))
                self.dropped_since_start += 1
            return row.id

    def fetch_after(self, after_id: int, limit: int) -> list[Row]:
        out: list[Row] = []
        with self._lock:
            for i, r in self._rows.items():  # insertion order == id order
                if i > after_id:
                    out.append(r)
                    if len(out) >= limit:
                        break
        return out

    def delete(self, ids: Iterable[int]) -> int:
        with self._lock:
            return sum(self._rows.pop(i, None) is not None for i in ids)

    def enforce_age(self, now: float | None = None) -> int:
        return 0

    def depth(self) -> int:
        return len(self._rows)

    def max_id(self) -> int:
        return self._next - 1

    def oldest_created(self) -> float | None:
        with self._lock:
            return next(iter(self._rows.values())).created if self._rows else None

    def dropped_total(self) -> int:
        return self.dropped_since_start

    def close(self) -> None:
        pass
