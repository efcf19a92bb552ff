"""The durable outbox: WAL, order, deletes, caps with counted and logged drops."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from inspector.outputs.mqtt.outbox import MemoryOutbox, Outbox, OutboxError

pytestmark = pytest.mark.timeout(30)


def fill(ob: Outbox | MemoryOutbox, n: int, start: int = 0, created: float | None = None) -> list:
    return [ob.append(f"ev{i:04d}", f'{{"seq":{i}}}', f'{{"seq":{i},"replayed":false}}',
                      created=created) for i in range(start, start + n)]


def test_wal_and_commit_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.sqlite"
    ob = Outbox(path)
    assert ob.journal_mode() == "wal"
    ids = fill(ob, 5)
    assert ids == sorted(ids) and len(set(ids)) == 5
    # A second, independent reader sees the rows as soon as append() returned: committed.
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == 5
    other.close()
    ob.close()
    again = Outbox(path)
    assert again.depth() == 5
    assert [r.event_id for r in again.fetch_after(0, 100)] == [f"ev{i:04d}" for i in range(5)]
    assert again.max_id() == ids[-1]


def test_fetch_after_is_ordered_and_paged(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    ids = fill(ob, 10)
    page1 = ob.fetch_after(0, 4)
    page2 = ob.fetch_after(page1[-1].id, 4)
    page3 = ob.fetch_after(page2[-1].id, 4)
    assert [r.id for r in page1 + page2 + page3] == ids
    assert page1[0].plc == '{"seq":0}' and page1[0].result.endswith('"replayed":false}')


def test_delete_only_acknowledged_rows(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite")
    ids = fill(ob, 6)
    assert ob.delete([ids[1], ids[3]]) == 2
    assert ob.delete([ids[1]]) == 0  # a second PUBACK for the same row changes nothing
    assert ob.depth() == 4
    assert [r.id for r in ob.fetch_after(0, 10)] == [ids[0], ids[2], ids[4], ids[5]]
    # ids are never reused, so a publisher cursor stays valid after deletes
    ob.delete([ids[5]])
    assert fill(ob, 1, start=6)[0] > ids[5]


def test_row_cap_drops_oldest_counts_and_logs(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "o.sqlite"
    ob = Outbox(path, max_rows=10)
    with caplog.at_level(logging.WARNING, logger="inspector.outputs.mqtt.outbox"):
        fill(ob, 15)
    assert ob.depth() == 10
    assert [r.event_id for r in ob.fetch_after(0, 100)] == [f"ev{i:04d}" for i in range(5, 15)]
    assert ob.dropped_total() == 5 and ob.dropped_since_start == 5
    logged = " ".join(r.getMessage() for r in caplog.records)
    for i in range(5):
        assert f"ev{i:04d}" in logged  # every dropped event is named
    assert "max_rows=10" in logged
    ob.close()
    assert Outbox(path, max_rows=10).dropped_total() == 5  # the counter is persisted


def test_age_cap_drops_exactly_the_old_rows(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    ob = Outbox(tmp_path / "o.sqlite", max_age_s=60)
    now = time.time()
    fill(ob, 2, start=0, created=now)
    fill(ob, 3, start=2, created=now - 3600)  # newer ids, older clock (a clock step back)
    fill(ob, 1, start=5, created=now)
    with caplog.at_level(logging.WARNING, logger="inspector.outputs.mqtt.outbox"):
        assert ob.enforce_age(now) == 3
    assert [r.event_id for r in ob.fetch_after(0, 10)] == ["ev0000", "ev0001", "ev0005"]
    assert ob.depth() == 3 and ob.dropped_total() == 3
    assert "max_age_s=60" in caplog.text and "ev0003" in caplog.text
    assert ob.enforce_age(now) == 0


def test_depth_stays_exact_under_concurrent_append_and_delete(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", max_rows=150, synchronous="NORMAL")
    stop = threading.Event()

    def deleter() -> None:
        cursor = 0
        while not stop.is_set():
            rows = ob.fetch_after(cursor, 7)
            if rows:
                cursor = rows[-1].id
                ob.delete(r.id for r in rows[::2])

    t = threading.Thread(target=deleter)
    t.start()
    fill(ob, 600)
    stop.set()
    t.join(10)
    real = sqlite3.connect(ob.path).execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    assert ob.depth() == real <= 150


def test_unusable_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    with pytest.raises(OutboxError, match="adir"):
        Outbox(tmp_path / "adir")


def test_memory_outbox_same_contract() -> None:
    ob = MemoryOutbox(max_rows=5)
    ids = fill(ob, 7)
    assert ob.depth() == 5 and ob.dropped_total() == 2
    assert [r.id for r in ob.fetch_after(ids[3], 10)] == ids[4:]
    assert ob.delete([ids[4], ids[4]]) == 1
    assert ob.max_id() == ids[-1]
