"""Helpers shared by the MQTT tests: a validating subscriber, results, bounded waits."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from inspector.config.mqtt import MqttConfig
from inspector.core.result import Result
from inspector.outputs.mqtt import schemas
from inspector.outputs.mqtt.topics import Topics
from tests.helpers.mosquitto import Broker, mosquitto_binary

needs_mosquitto = pytest.mark.skipif(
    mosquitto_binary() is None,
    reason="mosquitto is not installed (apt-get install mosquitto mosquitto-clients)")

SITE, LINE, STATION = "plant1", "line3", "st2"
TOPICS = Topics.for_station("inspector/v1", SITE, LINE, STATION)
SHA = "ab" * 32
INPUTS = {"cmd_recipe", "cmd_trigger", "cmd_thresholds"}  # others publish; tests send bad ones


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def make_result(session: str, seq: int, ok: bool | None = None) -> Result:
    """A schema-valid `inspector.result/1` Result; every 5th part is NG unless told."""
    ok = (seq % 5 != 4) if ok is None else ok
    defects = [] if ok else [{
        "class": "scratch", "score": 0.91, "bbox": [10.0, 12.0, 30.0, 4.0], "area_px": 96.0,
        "area_mm2": 0.96, "mask": {"size": [480, 640], "counts": "PPYo0e0000O1000000O1Sk`0"},
        "prompt_id": "scratch-1", "unknown": False, "accepted": True}]
    return Result.model_validate({
        "schema": "inspector.result/1", "event_id": uuid.uuid4().hex, "session": session,
        "seq": seq, "ts_capture": time.time() - 0.05, "ts_done": time.time(),
        "camera": "cam0", "frame_id": seq, "part_id": f"P{seq:06d}",
        "recipe": {"id": "test-part", "rev": 3, "sha256": SHA, "model_sha256": SHA},
        "verdict": "OK" if ok else "NG", "code": 0 if ok else 11,
        "score": 0.1 if ok else 0.91, "defects": defects,
        "reasons": [] if ok else ["scratch: 1 > max_count 0"],
        "latency_ms": {"acq": 1.0, "queue": 0.2, "preprocess": 2.0, "infer": 12.0,
                       "decide": 0.3, "total": 15.5},
        "image_uri": None, "replayed": False,
    })


def config(broker: Broker, tmp_path: Path, **kw: object) -> MqttConfig:
    """A config for `broker` with fast reconnects and the outbox under tmp_path."""
    base: dict = {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.2,
                  "reconnect_max_s": 1.0, "drain_timeout_s": 5.0,
                  "outbox": {"path": str(tmp_path / "outbox.sqlite")}}
    base.update(kw)
    return MqttConfig.model_validate(base)


class Collector:
    """Subscribes to the station's topics and validates every message against its schema.

    `persistent=True` uses a durable session (clean_session False) so that, with a
    persistent broker, nothing published while it is reconnecting is lost to the test.
    """

    def __init__(self, broker: Broker, topics: Topics = TOPICS, *, persistent: bool = False,
                 username: str | None = None, password: str | None = None) -> None:
        self.topics = topics
        self.lock = threading.Lock()
        self.messages: list[tuple[str, bytes, bool, bool]] = []  # topic, payload, retain, dup
        self.errors: list[str] = []
        self._subscribed = threading.Event()
        cid = f"test-collector-{uuid.uuid4().hex[:8]}" if not persistent else "test-collector"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid,
                                  protocol=mqtt.MQTTv311, clean_session=not persistent)
        if username:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect_async("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test collector could not subscribe")

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        client.subscribe(self.topics.root + "#", qos=1)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        name = self.topics.schema_name(msg.topic)
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain), bool(msg.dup)))
            if name is None:
                self.errors.append(f"unexpected topic {msg.topic}")
                return
            if name in INPUTS:
                return
            try:
                doc = schemas.decode(name, msg.payload)
            except ValueError as exc:
                self.errors.append(f"{msg.topic}: undecodable: {exc}")
                return
            problem = schemas.first_error(name, doc)
            if problem is not None:
                self.errors.append(f"{msg.topic}: {problem}: {msg.payload[:200]!r}")

    def docs(self, topic: str) -> list:
        name = self.topics.schema_name(topic)
        assert name is not None
        with self.lock:
            return [schemas.decode(name, p) for t, p, _, _ in self.messages if t == topic]

    def results(self) -> list[dict]:
        return self.docs(self.topics.result)

    def event_ids(self) -> set[str]:
        return {r["event_id"] for r in self.results()}

    def count(self, topic: str) -> int:
        with self.lock:
            return sum(1 for t, *_ in self.messages if t == topic)

    def last(self, topic: str) -> object | None:
        docs = self.docs(topic)
        return docs[-1] if docs else None

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_raw(broker: Broker, topic: str, payload: bytes, retain: bool = False,
                qos: int = 1) -> None:
    """One message from an outside client (operator tool, MES), waited for."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-raw-{uuid.uuid4().hex[:8]}")
    c.connect("127.0.0.1", broker.port, keepalive=10)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def dumps(doc: object) -> bytes:
    return json.dumps(doc).encode()
