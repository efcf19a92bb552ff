"""Sparkplug B 3.0 on the wire: the station is one edge node with one device.

Topics are `spBv1.0/<group>/<TYPE>/<edge node>[/<device>]`. On every connection: the will
is NDEATH carrying bdSeq (incremented per CONNECT, kept across restarts in a small state
file), then NBIRTH (seq 0, bdSeq, `Node Control/Rebirth`) and DBIRTH (every device metric,
null when not seen yet). Each part is one DDATA; retained v1 values (recipe, ready, camera
status) become DDATA when they change, `status` becomes NDATA. seq counts every
NBIRTH/DBIRTH/NDATA/DDATA of the edge node, 0..255 and round again. A metric name not in
the last DBIRTH makes a full rebirth; the configured cameras are declared from the first
DBIRTH, so only a camera the station was not configured with can cause one. On a clean stop:
NDEATH with the same bdSeq, then DISCONNECT.

Sparkplug publishes data at QoS 0, so no PUBACK says a DDATA reached the broker; the
outbox row of a part is deleted only when the PUBACK of a later QoS 1 message on this
station's v1 root (`spb/sync`, JSON) arrives: the broker takes one connection's packets
in order, so it has every DDATA before it. Rows not confirmed when the connection drops
are sent again after the next births, with their metrics marked `is_historical` and
`Result/Replayed` true.

Hosts write `Node Control/Rebirth` with NCMD, and `Command/SelectRecipe`,
`Command/Trigger`, `Command/Thresholds` with DCMD; these become the v1 commands (same
checks, same worker threads) and the ack comes back as the `Command/Ack` metric (JSON).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from itertools import count
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from paho.mqtt.client import MQTTMessage

from inspector.outputs.mqtt.commands import MAX_PAYLOAD, error_ack
from inspector.outputs.mqtt.outbox import Row
from inspector.outputs.mqtt.sparkplug.metrics import (
    BD_SEQ,
    COMMANDS,
    DEVICE_METRICS,
    NODE_METRICS,
    REBIRTH,
    DataType,
    Payload,
    add,
    camera_metric,
    now_ms,
    value,
)
from inspector.outputs.mqtt.topics import Topics
from inspector.outputs.mqtt.wire import Msg

log = logging.getLogger("inspector.outputs.mqtt.sparkplug")

NAMESPACE = "spBv1.0"
_WIRE_ACK = "\0sparkplug-ack"  # an ack the wire writes itself (never a real topic)


class SparkplugWire:
    """Births, deaths, DDATA and sequence numbers of one edge node (see module doc)."""

    confirms_by_barrier = True

    def __init__(self, topics: Topics, group_id: str, edge_node_id: str, device_id: str,
                 *, session: str, software: str, state_file: Path | None = None,
                 cameras: Sequence[str] = ()) -> None:
        self.topics = topics
        ns = f"{NAMESPACE}/{group_id}"
        self.nbirth = f"{ns}/NBIRTH/{edge_node_id}"
        self.ndeath = f"{ns}/NDEATH/{edge_node_id}"
        self.ndata = f"{ns}/NDATA/{edge_node_id}"
        self.ncmd = f"{ns}/NCMD/{edge_node_id}"
        self.dbirth = f"{ns}/DBIRTH/{edge_node_id}/{device_id}"
        self.ddata = f"{ns}/DDATA/{edge_node_id}/{device_id}"
        self.dcmd = f"{ns}/DCMD/{edge_node_id}/{device_id}"
        self.state_file = state_file
        self.bd_seq = self._load_bd_seq()
        self._seq = 0
        self._node: dict[str, object] = {"Properties/Software": software,
                                         "Properties/Session": session, "Status": "online"}
        # the configured cameras' status metrics are declared (null) in the first DBIRTH: a
        # camera that reports after the births would otherwise force a rebirth, and a host
        # counting births (or sending a command right after one) would be misled
        self._device: dict[str, object] = {camera_metric(c): None for c in cameras}
        self._types: dict[str, DataType] = dict(DEVICE_METRICS)  # as in the last DBIRTH
        self._rebirth = threading.Event()
        self._request_ids = count(1)
        self._acks = {topics.cmd_recipe_ack: "SelectRecipe", topics.cmd_trigger_ack: "Trigger",
                      topics.cmd_thresholds_ack: "Thresholds"}

    # -- connection ----------------------------------------------------------------------

    def will(self) -> Msg:
        """A new CONNECT: the next bdSeq, kept on disk before the broker knows it."""
        self.bd_seq = (self.bd_seq + 1) % 256
        self._save_bd_seq()
        return Msg(self.ndeath, self._death(), qos=1, retain=False)

    def hello(self, retained: dict[str, bytes]) -> tuple[list[Msg], bool]:
        for topic, payload in retained.items():
            self._absorb(topic, payload)
        return self._births(), False

    def goodbye(self) -> Msg:
        return Msg(self.ndeath, self._death(), qos=1, retain=False)

    def subscriptions(self, command_topics: tuple[str, ...]) -> tuple[str, ...]:
        return (self.ncmd, self.dcmd)

    def rebirth_due(self) -> bool:
        if self._rebirth.is_set():
            self._rebirth.clear()
            return True
        return False

    # -- data ----------------------------------------------------------------------------

    def row(self, row: Row, replay: bool, send_plc: bool) -> list[tuple[str, Msg]]:
        doc = json.loads(row.result)
        ts = int(float(doc["ts_done"]) * 1000)
        values = {
            "Result/EventId": doc["event_id"], "Result/Seq": doc["seq"],
            "Result/PartId": doc["part_id"], "Result/RequestId": doc.get("request_id"),
            "Result/Camera": doc["camera"], "Result/Verdict": doc["verdict"],
            "Result/Ok": doc["verdict"] == "OK",
            "Result/Code": doc.get("code", 0 if doc["verdict"] == "OK" else 1),
            "Result/Score": doc["score"], "Result/DefectCount": len(doc["defects"]),
            "Result/LatencyMs": doc["latency_ms"].get("total"),
            "Result/ImageUri": doc.get("image_uri"),
            "Result/Replayed": replay or bool(doc.get("replayed")),
            "Result/Json": json.dumps({**doc, "replayed": True} if replay else doc,
                                      separators=(",", ":")),
        }
        if not replay:
            self._device.update(values)
        return [("result", Msg(self.ddata, self._data(values, ts, historical=replay), qos=0))]

    def barrier(self) -> Msg | None:
        doc = {"bdSeq": self.bd_seq, "seq": (self._seq - 1) % 256}
        return Msg(self.topics.spb_sync, json.dumps(doc, separators=(",", ":")), qos=1)

    def retained(self, items: list[tuple[str, bytes]]) -> list[Msg]:
        node: dict[str, object] = {}
        device: dict[str, object] = {}
        for topic, payload in items:
            changed = self._absorb(topic, payload)
            for name, v in changed.items():
                (node if name in NODE_METRICS else device)[name] = v
        if any(name not in self._types for name in device):
            return self._births()  # a new metric: hosts learn it only from a DBIRTH
        out = []
        if node:
            out.append(Msg(self.ndata, self._data(node, now_ms(), types=NODE_METRICS), qos=0))
        if device:
            out.append(Msg(self.ddata, self._data(device, now_ms()), qos=0))
        return out

    def transient(self, topic: str, payload: bytes, qos: int) -> Msg | None:
        if topic == self.topics.stats:
            changed = self._changes(_stats_metrics(json.loads(payload)))
            return Msg(self.ddata, self._data(changed, now_ms()), qos=0) if changed else None
        command = self._acks.get(topic)
        if command is not None or topic == _WIRE_ACK:
            doc = json.loads(payload)
            if command is not None:
                doc = {"command": command, **doc}
            ack = json.dumps(doc, separators=(",", ":"))
            self._device["Command/Ack"] = ack
            return Msg(self.ddata, self._data({"Command/Ack": ack}, now_ms()), qos=0)
        return None

    # -- commands (paho's thread) --------------------------------------------------------

    def incoming(self, msg: MQTTMessage) -> list[MQTTMessage | Msg]:
        if msg.topic not in (self.ncmd, self.dcmd):
            return []
        if msg.retain:
            log.warning("ignored a retained message on %s (commands are never retained)",
                        msg.topic)
            return []
        try:
            if len(msg.payload) > MAX_PAYLOAD:
                raise ValueError(f"payload of {len(msg.payload)} bytes is over "
                                 f"{MAX_PAYLOAD}")
            payload = Payload.FromString(bytes(msg.payload))
        except (DecodeError, ValueError) as exc:
            log.warning("undecodable Sparkplug command on %s: %s", msg.topic, exc)
            return [self._error("NCMD" if msg.topic == self.ncmd else "DCMD", None,
                                f"undecodable Sparkplug payload: {exc}")]
        if msg.topic == self.ncmd:
            return self._node_command(payload)
        return [self._device_command(m) for m in payload.metrics]

    def _node_command(self, payload: Any) -> list[MQTTMessage | Msg]:
        out: list[MQTTMessage | Msg] = []
        for m in payload.metrics:
            if m.name == REBIRTH and m.datatype == DataType.Boolean and value(m) is True:
                log.info("Sparkplug host asked for a rebirth")
                self._rebirth.set()
            else:
                out.append(self._error("NCMD", None, f"metric {m.name!r} (datatype "
                                       f"{m.datatype}) is not a node command; expected "
                                       f"{REBIRTH!r} = true (Boolean)"))
        return out

    def _device_command(self, m: Any) -> MQTTMessage | Msg:
        rid = f"dcmd-{self.bd_seq}-{next(self._request_ids)}"
        if m.name not in COMMANDS:
            return self._error("DCMD", rid, f"metric {m.name!r} is not a command; "
                               f"commands: {', '.join(COMMANDS)}")
        if m.datatype != DataType.String or not isinstance(value(m), str):
            return self._error(m.name, rid, f"{m.name} must be a String metric with a value")
        text = str(value(m))
        doc: dict[str, object] = {"request_id": rid}
        try:
            if m.name == "Command/SelectRecipe":
                recipe, at, rev = text.partition("@")
                doc["recipe_id"] = recipe
                if at:
                    doc["rev"] = int(rev)
                topic = self.topics.cmd_recipe
            elif m.name == "Command/Trigger":
                if text:
                    doc["part_id"] = text
                topic = self.topics.cmd_trigger
            else:
                doc["classes"] = json.loads(text)
                topic = self.topics.cmd_thresholds
        except ValueError as exc:  # JSONDecodeError is one
            return self._error(m.name, rid, f"{m.name} value {text[:80]!r}: {exc}")
        out = MQTTMessage(topic=topic.encode("utf-8"))
        out.payload = json.dumps(doc).encode("utf-8")
        return out

    def _error(self, command: str, rid: str | None, error: str) -> Msg:
        doc = {"command": command.removeprefix("Command/"), **error_ack(rid, error)}
        return Msg(_WIRE_ACK, json.dumps(doc, separators=(",", ":")), qos=1)

    # -- payloads ------------------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (seq + 1) % 256
        return seq

    def _births(self) -> list[Msg]:
        ts = now_ms()
        self._seq = 0
        node = Payload(timestamp=ts, seq=self._next_seq())
        values = {BD_SEQ: self.bd_seq, REBIRTH: False, **self._node}
        for name, dtype in NODE_METRICS.items():
            add(node, name, dtype, values.get(name), ts)
        self._types = dict(DEVICE_METRICS)
        for name in self._device:
            if name.startswith("Camera/"):
                self._types[name] = DataType.String
        device = Payload(timestamp=ts, seq=self._next_seq())
        for name, dtype in self._types.items():
            add(device, name, dtype, self._device.get(name), ts)
        return [Msg(self.nbirth, node.SerializeToString(), qos=0),
                Msg(self.dbirth, device.SerializeToString(), qos=0)]

    def _death(self) -> bytes:
        p = Payload(timestamp=now_ms())
        add(p, BD_SEQ, DataType.UInt64, self.bd_seq)
        return p.SerializeToString()

    def _data(self, values: dict[str, object], ts: int, historical: bool = False,
              types: dict[str, DataType] | None = None) -> bytes:
        types = types or self._types
        p = Payload(timestamp=now_ms(), seq=self._next_seq())
        for name, v in values.items():
            add(p, name, types[name], v, ts, historical)
        return p.SerializeToString()

    def _changes(self, values: dict[str, object]) -> dict[str, object]:
        changed = {k: v for k, v in values.items() if self._device.get(k, ...) != v}
        self._device.update(changed)
        return changed

    def _absorb(self, topic: str, payload: bytes) -> dict[str, object]:
        """A retained v1 value as metrics; returns the ones that changed."""
        t = self.topics
        if topic == t.status:
            status = payload.decode("utf-8")
            if self._node.get("Status") == status:
                return {}
            self._node["Status"] = status
            return {"Status": status}
        if topic == t.state:
            doc = json.loads(payload)
            recipe = doc.get("recipe") or {}
            return self._changes({"Recipe/Id": recipe.get("id"), "Recipe/Rev": recipe.get("rev"),
                                  "Recipe/Sha256": recipe.get("sha256"), "Mode": doc.get("mode")})
        if topic == t.ready:
            doc = json.loads(payload)
            return self._changes({"Ready/State": doc.get("state"),
                                  "Ready/Reason": doc.get("reason"),
                                  "Ready/RequestId": doc.get("request_id")})
        if t.schema_name(topic) == "camera_status":
            camera = topic[len(t.root):].split("/")[1]
            return self._changes({camera_metric(camera): payload.decode("utf-8")})
        return {}

    # -- bdSeq across restarts -----------------------------------------------------------

    def _load_bd_seq(self) -> int:
        """The last bdSeq used (-1 when none: the first CONNECT then sends 0)."""
        if self.state_file is None or not self.state_file.exists():
            return -1
        try:
            v = json.loads(self.state_file.read_text(encoding="utf-8"))["bdSeq"]
            if isinstance(v, int) and 0 <= v <= 255:
                return v
            raise ValueError(f"bdSeq {v!r} is not 0..255")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("Sparkplug state %s unreadable (%s); bdSeq starts again at 0",
                        self.state_file, exc)
            return -1

    def _save_bd_seq(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_suffix(".tmp")
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"bdSeq": self.bd_seq}), encoding="utf-8")
            os.replace(tmp, self.state_file)
        except OSError as exc:  # a full disk must not stop the link; hosts cope with it
            log.error("Sparkplug state %s not saved (%s); bdSeq %d is kept in memory",
                      self.state_file, exc.strerror or exc, self.bd_seq)


def _stats_metrics(doc: dict) -> dict[str, object]:
    """The typed metrics of a v1 `stats` document."""
    c = doc.get("counters", {})
    ok, ng = int(c.get("ok", 0)), int(c.get("ng", 0))
    total = doc.get("latency_ms", {}).get("total", {})
    outbox = doc.get("outbox", {})
    return {
        "Counters/Results": int(c.get("results", ok + ng)), "Counters/OK": ok,
        "Counters/NG": ng, "Rates/PartsPerSecond": float(doc.get("fps", 0.0)),
        "Rates/RejectRate": ng / (ok + ng) if ok + ng else 0.0,
        "Latency/TotalP50Ms": total.get("p50"), "Latency/TotalP99Ms": total.get("p99"),
        "Outbox/Depth": outbox.get("depth"), "Outbox/Dropped": outbox.get("dropped"),
        "Stats/Json": json.dumps(doc, separators=(",", ":")),
    }
