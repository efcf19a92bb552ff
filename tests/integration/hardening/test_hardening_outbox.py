"""Issue 16, deliverable 1: a result is either durably committed or the station is
visibly not OK; a damaged outbox is found at start and by `inspector validate`, and
`inspector outbox salvage` keeps its rows.

Real mosquitto, real SQLite files, a real small tmpfs for the full disk, and an
independent subscriber counting event ids.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import pytest

from inspector.outputs.mqtt.outbox import Outbox, OutboxDamaged
from inspector.outputs.mqtt.sink import MqttSink
from inspector.runtime.control import call
from inspector.runtime.service import control_path
from tests.helpers.hardening import Running, cli, fill, small_disk, station_config
from tests.helpers.mosquitto import Broker
from tests.helpers.mqtt_fixtures import (
    LINE,
    SITE,
    STATION,
    TOPICS,
    Collector,
    config,
    make_result,
    needs_mosquitto,
    wait_until,
)
from tests.helpers.notify_listener import Listener

pytestmark = [needs_mosquitto, pytest.mark.timeout(120)]


def test_full_disk_holds_results_reports_fault_and_publishes_all_after_space_is_freed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notify = Listener(tempfile.mkdtemp(prefix="ntf", dir="/tmp") + "/n.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", notify.address)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    with Broker(tmp_path / "broker") as broker, small_disk(tmp_path / "disk") as disk:
        sub = Collector(broker)
        cfg = station_config(tmp_path, broker.port, disk / "state",
                             supervisor={"outbox_fault_s": 2.0})
        run = Running(cfg)
        try:
            assert wait_until(lambda: len(sub.results()) >= 3, 60)
            filler = fill(disk)
            assert wait_until(lambda: run.svc.mqtt.fault is not None, 30), "no fault"
            assert "full" in run.svc.mqtt.fault
            assert wait_until(lambda: len(run.svc.mqtt.pending) >= 3, 20)
            # health, `inspector status`, the retained status topic and sd_notify say so
            # (the supervisor looks every 0.2 s)
            assert wait_until(lambda: not run.svc.supervisor.healthy, 5)
            answer = call(control_path(run.svc.cfg), {"cmd": "status"}, timeout=5)
            health, ob = answer["stats"]["health"], answer["stats"]["outbox"]
            assert health["ok"] is False and any("full" in p for p in health["problems"])
            assert ob["pending"] >= 3 and "full" in ob["fault"]
            assert cli("status", "--config", str(cfg)) == 1
            assert wait_until(lambda: sub.last(TOPICS.status) == "fault", 10)
            assert notify.wait_for(lambda m: "STATUS=FAULT" in m and "full" in m, 10)
            # it lasts: the watchdog is no longer fed (systemd would restart the service)
            assert wait_until(lambda: run.svc.supervisor.figures()["watchdog_fed"] is False, 10)
            t_withheld = time.monotonic()
            time.sleep(1.5)
            assert not [m for t, m in notify.all() if t > t_withheld and m == "WATCHDOG=1"]
            held = len(run.svc.mqtt.pending)
            filler.unlink()  # space freed: everything held is committed and published
            assert wait_until(lambda: run.svc.mqtt.fault is None, 20)
            assert len(run.svc.mqtt.pending) == 0
            assert wait_until(lambda: sub.last(TOPICS.status) == "online", 10)
            time.sleep(0.5)
        finally:
            run.stop()
            notify.close()
        made = set(run.made)
        assert wait_until(lambda: made <= sub.event_ids(), 20), len(made - sub.event_ids())
        print(f"NOW full disk: {held} result(s) held while full, {len(made)} made, "
              f"{len(made & sub.event_ids())} published, health/status/STATUS= showed the fault")
        sub.stop()
        assert sub.errors == []
        assert run.svc.pipeline.stats.get("sink_errors") == 0


def test_emit_holds_the_result_thread_when_the_memory_buffer_is_full(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker") as broker, small_disk(tmp_path / "disk") as disk:
        sub = Collector(broker)
        cfg = config(broker, tmp_path, outbox={"path": str(disk / "o.sqlite"),
                                               "pending_max": 3, "retry_s": 0.1})
        sink = MqttSink(cfg, SITE, LINE, STATION, "sess-full")
        try:
            sent = [make_result("sess-full", i) for i in range(40)]
            sink.emit(sent[0])
            filler = fill(disk)
            done = threading.Event()

            def produce() -> None:
                for r in sent[1:]:
                    sink.emit(r)
                done.set()

            t = threading.Thread(target=produce, daemon=True)
            t.start()
            assert wait_until(lambda: sink.pending.full(), 20)
            assert not done.wait(1.0), "emit returned although nothing could be kept"
            filler.unlink()
            assert done.wait(20)
            assert wait_until(lambda: sub.event_ids() >= {r.event_id for r in sent}, 20)
        finally:
            sink.close()
        sub.stop()
        assert sub.errors == []


def _foreign(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, payload TEXT)")
    conn.executemany("INSERT INTO outbox (payload) VALUES (?)", [("x",)] * 38)
    conn.commit()
    conn.close()


def test_foreign_schema_outbox_is_refused_by_validate_and_run_and_salvaged(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with Broker(tmp_path / "broker") as broker:
        state = tmp_path / "state"
        cfg = station_config(tmp_path, broker.port, state)
        _foreign(state / "outbox.sqlite")
        with pytest.raises(OutboxDamaged, match="salvage"):
            Outbox(state / "outbox.sqlite")
        assert cli("validate", str(cfg)) == 1
        err = capsys.readouterr().err
        assert "mqtt.outbox.path" in err and "columns" in err and "outbox salvage" in err
        assert cli("run", "--config", str(cfg)) == 2
        assert "outbox salvage" in capsys.readouterr().err
        assert not (state / "control.sock").exists()
        assert cli("outbox", "salvage", "--config", str(cfg)) == 0
        assert "0 row(s) kept" in capsys.readouterr().out
        assert list(state.glob("outbox.sqlite.damaged-*"))
        assert cli("validate", str(cfg)) == 0
        sub = Collector(broker)
        run = Running(cfg)
        try:
            assert wait_until(lambda: len(sub.results()) >= 5, 60)
        finally:
            run.stop()
        assert wait_until(lambda: set(run.made) <= sub.event_ids(), 20)
        print(f"NOW foreign schema: validate and run refuse with the salvage command; after "
              f"salvage {len(run.made)} made, all published")
        sub.stop()


def test_corrupt_outbox_salvage_keeps_readable_rows_and_replays_them(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with Broker(tmp_path / "broker") as broker:
        state = tmp_path / "state"
        cfg = station_config(tmp_path, broker.port, state)
        ob = Outbox(state / "outbox.sqlite")
        sent = [make_result("sess-old", i) for i in range(300)]
        for r in sent:
            ob.append(r.event_id, json.dumps({"part_id": r.part_id, "ok": True, "code": 0,
                                              "seq": r.seq}), json.dumps(r.payload()))
        ob.close()
        raw = bytearray((state / "outbox.sqlite").read_bytes())
        mid = (len(raw) // 4096 // 2) * 4096
        raw[mid: mid + 200] = b"\xff" * 200  # one damaged b-tree page in the middle
        (state / "outbox.sqlite").write_bytes(bytes(raw))
        assert cli("validate", str(cfg)) == 1
        assert "outbox salvage" in capsys.readouterr().err
        assert cli("outbox", "salvage", "--config", str(cfg)) == 0
        out = capsys.readouterr().out
        kept = Outbox(state / "outbox.sqlite")
        n = kept.depth()
        kept.close()
        assert 0 < n <= 300, out
        sub = Collector(broker)
        run = Running(cfg)
        try:
            assert wait_until(lambda: len({r["event_id"] for r in sub.results()
                                           if r["session"] == "sess-old"}) == n, 30)
        finally:
            run.stop()
        old = [r for r in sub.results() if r["session"] == "sess-old"]
        assert all(r["replayed"] for r in old)
        print(f"NOW corrupt outbox: salvage kept {n} of 300 rows, all replayed")
        sub.stop()


def test_read_only_state_dir_is_found_by_validate_and_run_exits_cleanly(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with small_disk(tmp_path / "ro", size="1m", ro=True) as ro:
        cfg = station_config(tmp_path, 1, ro / "state")
        assert cli("validate", str(cfg)) == 1
        err = capsys.readouterr().err
        assert "storage.state_dir" in err and "not writable" in err
        assert cli("run", "--config", str(cfg)) == 2
        err = capsys.readouterr().err
        assert "Read-only file system" in err and "Traceback" not in err
        print("NOW read-only state dir: validate names storage.state_dir and the fix; run "
              "exits 2 with the cause, no traceback")
