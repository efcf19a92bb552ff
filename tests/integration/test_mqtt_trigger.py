"""The PLC's side of MQTT against a running service and a real broker: the trigger
handshake (cmd/trigger, the retained ready topic, part and request ids in result and plc),
refusals (busy, malformed, unknown camera), a broker restart between trigger and result,
cmd/thresholds, and the ISA-95 topic root. Every message is validated against its schema
by the collector."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from inspector.config.station import load_config
from inspector.outputs.mqtt.topics import Topics
from inspector.runtime.service import Service
from tests.helpers.files import write_config
from tests.helpers.mosquitto import Broker
from tests.helpers.mqtt_fixtures import Collector, dumps, needs_mosquitto, publish_raw, wait_until
from tests.helpers.standins import fast_recipe

pytestmark = [needs_mosquitto, pytest.mark.timeout(180)]
TOPICS = Topics.for_station("inspector/v1", "plant1", "line3", "st2", "acme", "press")


@dataclass
class Line:
    service: Service
    broker: Broker
    col: Collector
    recipe: Path


@pytest.fixture
def line(tmp_path: Path) -> Iterator[Line]:
    """cam0 takes a picture only when triggered; cam1 free-runs slowly (0.5 Hz), so a
    trigger for it waits for its next frame: long enough to be busy on purpose."""
    recipe = fast_recipe(tmp_path / "recipes" / "part")
    broker = Broker(tmp_path / "broker", persistence=True).start()
    cams = [{"name": "cam0", "source": {"kind": "synthetic", "width": 64, "height": 64,
                                        "triggered": True, "seed": 3}},
            {"name": "cam1", "source": {"kind": "synthetic", "width": 64, "height": 64,
                                        "rate_hz": 0.5, "seed": 4}}]
    cfg = write_config(
        tmp_path / "station.yaml", recipe, console=False, cameras=cams,
        station={"site": "plant1", "line": "line3", "station": "st2", "enterprise": "acme",
                 "area": "press"},
        mqtt={"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.2,
              "reconnect_max_s": 1.0, "outbox": {"path": "outbox.sqlite"}})
    col = Collector(broker, TOPICS, persistent=True)
    service = Service(load_config(cfg))
    service.start()
    try:
        # READY goes out after the command subscriptions: a command sent earlier has no
        # subscriber yet (fresh-clone CI runs lost a malformed trigger and a thresholds
        # command that way)
        assert wait_until(lambda: (col.last(TOPICS.ready) or {}).get("state") == "READY",
                          10), col.last(TOPICS.ready)
        yield Line(service, broker, col, recipe)
    finally:
        service.stop()
        col.stop()
        broker.stop()


def _ack(line: Line, topic: str, rid: str | None, timeout: float = 15.0) -> dict:
    assert wait_until(lambda: any(a["request_id"] == rid for a in line.col.docs(topic)),
                      timeout), f"no ack for {rid} on {topic}"
    return [a for a in line.col.docs(topic) if a["request_id"] == rid][-1]


def _ready(line: Line) -> dict | None:
    return line.col.last(TOPICS.ready)


def test_trigger_handshake_carries_the_plc_part_id(line: Line) -> None:
    assert wait_until(lambda: (_ready(line) or {}).get("state") == "READY", 10), _ready(line)
    publish_raw(line.broker, TOPICS.cmd_trigger,
                dumps({"request_id": "t-1", "part_id": "PN-4711-0001"}))
    ack = _ack(line, TOPICS.cmd_trigger_ack, "t-1")
    assert ack == {"request_id": "t-1", "ok": True, "camera": "cam0",
                   "part_id": "PN-4711-0001"}
    assert wait_until(lambda: any(r.get("request_id") == "t-1" for r in line.col.results()),
                      10)
    (res,) = [r for r in line.col.results() if r.get("request_id") == "t-1"]
    assert res["part_id"] == "PN-4711-0001" and res["camera"] == "cam0"
    assert wait_until(lambda: any(p.get("request_id") == "t-1"
                                  for p in line.col.docs(TOPICS.plc)), 10)
    (plc,) = [p for p in line.col.docs(TOPICS.plc) if p.get("request_id") == "t-1"]
    assert plc["part_id"] == "PN-4711-0001" and plc["event_id"] == res["event_id"]
    # ready went BUSY with this request, then READY again
    states = [(d["state"], d.get("request_id")) for d in line.col.docs(TOPICS.ready)]
    assert ("BUSY", "t-1") in states
    assert wait_until(lambda: _ready(line)["state"] == "READY", 10)
    # an untriggered camera's results carry no request id, and cam0 made no other part
    assert all(r["camera"] == "cam1" for r in line.col.results() if "request_id" not in r)
    assert line.col.errors == []


def _trigger_cam1(line: Line, rid: str, part_id: str) -> None:
    """Once READY, trigger the slow camera and see the trigger accepted."""
    assert wait_until(lambda: (_ready(line) or {}).get("state") == "READY", 10)
    publish_raw(line.broker, TOPICS.cmd_trigger,
                dumps({"request_id": rid, "camera": "cam1", "part_id": part_id}))
    assert _ack(line, TOPICS.cmd_trigger_ack, rid)["ok"] is True


def test_a_trigger_while_busy_gets_an_error_ack_not_a_silent_drop(line: Line) -> None:
    _trigger_cam1(line, "slow", "P-1")
    publish_raw(line.broker, TOPICS.cmd_trigger, dumps({"request_id": "eager"}))
    refused = _ack(line, TOPICS.cmd_trigger_ack, "eager")
    assert refused["ok"] is False and refused["error"].startswith("busy:")
    assert "slow" in refused["error"]
    # the first part still comes, with its ids; then the station is READY again
    assert wait_until(lambda: any(r.get("request_id") == "slow"
                                  for r in line.col.results()), 10)
    assert [r["part_id"] for r in line.col.results() if r.get("request_id") == "slow"] == [
        "P-1"]
    assert not any(r.get("request_id") == "eager" for r in line.col.results())
    assert wait_until(lambda: _ready(line)["state"] == "READY", 10)
    assert line.col.errors == []


def test_malformed_triggers_get_error_acks(line: Line) -> None:
    cases = [(b"{not json", None, "command rejected"),
             (dumps({"part_id": "x"}), None, "invalid command"),
             (dumps({"request_id": "m-1", "part_id": 7}), "m-1", "invalid command"),
             (dumps({"request_id": "m-2", "camera": "cam9"}), "m-2", "unknown camera")]
    for payload, _, _ in cases:
        publish_raw(line.broker, TOPICS.cmd_trigger, payload)
    assert wait_until(lambda: len(line.col.docs(TOPICS.cmd_trigger_ack)) >= len(cases), 15)
    acks = line.col.docs(TOPICS.cmd_trigger_ack)
    for _, rid, words in cases:
        assert any(a["request_id"] == rid and not a["ok"] and words in a["error"]
                   for a in acks), (rid, acks)
    assert line.service.pipeline.stats.counters.get("inspect_errors", 0) == 0
    assert line.col.errors == []


def test_broker_restart_between_trigger_and_result(line: Line) -> None:
    _trigger_cam1(line, "r-1", "P-R")
    line.broker.stop()  # before cam1's next frame: the result is made while it is away
    assert wait_until(lambda: not line.service.mqtt.connected, 10)
    assert wait_until(lambda: line.service.trigger_desk.state()["state"] == "READY", 10)
    time.sleep(0.5)
    line.broker.start()
    assert wait_until(lambda: any(r.get("request_id") == "r-1"
                                  for r in line.col.results()), 30)
    (res,) = {r["event_id"]: r for r in line.col.results()
              if r.get("request_id") == "r-1"}.values()
    assert res["part_id"] == "P-R"
    assert line.col.errors == []


def test_thresholds_command_saves_a_new_rev_or_changes_nothing(line: Line) -> None:
    before = line.service.pipeline.active.recipe
    publish_raw(line.broker, TOPICS.cmd_thresholds,
                dumps({"request_id": "th-bad", "classes": {"dent": {"threshold": 0.9}}}))
    bad = _ack(line, TOPICS.cmd_thresholds_ack, "th-bad")
    assert bad["ok"] is False and "dent" in bad["error"]
    assert line.service.pipeline.active.recipe.sha256 == before.sha256
    publish_raw(line.broker, TOPICS.cmd_thresholds,
                dumps({"request_id": "th-range", "classes": {"pit": {"threshold": 1.5}}}))
    assert _ack(line, TOPICS.cmd_thresholds_ack, "th-range")["ok"] is False
    publish_raw(line.broker, TOPICS.cmd_thresholds,
                dumps({"request_id": "th-1", "classes": {"pit": {"threshold": 0.8,
                                                                  "min_area_mm2": 0.2}}}))
    ack = _ack(line, TOPICS.cmd_thresholds_ack, "th-1", timeout=60)
    assert ack["ok"] is True and ack["recipe"]["rev"] == before.rev + 1
    saved = yaml.safe_load((line.recipe / "recipe.yaml").read_text())
    pit = next(c for c in saved["classes"] if c["name"] == "pit")
    assert (saved["rev"], pit["threshold"], pit["min_area_mm2"]) == (before.rev + 1, 0.8, 0.2)
    assert line.service.pipeline.active.recipe.sha256 == ack["recipe"]["sha256"]
    state = json.loads(json.dumps(line.col.last(TOPICS.state)))
    assert state["recipe"]["rev"] == before.rev + 1
    assert line.col.errors == []
