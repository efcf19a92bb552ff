"""Sparkplug B mode against a real broker, read by a host that decodes with protoc's C++
implementation (tests/helpers/sparkplug_host.py), not with the station's encoder.

Checked on every message the host saw (`check_rules`): births before data, NBIRTH seq 0
and DBIRTH seq 1, seq +1 mod 256 over NBIRTH/DBIRTH/NDATA/DDATA, bdSeq of NBIRTH equal
to the NDEATH of the same connection, +1 per connection (kept across restarts), data
metrics declared in the last DBIRTH with the same datatype, QoS 0 and no retain on data
and births, and every JSON inside (Result/Json, Stats/Json, Command/Ack, spb/sync)
valid against its schema.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from inspector.config.station import load_config
from inspector.demo.local_broker import Broker
from inspector.outputs.mqtt import schemas
from inspector.outputs.mqtt.sink import MqttSink
from inspector.outputs.mqtt.sparkplug.metrics import DEVICE_METRICS, NODE_METRICS
from inspector.outputs.mqtt.topics import Topics
from inspector.runtime.service import Service
from tests.helpers.files import RECIPE, write_config, write_recipe
from tests.helpers.mqtt_fixtures import (
    LINE,
    SHA,
    SITE,
    STATION,
    TOPICS,
    config,
    make_result,
    needs_mosquitto,
    wait_until,
)
from tests.helpers.mqtt_proc import kill_after, spawn
from tests.helpers.sparkplug_host import Host, Seen, encode, metric_values, raw_fields

pytestmark = [needs_mosquitto, pytest.mark.timeout(180)]
GROUP, NODE, DEVICE = "plant1", "line3-st2", "vision"
# the service test's station: enterprise acme, so group acme-plant1; its own device name
G2, N2, D2 = "acme-plant1", "line3-st2", "cam-station"
TOPICS2 = Topics.for_station("inspector/v1", "plant1", "line3", "st2", "acme")
JSON_METRICS = {"Result/Json": "result", "Stats/Json": "stats", "Command/Ack": "spb_command_ack"}


def check_rules(seen: list[Seen], group: str = GROUP, node: str = NODE,
                device: str = DEVICE, topics: Topics = TOPICS) -> list[int]:
    """Assert the Sparkplug rules over one station's messages in arrival order; returns
    the bdSeq of each connection (NBIRTH) seen."""
    births: list[int] = []
    expect_seq: int | None = None
    declared: dict[str, int] = {}
    last_bd: int | None = None
    for s in seen:
        if not s.sparkplug:
            assert s.topic == topics.spb_sync, s.topic
            doc = json.loads(s.payload)
            assert schemas.first_error("spb_sync", doc) is None, doc
            continue
        if s.type in ("NCMD", "DCMD"):
            continue  # the host's own commands
        p = s.decoded()
        values = metric_values(p)
        kinds = {m.name: m.datatype for m in p.metrics}
        node_topic = f"spBv1.0/{group}/{s.type}/{node}"
        if s.type == "NDEATH":
            assert s.topic == node_topic and s.qos == 1 and not s.retain
            assert not p.HasField("seq"), "NDEATH carries no seq"
            assert set(values) == {"bdSeq"} and kinds["bdSeq"] == 8
            assert values["bdSeq"] == last_bd, (values, last_bd)
            expect_seq = None  # data only after the next NBIRTH
            continue
        assert s.qos == 0 and not s.retain, (s.topic, s.qos, s.retain)
        assert p.HasField("seq") and p.HasField("timestamp")
        if s.type == "NBIRTH":
            assert s.topic == node_topic
            assert p.seq == 0
            assert {n: kinds[n] for n in NODE_METRICS} == {n: int(t) for n, t in
                                                            NODE_METRICS.items()}
            assert values["Node Control/Rebirth"] is False
            last_bd = int(values["bdSeq"])
            births.append(last_bd)
            expect_seq = 1
            continue
        assert expect_seq is not None, f"{s.type} before NBIRTH"
        assert p.seq == expect_seq, (s.type, p.seq, expect_seq)
        expect_seq = (expect_seq + 1) % 256
        if s.type == "DBIRTH":
            assert s.topic == f"spBv1.0/{group}/DBIRTH/{node}/{device}"
            declared = kinds
            assert all(declared[n] == int(t) for n, t in DEVICE_METRICS.items())
        elif s.type == "DDATA":
            assert s.topic == f"spBv1.0/{group}/DDATA/{node}/{device}"
            for name, dt in kinds.items():
                assert declared.get(name) == dt, f"DDATA metric {name} ({dt}) not in DBIRTH"
        else:
            assert s.type == "NDATA" and set(values) <= set(NODE_METRICS)
        for name, schema in JSON_METRICS.items():
            if values.get(name) is not None:
                doc = json.loads(str(values[name]))
                assert schemas.first_error(schema, doc) is None, (name, doc)
    return births


def ddata_values(host: Host, name: str) -> list[object]:
    out = []
    for s in host.messages("DDATA"):
        v = metric_values(s.decoded())
        if name in v:
            out.append(v[name])
    return out


def test_births_data_sequence_and_clean_death(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker") as broker:
        host = Host(broker, TOPICS.root)
        sink = MqttSink(config(broker, tmp_path, mode="sparkplug"), SITE, LINE, STATION,
                        "sess-a", state_dir=tmp_path)
        try:
            sink.state_changed({"recipe": {"id": "test-part", "rev": 3, "sha256": SHA},
                                "mode": "run", "since": time.time()})
            sink.ready_changed({"state": "READY", "ts": time.time()})
            results = [make_result("sess-a", i) for i in range(300)]  # seq wraps past 255
            for r in results:
                sink.emit(r)
            assert wait_until(lambda: sink.outbox.depth() == 0, 30)
            assert wait_until(lambda: len(ddata_values(host, "Result/EventId")) == 300, 20)
            sink.camera_status("cam0", "online")  # a metric the births did not declare
            assert wait_until(lambda: len(host.messages("NBIRTH")) == 2, 10)
            sink.publish_stats({"fps": 2.0, "counters": {"results": 300, "ok": 240, "ng": 60},
                                "latency_ms": {"total": {"p50": 15.0, "p99": 20.0}}})
            assert wait_until(lambda: ddata_values(host, "Stats/Json"), 10)
        finally:
            sink.close()
        assert wait_until(lambda: host.messages("NDEATH"), 10)
        host.stop()
    seen = host.messages()
    assert check_rules(seen) == [0, 0]  # one connection; the rebirth keeps its bdSeq
    assert ddata_values(host, "Result/EventId") == [r.event_id for r in results]
    verdicts = ddata_values(host, "Result/Verdict")
    assert verdicts == [r.verdict for r in results]
    assert ddata_values(host, "Result/Code") == [r.code for r in results]
    assert ddata_values(host, "Rates/RejectRate") == [0.2]
    assert (ddata_values(host, "Counters/NG"), ddata_values(host, "Latency/TotalP99Ms")) == (
        [60], [20.0])
    dbirths = [metric_values(s.decoded()) for s in host.messages("DBIRTH")]
    # the state arrives in the first DBIRTH or, when the connection won the race with
    # state_changed, in a DDATA right after it: exactly once either way
    for name, value in (("Recipe/Id", "test-part"), ("Ready/State", "READY")):
        told = [dbirths[0].get(name), *ddata_values(host, name)]
        assert [v for v in told if v is not None] == [value], (name, told)
        assert dbirths[1][name] == value  # and the rebirth carries the last value
    assert "Camera/cam0/Status" not in dbirths[0]
    assert dbirths[1]["Camera/cam0/Status"] == "online"
    assert dbirths[1]["Result/EventId"] == results[-1].event_id  # births carry the last value
    nbirth = host.messages("NBIRTH")[0]
    assert metric_values(nbirth.decoded())["Properties/Session"] == "sess-a"
    # the wire format itself, read with no schema: Payload.seq is field 3, metrics field 2
    # with name 1 and datatype 4, bdSeq a uint64 (long_value, 11), as the specification has
    raw = raw_fields(nbirth.payload)
    assert raw.rstrip().endswith("3: 0"), raw
    assert '2 {\n  1: "bdSeq"\n  3: ' in raw and "  4: 8\n  11: 0\n" in raw, raw
    assert json.loads((tmp_path / "sparkplug.json").read_text()) == {"bdSeq": 0}


@pytest.mark.timeout(120)
def test_kill_9_will_is_ndeath_and_every_committed_result_arrives(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    (tmp_path / "sparkplug.json").write_text('{"bdSeq": 254}')  # from earlier runs
    with Broker(tmp_path / "broker") as broker:
        host = Host(broker, TOPICS.root)
        first = spawn(broker.port, outbox, "run-1", 100_000, "sparkplug")
        committed = kill_after(first, 500)
        # the broker saw the connection die and published the will: NDEATH, bdSeq 255
        assert wait_until(lambda: host.messages("NDEATH"), 15)
        second = spawn(broker.port, outbox, "run-2", 0, "sparkplug")
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
        assert "drained" in out.split()
        assert wait_until(lambda: len(host.messages("NDEATH")) == 2, 10)
        arrived = set(ddata_values(host, "Result/EventId"))
        assert set(committed) <= arrived, f"missing {len(set(committed) - arrived)}"
        host.stop()
    seen = host.messages()
    assert check_rules(seen) == [255, 0]  # wraps 255 -> 0 on the next CONNECT
    births = [i for i, s in enumerate(seen) if s.type == "NBIRTH"]
    resent = [metric_values(s.decoded()) for s in seen[births[1]:] if s.type == "DDATA"]
    resent = [v for v in resent if "Result/EventId" in v]
    assert resent, "the second run had nothing to send again"
    assert all(v["Result/Replayed"] is True for v in resent)
    assert all(m.is_historical for s in seen[births[1]:] if s.type == "DDATA"
               for m in s.decoded().metrics if m.name.startswith("Result/"))


@dataclass
class Line:
    service: Service
    broker: Broker
    host: Host


@pytest.fixture
def line(tmp_path: Path) -> Iterator[Line]:
    """A service in Sparkplug mode with two recipes; cam0 is triggered, so no part is
    inspected unless a host asks for one."""
    recipes = tmp_path / "recipes"
    recipe = write_recipe(recipes / "test-part", n_normal=6)
    write_recipe(recipes / "other-part", {**RECIPE, "id": "other-part", "rev": 1}, n_normal=6)
    broker = Broker(tmp_path / "broker", persistence=True, queue_qos0=True).start()
    cams = [{"name": "cam0", "source": {"kind": "synthetic", "width": 64, "height": 64,
                                        "triggered": True, "seed": 3}}]
    cfg = write_config(
        tmp_path / "station.yaml", recipe, console=False, cameras=cams,
        station={"site": "plant1", "line": "line3", "station": "st2", "enterprise": "acme"},
        mqtt={"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.2,
              "reconnect_max_s": 1.0, "mode": "sparkplug",
              "sparkplug": {"device_id": "cam-station"}})
    host = Host(broker, TOPICS2.root, persistent=True)
    service = Service(load_config(cfg))
    service.start()
    try:
        yield Line(service, broker, host)
    finally:
        service.stop()
        host.stop()
        broker.stop()



def _dcmd(line: Line, name: str, value: str) -> None:
    text = f'timestamp: {int(time.time() * 1000)} metrics {{ name: "{name}" datatype: 12 ' \
           f'string_value: {json.dumps(value)} }}'
    line.host.publish(f"spBv1.0/{G2}/DCMD/{N2}/{D2}", encode(text))


def _acks(line: Line) -> list[dict]:
    return [json.loads(str(a)) for a in ddata_values(line.host, "Command/Ack")]


def _wait_ack(line: Line, pred, timeout: float = 30.0) -> dict:
    assert wait_until(lambda: any(pred(a) for a in _acks(line)), timeout), _acks(line)
    return [a for a in _acks(line) if pred(a)][-1]


def test_rebirth_dcmd_commands_and_a_broker_restart(line: Line) -> None:
    host = line.host
    assert wait_until(lambda: host.messages("DBIRTH"), 20)
    assert wait_until(lambda: "READY" in ddata_values(host, "Ready/State")
                      or metric_values(host.messages("DBIRTH")[-1].decoded())
                      .get("Ready/State") == "READY", 20)
    # a host that joined late asks for the births again (encoded by protoc, not by us)
    host.publish(f"spBv1.0/{G2}/NCMD/{N2}",
                 encode('metrics { name: "Node Control/Rebirth" datatype: 11 '
                        'boolean_value: true }'))
    assert wait_until(lambda: len(host.messages("NBIRTH")) == 2, 10)
    # trigger a part with the PLC's part number
    _dcmd(line, "Command/Trigger", "PN-0042")
    ack = _wait_ack(line, lambda a: a["command"] == "Trigger")
    assert ack["ok"] is True and ack["part_id"] == "PN-0042"
    assert wait_until(lambda: "PN-0042" in ddata_values(host, "Result/PartId"), 30)
    # recipe switch by DCMD, with the same checks as cmd/recipe
    _dcmd(line, "Command/SelectRecipe", "nope")
    bad = _wait_ack(line, lambda a: a["command"] == "SelectRecipe" and not a["ok"])
    assert "nope" in bad["error"]
    _dcmd(line, "Command/SelectRecipe", "other-part@1")
    ok = _wait_ack(line, lambda a: a["command"] == "SelectRecipe" and a["ok"], 60)
    assert ok["recipe"]["id"] == "other-part"
    assert wait_until(lambda: "other-part" in ddata_values(host, "Recipe/Id"), 10)
    # malformed: bytes that are no Payload, a metric that is no command, a wrong type
    host.publish(f"spBv1.0/{G2}/DCMD/{N2}/{D2}", b"\xff\xff\xff")
    _wait_ack(line, lambda a: a["command"] == "DCMD" and "undecodable" in a["error"])
    host.publish(f"spBv1.0/{G2}/DCMD/{N2}/{D2}",
                 encode('metrics { name: "Recipe/Id" datatype: 12 string_value: "x" }'))
    _wait_ack(line, lambda a: a["command"] == "DCMD" and "not a command" in a["error"])
    host.publish(f"spBv1.0/{G2}/DCMD/{N2}/{D2}",
                 encode('metrics { name: "Command/Trigger" datatype: 11 boolean_value: true }'))
    _wait_ack(line, lambda a: a["command"] == "Trigger" and "String" in a.get("error", ""))
    # the broker goes away and comes back: a new connection, a new bdSeq, births again
    line.broker.restart()
    assert wait_until(lambda: len(host.messages("NBIRTH")) == 3, 30)
    _dcmd(line, "Command/Trigger", "PN-0043")
    ack = _wait_ack(line, lambda a: a["command"] == "Trigger" and a.get("part_id") == "PN-0043")
    assert ack["ok"] is True, ack
    assert wait_until(lambda: "PN-0043" in ddata_values(host, "Result/PartId"), 30)
    line.service.stop()
    assert wait_until(lambda: host.messages("NDEATH"), 10)
    seen = [s for s in host.messages() if s.topic.startswith(f"spBv1.0/{G2}/")
            or not s.sparkplug]
    births = check_rules(seen, G2, N2, D2, TOPICS2)
    assert births == [0, 0, 1], births  # rebirth keeps bdSeq; a new CONNECT increments it
