"""MqttSink against a real mosquitto: contract, outbox replay, credentials, TLS, commands.

Every message the test subscriber receives is validated against its JSON Schema.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.outputs.mqtt.sink import MqttSink
from tests.helpers.mosquitto import Broker, Certs, free_port, make_certs
from tests.helpers.mqtt_fixtures import (
    LINE,
    SITE,
    STATION,
    TOPICS,
    Collector,
    config,
    dumps,
    make_result,
    needs_mosquitto,
    publish_raw,
    wait_until,
)

pytestmark = [needs_mosquitto, pytest.mark.timeout(60)]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("pki"))


def sink_for(cfg, **kw) -> MqttSink:
    return MqttSink(cfg, SITE, LINE, STATION, kw.pop("session", "sess-a"), **kw)


def test_contract_plc_first_retained_state_and_clean_stop(broker: Broker, tmp_path: Path) -> None:
    col = Collector(broker)
    sink = sink_for(config(broker, tmp_path))
    state = {"recipe": {"id": "test-part", "rev": 3, "sha256": "ab" * 32},
             "mode": "inspecting", "since": time.time()}
    sink.state_changed(state)
    sink.camera_status("cam0", "online")
    sink.camera_status("cam1", "disabled")
    with pytest.raises(ValueError):
        sink.camera_status("cam0", "broken")
    results = [make_result("sess-a", i) for i in range(40)]
    for r in results:
        sink.emit(r)
    assert wait_until(lambda: len(col.event_ids()) == 40, 20)
    assert wait_until(lambda: sink.outbox.depth() == 0, 10)  # deleted after PUBACK
    sink.publish_stats({"fps": 12.5, "uptime_s": 3.0, "counters": {"frames": 40},
                        "latency_ms": {"infer": {"p50": 11.0, "p99": 19.0, "max": 25.0}}})
    assert wait_until(lambda: col.count(TOPICS.stats) == 1, 10)
    sink.close()
    assert wait_until(lambda: col.last(TOPICS.status) == "stopped", 10)

    assert col.errors == []
    assert col.docs(TOPICS.status) == ["online", "stopped"]
    assert col.last(TOPICS.state) == state
    assert col.last(TOPICS.camera_status("cam1")) == "disabled"
    got = col.results()
    assert [r["seq"] for r in got] == list(range(40))  # in order, none replayed
    assert all(r["replayed"] is False for r in got) and got[7] == results[7].payload()
    plcs = col.docs(TOPICS.plc)
    assert plcs[4] == {"part_id": "P000004", "ok": False, "code": 11, "seq": 4,
                       "event_id": results[4].event_id, "session": results[4].session,
                       "replayed": False}
    with col.lock:
        order = [(t, json.loads(p)["seq"]) for t, p, *_ in col.messages
                 if t in (TOPICS.plc, TOPICS.result)]
    for seq in range(40):  # the PLC hears about each part before the full result goes out
        assert order.index((TOPICS.plc, seq)) < order.index((TOPICS.result, seq))
    stats = col.last(TOPICS.stats)
    assert stats["outbox"]["depth"] == 0 and stats["session"] == "sess-a"
    col.stop()

    late = Collector(broker)  # a dashboard that connects later sees the retained topics
    assert wait_until(lambda: late.count(TOPICS.state) == 1, 5)
    with late.lock:
        retained = {t: p for t, p, r, _ in late.messages if r}
    assert retained[TOPICS.status] == b"stopped"
    assert json.loads(retained[TOPICS.state]) == state
    assert retained[TOPICS.camera_status("cam0")] == b"online"
    assert late.errors == []
    late.stop()


def test_broker_down_at_start_then_up(tmp_path: Path) -> None:
    # The subscriber's durable session is registered first, then the broker goes away and
    # the sink starts with nothing listening. When the broker comes back, the sink may
    # publish before the subscriber has reconnected: its saved session keeps the messages.
    b = Broker(tmp_path / "broker", persistence=True).start()
    col = Collector(b, persistent=True)
    b.stop()
    sink = sink_for(config(b, tmp_path))
    try:
        t0 = time.monotonic()
        for i in range(30):
            sink.emit(make_result("sess-a", i))  # returns at once: committed, not sent
        assert time.monotonic() - t0 < 2.0
        assert sink.outbox.depth() == 30
        assert wait_until(lambda: sink.last_error is not None, 10)
        assert "connect failed: Connection refused" in sink.last_error
        assert str(b.port) in sink.last_error
        b.start()
        assert wait_until(lambda: sink.outbox.depth() == 0, 20)
        assert wait_until(lambda: len(col.event_ids()) == 30, 10)
        assert sink.connected and sink.last_error is None
        assert col.errors == []
    finally:
        col.stop()
        sink.close()
        b.stop()


def test_restart_replays_outbox_with_flag(broker: Broker, tmp_path: Path) -> None:
    down = config(broker, tmp_path, port=free_port())  # a port where no broker listens
    first = sink_for(down, session="run-1")
    sent = [make_result("run-1", i) for i in range(25)]
    for r in sent:
        first.emit(r)
    first.close()  # not connected: nothing published, everything stays committed
    col = Collector(broker)
    second = sink_for(config(broker, tmp_path), session="run-2")
    try:
        assert wait_until(lambda: len(col.event_ids()) == 25, 20)
        got = {r["event_id"]: r for r in col.results()}
        for r in sent:
            assert got[r.event_id] == {**r.payload(), "replayed": True}
        assert wait_until(lambda: second.outbox.depth() == 0, 10)
        assert col.errors == []
    finally:
        second.close()
        col.stop()


def test_refused_credentials_keep_results_until_fixed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good, bad = "corr3ct-Horse-batt", "wr0ng-Pa55word-x"
    with Broker(tmp_path / "broker", passwords={"inspector": good, "mes": "mes-pw"}) as b:
        col = Collector(b, username="mes", password="mes-pw")
        pw = tmp_path / "mqtt.pw"
        pw.write_text(bad + "\n")
        cfg = config(b, tmp_path, username="inspector", password_file=str(pw))
        with caplog.at_level(logging.DEBUG):
            sink = sink_for(cfg)
            try:
                for i in range(20):
                    sink.emit(make_result("sess-a", i))
                assert wait_until(lambda: sink.last_error is not None, 10)
                err = sink.last_error
                assert "refused" in err and ("user name or password" in err
                                             or "authorized" in err), err
                assert str(pw) in err
                time.sleep(1.0)
                assert sink.outbox.depth() == 20 and col.count(TOPICS.result) == 0
                pw.write_text(good + "\n")  # fixed: read again on the next attempt
                assert wait_until(lambda: len(col.event_ids()) == 20, 20)
                assert wait_until(lambda: sink.outbox.depth() == 0, 10)
                assert sink.last_error is None
            finally:
                sink.close()
        assert good not in caplog.text and bad not in caplog.text
        assert "refused" in caplog.text
        assert col.errors == []
        col.stop()


@pytest.mark.parametrize("mutual", [False, True], ids=["ca", "ca+client-cert"])
def test_tls(tmp_path: Path, certs: Certs, mutual: bool) -> None:
    with Broker(tmp_path / "broker", certs=certs) as b:
        col = Collector(b)
        tls = {"ca": str(certs.ca)}
        if mutual:
            tls |= {"cert": str(certs.client_cert), "key": str(certs.client_key)}
        cfg = config(b, tmp_path, port=b.mtls_port if mutual else b.tls_port, tls=tls)
        sink = sink_for(cfg)
        try:
            for i in range(10):
                sink.emit(make_result("sess-a", i))
            assert wait_until(lambda: len(col.event_ids()) == 10, 15), sink.last_error
            assert col.errors == []
        finally:
            sink.close()
            col.stop()


@pytest.mark.parametrize("case", ["wrong-ca", "no-client-cert"])
def test_tls_failures_are_explained(tmp_path: Path, certs: Certs, case: str) -> None:
    with Broker(tmp_path / "broker", certs=certs) as b:
        if case == "wrong-ca":
            cfg = config(b, tmp_path, port=b.tls_port, tls={"ca": str(certs.other_ca)})
            expect = "certificate verify failed"
        else:
            cfg = config(b, tmp_path, port=b.mtls_port, tls={"ca": str(certs.ca)})
            expect = "certificate"
        sink = sink_for(cfg)
        try:
            sink.emit(make_result("sess-a", 0))
            assert wait_until(lambda: sink.last_error is not None, 15)
            assert expect in sink.last_error.lower(), sink.last_error
            assert not sink.connected and sink.outbox.depth() == 1
        finally:
            sink.close()


def test_recipe_commands(broker: Broker, tmp_path: Path) -> None:
    publish_raw(broker, TOPICS.cmd_recipe, dumps(
        {"request_id": "stale", "recipe_id": "gear"}), retain=True)
    calls: list[tuple[str, int | None, str]] = []

    def handler(recipe_id: str, rev: int | None) -> dict:
        calls.append((recipe_id, rev, threading.current_thread().name))
        if recipe_id != "gear":
            raise FileNotFoundError(f"unknown recipe {recipe_id!r}")
        return {"id": "gear", "rev": 4, "sha256": "cd" * 32}

    col = Collector(broker)
    sink = sink_for(config(broker, tmp_path), recipe_handler=handler)
    try:
        assert wait_until(lambda: sink.connected, 10)
        time.sleep(0.5)  # the retained command has been delivered by now, and ignored
        assert calls == [] and col.count(TOPICS.cmd_recipe_ack) == 0
        publish_raw(broker, TOPICS.cmd_recipe, dumps(  # retained while we are subscribed
            {"request_id": "stale2", "recipe_id": "gear"}), retain=True)
        publish_raw(broker, TOPICS.cmd_recipe, b"{oops")
        publish_raw(broker, TOPICS.cmd_recipe, dumps({"request_id": "m1"}))
        publish_raw(broker, TOPICS.cmd_recipe, dumps({"request_id": "u1", "recipe_id": "nut"}))
        publish_raw(broker, TOPICS.cmd_recipe, dumps(
            {"request_id": "ok1", "recipe_id": "gear", "rev": 4}))
        assert wait_until(lambda: col.count(TOPICS.cmd_recipe_ack) == 4, 10)
        acks = {a["request_id"]: a for a in col.docs(TOPICS.cmd_recipe_ack)}
        assert set(acks) == {None, "m1", "u1", "ok1"}
        assert "malformed JSON" in acks[None]["error"]
        assert "recipe_id" in acks["m1"]["error"] and acks["m1"]["ok"] is False
        assert acks["u1"] == {"request_id": "u1", "ok": False, "error": "unknown recipe 'nut'"}
        assert acks["ok1"] == {"request_id": "ok1", "ok": True,
                               "recipe": {"id": "gear", "rev": 4, "sha256": "cd" * 32}}
        assert calls == [("nut", None, "mqtt-commands"), ("gear", 4, "mqtt-commands")]
        assert sink.commands.ignored_retained == 2
        assert col.errors == []
    finally:
        sink.close()
        col.stop()


def test_mqtt_311_works_too(broker: Broker, tmp_path: Path) -> None:
    col = Collector(broker)
    sink = sink_for(config(broker, tmp_path, protocol=311))
    try:
        for i in range(20):
            sink.emit(make_result("sess-a", i))
        assert wait_until(lambda: len(col.event_ids()) == 20, 15)
        assert wait_until(lambda: sink.outbox.depth() == 0, 10)
        assert col.errors == []
    finally:
        sink.close()
        col.stop()


def test_outbox_cap_while_broker_down_drops_oldest_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    b = Broker(tmp_path / "broker", persistence=True).start()
    col = Collector(b, persistent=True)  # its durable session outlives the outage below
    b.stop()
    cfg = config(b, tmp_path, outbox={"path": str(tmp_path / "o.sqlite"), "max_rows": 10})
    sink = sink_for(cfg)
    try:
        with caplog.at_level(logging.WARNING, logger="inspector.outputs.mqtt.outbox"):
            sent = [make_result("sess-a", i) for i in range(15)]
            for r in sent:
                sink.emit(r)
        assert sink.outbox.depth() == 10 and sink.outbox.dropped_total() == 5
        assert all(r.event_id in caplog.text for r in sent[:5])  # each drop is named
        b.start()
        assert wait_until(lambda: sink.outbox.depth() == 0, 20)
        assert wait_until(lambda: len(col.event_ids()) == 10, 10)
        assert sorted(r["seq"] for r in col.results()) == list(range(5, 15))
        sink.publish_stats({"fps": 0.0})
        assert wait_until(lambda: col.count(TOPICS.stats) == 1, 10)
        assert col.last(TOPICS.stats)["outbox"] == {
            "depth": 0, "dropped": 5, "oldest_age_s": None, "connected": True, "pending": 0,
            "fault": None}
        assert col.errors == []
    finally:
        col.stop()
        sink.close()
        b.stop()
