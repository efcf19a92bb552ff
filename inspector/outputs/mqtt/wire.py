"""What goes on the wire: the publisher's connection handling is the same for every MQTT
mode; a `Wire` decides which messages a connection, a result, a retained value and a
shutdown become. `JsonWire` is contract v1 (JSON topics, docs/DESIGN.md); the Sparkplug B
wire lives in `inspector.outputs.mqtt.sparkplug.wire`.

Every method but `incoming` runs on the publisher thread, so a wire may keep counters
(Sparkplug's seq) without locks; `incoming` runs on paho's network thread and must not
block.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Protocol

from paho.mqtt.client import MQTTMessage

from inspector.outputs.mqtt.outbox import Row
from inspector.outputs.mqtt.topics import Topics


@dataclass(frozen=True)
class Msg:
    """One MQTT publish."""

    topic: str
    payload: bytes | str
    qos: int = 1
    retain: bool = False


class Wire(Protocol):
    """The message layout of one MQTT mode (see the module docstring)."""

    # True: result messages go at QoS 0 and a later QoS 1 `barrier()` confirms them
    confirms_by_barrier: bool

    def will(self) -> Msg:
        """The last will of a new connection (called once per connection attempt)."""

    def hello(self, retained: dict[str, bytes]) -> tuple[list[Msg], bool]:
        """What a fresh connection publishes first, and whether the retained values must
        then be published again as they are (v1) or were part of the hello (births)."""

    def subscriptions(self, command_topics: tuple[str, ...]) -> tuple[str, ...]:
        """The topics to subscribe on every connect."""

    def incoming(self, msg: MQTTMessage) -> list[MQTTMessage | Msg]:
        """A received message as v1 commands for the channels, or error acks to send."""

    def rebirth_due(self) -> bool:
        """Whether a host asked for the hello again (Sparkplug NCMD Rebirth)."""

    def row(self, row: Row, replay: bool, send_plc: bool) -> list[tuple[str, Msg]]:
        """The (kind, message) pairs of one outbox row; kind "plc" or "result"."""

    def barrier(self) -> Msg | None:
        """A QoS 1 message whose PUBACK confirms every QoS 0 message sent before it."""

    def retained(self, items: list[tuple[str, bytes]]) -> list[Msg]:
        """Changed retained values (v1 topic, payload) as messages."""

    def transient(self, topic: str, payload: bytes, qos: int) -> Msg | None:
        """A message outside the outbox (ack, stats) on its v1 topic, or None to drop."""

    def goodbye(self) -> Msg:
        """The clean-shutdown message, published at QoS 1 before DISCONNECT."""


class JsonWire:
    """Contract v1: retained `status` online/offline/stopped, `plc` then `result` per part,
    retained state topics as they are, command acks and stats on their own topics."""

    confirms_by_barrier = False

    def __init__(self, topics: Topics) -> None:
        self.topics = topics

    def will(self) -> Msg:
        return Msg(self.topics.status, b"offline", 1, True)

    def hello(self, retained: dict[str, bytes]) -> tuple[list[Msg], bool]:
        return [Msg(self.topics.status, b"online", 1, True)], True

    def subscriptions(self, command_topics: tuple[str, ...]) -> tuple[str, ...]:
        return command_topics

    def incoming(self, msg: MQTTMessage) -> list[MQTTMessage | Msg]:
        return [msg]

    def rebirth_due(self) -> bool:
        return False

    def row(self, row: Row, replay: bool, send_plc: bool) -> list[tuple[str, Msg]]:
        result = replayed(row.result) if replay else row.result
        out = []
        if send_plc:
            plc = replayed(row.plc, row.event_id, result) if replay else row.plc
            out.append(("plc", Msg(self.topics.plc, plc)))
        out.append(("result", Msg(self.topics.result, result)))
        return out

    def barrier(self) -> Msg | None:
        return None

    def retained(self, items: list[tuple[str, bytes]]) -> list[Msg]:
        return [Msg(topic, payload, 1, True) for topic, payload in items]

    def transient(self, topic: str, payload: bytes, qos: int) -> Msg | None:
        return Msg(topic, payload, qos)

    def goodbye(self) -> Msg:
        return Msg(self.topics.status, b"stopped", 1, True)


def replayed(payload: str, event_id: str | None = None, result: str | None = None) -> str:
    """The stored payload with `"replayed": true` (only replays pay for re-encoding). A
    `plc` payload from an older outbox gets its event_id and session from its row."""
    doc = json.loads(payload)
    doc["replayed"] = True
    if event_id is not None and "event_id" not in doc:
        doc["event_id"] = event_id
        doc["session"] = str(json.loads(result or "{}").get("session", ""))
    return json.dumps(doc, separators=(",", ":"))
