"""Sparkplug B pieces without a broker: the generated module is current, metric values
round-trip through protoc's decoder, bdSeq survives restarts and bad state, commands are
read into v1 commands or refused with a reason, and the config names a bad id."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from paho.mqtt.client import MQTTMessage
from pydantic import ValidationError

from inspector.config.mqtt import MqttConfig
from inspector.outputs.mqtt.sparkplug.metrics import DataType, Payload, add, value
from inspector.outputs.mqtt.sparkplug.wire import SparkplugWire
from inspector.outputs.mqtt.topics import Topics
from inspector.outputs.mqtt.wire import Msg
from tests.helpers.sparkplug_host import PROTO_DIR, decode, encode, metric_values

TOPICS = Topics.for_station("inspector/v1", "plant1", "line3", "st2")


def wire(tmp_path: Path) -> SparkplugWire:
    return SparkplugWire(TOPICS, "plant1", "line3-st2", "vision", session="s",
                         software="inspector test", state_file=tmp_path / "sparkplug.json")


def test_generated_module_is_current(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"--proto_path={PROTO_DIR}",
                    f"--python_out={tmp_path}", "sparkplug_b.proto"], check=True, timeout=60)
    fresh = (tmp_path / "sparkplug_b_pb2.py").read_text()
    assert fresh == (PROTO_DIR / "sparkplug_b_pb2.py").read_text(), (
        "sparkplug_b_pb2.py is stale: run scripts/gen_sparkplug.sh")


@pytest.mark.parametrize(("dtype", "v"), [
    (DataType.Int32, -5), (DataType.Int64, -(1 << 40)), (DataType.UInt32, 4_000_000_000),
    (DataType.UInt64, (1 << 64) - 1), (DataType.Double, 0.125), (DataType.Boolean, True),
    (DataType.String, "ü/µm"), (DataType.String, None)])
def test_metric_values_survive_another_decoder(dtype: DataType, v: object) -> None:
    p = Payload(timestamp=1, seq=7)
    add(p, "m", dtype, v, 5)
    other = decode(p.SerializeToString())  # protoc (C++)
    m = other.metrics[0]
    assert (m.name, m.datatype, m.timestamp, other.seq) == ("m", int(dtype), 5, 7)
    assert value(m) == v
    assert m.is_null is (v is None)


def test_bd_seq_counts_connections_and_survives_a_restart(tmp_path: Path) -> None:
    w = wire(tmp_path)
    deaths = [metric_values(decode(w.will().payload))["bdSeq"] for _ in range(3)]
    assert deaths == [0, 1, 2]
    assert metric_values(decode(w.goodbye().payload)) == {"bdSeq": 2}
    assert metric_values(decode(wire(tmp_path).will().payload))["bdSeq"] == 3
    (tmp_path / "sparkplug.json").write_text('{"bdSeq": 255}')
    assert metric_values(decode(wire(tmp_path).will().payload))["bdSeq"] == 0


@pytest.mark.parametrize("bad", ['{"bdSeq": 300}', "not json", '{"x": 1}', '{"bdSeq": "1"}'])
def test_bad_state_file_starts_again_at_zero(tmp_path: Path, bad: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "sparkplug.json").write_text(bad)
    assert metric_values(decode(wire(tmp_path).will().payload))["bdSeq"] == 0
    assert "sparkplug.json" in caplog.text and "starts again at 0" in caplog.text


def _msg(topic: str, payload: bytes, retain: bool = False) -> MQTTMessage:
    m = MQTTMessage(topic=topic.encode())
    m.payload, m.retain = payload, retain
    return m


def test_dcmd_becomes_v1_commands(tmp_path: Path) -> None:
    w = wire(tmp_path)
    w.will()
    dcmd = "spBv1.0/plant1/DCMD/line3-st2/vision"
    out = w.incoming(_msg(dcmd, encode(
        'metrics { name: "Command/SelectRecipe" datatype: 12 string_value: "bolt@4" } '
        'metrics { name: "Command/Trigger" datatype: 12 string_value: "" } '
        'metrics { name: "Command/Thresholds" datatype: 12 '
        'string_value: "{\\"pit\\": {\\"threshold\\": 0.8}}" }')))
    assert [(m.topic, json.loads(m.payload)) for m in out if isinstance(m, MQTTMessage)] == [
        (TOPICS.cmd_recipe, {"request_id": "dcmd-0-1", "recipe_id": "bolt", "rev": 4}),
        (TOPICS.cmd_trigger, {"request_id": "dcmd-0-2"}),
        (TOPICS.cmd_thresholds, {"request_id": "dcmd-0-3",
                                 "classes": {"pit": {"threshold": 0.8}}})]
    assert w.incoming(_msg(dcmd, b"", retain=True)) == []  # a retained command is old news
    assert w.incoming(_msg("spBv1.0/plant1/DCMD/line3-st2/other", b"")) == []


@pytest.mark.parametrize(("text", "error"), [
    ('metrics { name: "Command/SelectRecipe" datatype: 12 string_value: "bolt@x" }',
     "invalid literal"),
    ('metrics { name: "Command/Thresholds" datatype: 12 string_value: "{" }', "Expecting"),
    ('metrics { name: "Command/Trigger" datatype: 3 int_value: 1 }', "must be a String"),
    ('metrics { name: "Ready/State" datatype: 12 string_value: "READY" }', "not a command"),
])
def test_bad_dcmd_gets_an_error_ack(tmp_path: Path, text: str, error: str) -> None:
    w = wire(tmp_path)
    (ack,) = w.incoming(_msg("spBv1.0/plant1/DCMD/line3-st2/vision", encode(text)))
    assert isinstance(ack, Msg)
    doc = json.loads(ack.payload)
    assert doc["ok"] is False and error in doc["error"], doc
    m = w.transient(ack.topic, ack.payload.encode() if isinstance(ack.payload, str)
                    else ack.payload, 1)
    assert m is not None and m.topic == w.ddata
    assert json.loads(str(metric_values(decode(bytes(m.payload)))["Command/Ack"])) == doc


def test_ncmd_rebirth_and_refusals(tmp_path: Path) -> None:
    w = wire(tmp_path)
    ncmd = "spBv1.0/plant1/NCMD/line3-st2"
    assert w.incoming(_msg(ncmd, encode(
        'metrics { name: "Node Control/Rebirth" datatype: 11 boolean_value: true }'))) == []
    assert w.rebirth_due() and not w.rebirth_due()
    (err,) = w.incoming(_msg(ncmd, encode(
        'metrics { name: "Node Control/Reboot" datatype: 11 boolean_value: true }')))
    assert isinstance(err, Msg) and "not a node command" in str(err.payload)
    assert not w.rebirth_due()


def test_config_names_a_bad_sparkplug_id() -> None:
    with pytest.raises(ValidationError, match="sparkplug.group_id"):
        MqttConfig.model_validate({"mode": "sparkplug", "sparkplug": {"group_id": "a/b"}})
    with pytest.raises(ValidationError, match="mode"):
        MqttConfig.model_validate({"mode": "sparkplugb"})


def test_configured_cameras_are_born_so_their_first_status_is_no_rebirth(
        tmp_path: Path) -> None:
    status = TOPICS.camera_status("cam0")
    w = SparkplugWire(TOPICS, "plant1", "line3-st2", "vision", session="s",
                      software="inspector test", state_file=tmp_path / "sp.json",
                      cameras=["cam0"])
    (_, dbirth), _ = w.hello({})
    born = {m.name: m for m in decode(dbirth.payload).metrics}
    assert born["Camera/cam0/Status"].is_null  # declared before the camera reported
    (msg,) = w.retained([(status, b"online")])
    assert msg.topic == w.ddata  # a value change, not births
    assert metric_values(decode(msg.payload)) == {"Camera/cam0/Status": "online"}
    # a camera the station was not configured with still needs a rebirth to be declared
    other = wire(tmp_path)
    other.hello({})
    assert [m.topic for m in other.retained([(status, b"online")])] == [other.nbirth,
                                                                         other.dbirth]
