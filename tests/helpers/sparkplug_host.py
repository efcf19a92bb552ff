"""A Sparkplug host for the tests that does not share the station's encoder.

Payloads are decoded and encoded by protoc (`python -m grpc_tools.protoc --decode/--encode`,
protobuf's C++ implementation) from the .proto text; the station encodes with the Python
protobuf runtime (upb) from generated code. `raw_fields` reads the wire format with no
schema at all (`--decode_raw`), to pin the field numbers to the specification's.
The text protoc prints is read back into a message with `text_format` only to get
attribute access.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from google.protobuf import text_format
from paho.mqtt.enums import CallbackAPIVersion

import inspector.outputs.mqtt.sparkplug as sparkplug_pkg
from inspector.demo.local_broker import Broker
from inspector.outputs.mqtt.sparkplug.sparkplug_b_pb2 import Payload

PROTO_DIR = Path(sparkplug_pkg.__file__).parent
MESSAGE = "org.eclipse.tahu.protobuf.Payload"


def _protoc(args: list[str], data: bytes) -> bytes:
    proc = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", *args], input=data,
                          capture_output=True, timeout=30)
    if proc.returncode != 0:
        raise ValueError(f"protoc {' '.join(args)}: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def decode(payload: bytes) -> Any:
    """Decode with protoc (C++); fails on bytes that are not a valid Payload."""
    text = _protoc([f"--proto_path={PROTO_DIR}", f"--decode={MESSAGE}", "sparkplug_b.proto"],
                   payload).decode("utf-8")
    return text_format.Parse(text, Payload())


def encode(text: str) -> bytes:
    """Encode a Payload written in protobuf text format with protoc (C++)."""
    return _protoc([f"--proto_path={PROTO_DIR}", f"--encode={MESSAGE}", "sparkplug_b.proto"],
                   text.encode("utf-8"))


def raw_fields(payload: bytes) -> str:
    """protoc --decode_raw: field numbers only, no schema."""
    return _protoc(["--decode_raw"], payload).decode("utf-8")


def metric_values(p: Any) -> dict[str, object]:
    """name -> value (None when is_null) of a decoded payload."""
    out: dict[str, object] = {}
    for m in p.metrics:
        kind = m.WhichOneof("value")
        out[m.name] = None if m.is_null or kind is None else getattr(m, kind)
    return out


@dataclass
class Seen:
    """One message as the host received it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    _decoded: Any = field(default=None, repr=False)

    @property
    def type(self) -> str:
        """NBIRTH, DDATA, ... (or the v1 topic's last level)."""
        parts = self.topic.split("/")
        return parts[2] if parts[0] == "spBv1.0" else parts[-1]

    @property
    def sparkplug(self) -> bool:
        return self.topic.startswith("spBv1.0/")

    def decoded(self) -> Any:
        if self._decoded is None:
            self._decoded = decode(self.payload)
        return self._decoded


class Host:
    """Subscribes to `spBv1.0/#` and a v1 root; `persistent` keeps a session (with a
    broker that queues QoS 0, nothing is missed while it reconnects)."""

    def __init__(self, broker: Broker, v1_root: str, *, persistent: bool = False) -> None:
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self._subscribed = threading.Event()
        self.v1_root = v1_root
        cid = "test-spb-host" if persistent else f"test-spb-host-{uuid.uuid4().hex[:8]}"
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid,
                                  protocol=mqtt.MQTTv311, clean_session=not persistent)
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = lambda c, *a: c.subscribe(
            [("spBv1.0/#", 1), (v1_root + "#", 1)])
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test host could not subscribe")

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.seen.append(Seen(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    def messages(self, kind: str | None = None) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if kind is None or s.type == kind]

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=0, retain=retain).wait_for_publish(5)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
