"""No result is lost: broker restarted mid-stream, publisher killed with SIGKILL.

Both run against a real mosquitto; the subscriber keeps a persistent session on a
persistent broker, so what it misses while the broker restarts is queued for it.
"""

from __future__ import annotations

import collections
import json
import sqlite3
import time
from pathlib import Path

import pytest

from inspector.outputs.mqtt.sink import MqttSink
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
from tests.helpers.mqtt_proc import kill_after, spawn

pytestmark = needs_mosquitto
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_broker_stopped_mid_stream_every_event_arrives(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", persistence=True).start()
    col = Collector(broker, persistent=True)
    sink = MqttSink(config(broker, tmp_path), SITE, LINE, STATION, "sess-r")
    emitted: list[str] = []
    try:
        for seq in range(2000):
            if seq == 700:
                broker.stop()  # SIGTERM: the broker saves its queues and goes away
                assert wait_until(lambda: not sink.connected, 10)
            if seq == 1400:
                time.sleep(0.5)  # still down: the outbox keeps everything
                assert sink.outbox.depth() >= 700
                broker.start()
            result = make_result("sess-r", seq)
            sink.emit(result)
            emitted.append(result.event_id)
            if seq % 20 == 0:
                time.sleep(0.002)  # a line's pace, not a tight loop
        assert wait_until(lambda: set(emitted) <= col.event_ids(), 60), (
            f"missing {len(set(emitted) - col.event_ids())} of {len(emitted)}")
        assert wait_until(lambda: sink.outbox.depth() == 0, 20)
        assert col.errors == []
        # Extra copies are either our replays (marked) or the broker re-delivering to the
        # subscriber what it had not acknowledged before the restart (MQTT DUP flag).
        copies = collections.defaultdict(list)
        with col.lock:
            for t, p, _, dup in col.messages:
                if t == TOPICS.result:
                    copies[json.loads(p)["event_id"]].append(json.loads(p)["replayed"] or dup)
        assert all(len(flags) == 1 or sum(flags) >= len(flags) - 1 for flags in copies.values())
        assert {p["seq"] for p in col.docs(TOPICS.plc)} == set(range(2000))
    finally:
        sink.close()
        col.stop()
        broker.stop()


@pytest.mark.timeout(120)
def test_kill_9_mid_stream_every_committed_result_arrives(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    with Broker(tmp_path / "broker") as broker:
        col = Collector(broker)
        first = spawn(broker.port, outbox, "run-1", 100_000)
        committed = kill_after(first, 1000)
        # The broker noticed the dead connection and published the last will.
        assert wait_until(lambda: col.last(TOPICS.status) == "offline", 15)
        with sqlite3.connect(outbox) as db:  # what the crash left behind, unacknowledged
            pending = {r[0] for r in db.execute("SELECT event_id FROM outbox")}
        print(f"{len(committed)} committed, {len(pending)} unacknowledged at the kill")
        before = len(col.messages)

        second = spawn(broker.port, outbox, "run-2", 0)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        assert "drained" in out.split()
        assert wait_until(lambda: set(committed) <= col.event_ids(), 20), (
            f"missing {len(set(committed) - col.event_ids())} of {len(committed)}")
        with col.lock:
            replays = [json.loads(p) for t, p, *_ in col.messages[before:] if t == TOPICS.result]
        assert all(r["replayed"] is True and r["session"] == "run-1" for r in replays)
        assert pending <= {r["event_id"] for r in replays}  # the leftovers went out again
        assert col.last(TOPICS.status) == "stopped"
        assert col.errors == []
        col.stop()
