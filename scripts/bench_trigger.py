#!/usr/bin/env python3
"""Benchmark the PLC trigger handshake over MQTT and OPC UA (not a test): trigger -> verdict.

A local mosquitto, the service with the demo recipe (prompt detector, ONNX Runtime) and a
synthetic camera in software-trigger mode (`--size` px). A PLC stand-in (paho, its own
client) waits for `ready` = READY, publishes `cmd/trigger {request_id, part_id}` and
stops the clock when the `plc` message with that request id arrives; `--triggers` parts
one after another, as a line does. Printed side by side, from the same parts:
  * trigger -> plc verdict at the PLC (the handshake a PLC programmer sees),
  * trigger -> ack (the command path alone),
  * the service's own time per part (`latency_ms.total`: capture to result) and the
    detector alone (`latency_ms.infer`).
Then the same over OPC UA (an asyncua client, logged in as a PLC user): the `Trigger`
method call, and the clock stops when a data-change notification says `LastRequestId` is
the call's request id (written last of the last-result variables, so the verdict can be
read then). Last, a second station in Sparkplug B mode (`mqtt.mode: sparkplug`) on the same
broker: a host writes `Command/Trigger` with a DCMD and the clock stops at the DDATA whose
`Result/PartId` is that part.

    .venv/bin/python scripts/bench_trigger.py [--triggers 100] [--size 512]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from inspector.config.station import StationConfig
from inspector.core.assets import demo_recipe
from inspector.demo.local_broker import Broker, free_port
from inspector.opcua.server import OpcUaServer
from inspector.outputs.mqtt.topics import Topics
from inspector.runtime.service import Service
from inspector.web.users import UserStore


class Plc:
    """A PLC stand-in: triggers one part at a time and times the answers."""

    def __init__(self, port: int, topics: Topics) -> None:
        self.t, self.lock = topics, threading.Lock()
        self.seen: dict[str, dict[str, float]] = {}
        self.results: dict[str, dict] = {}
        self.ready = ""
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"plc-{uuid.uuid4().hex[:6]}")
        self.c.on_message = self._message
        self.c.connect("127.0.0.1", port)
        for topic in (topics.plc, topics.result, topics.cmd_trigger_ack, topics.ready):
            self.c.subscribe(topic, qos=1)
        self.c.loop_start()

    def _message(self, client, userdata, msg) -> None:
        now = time.monotonic()
        doc = json.loads(msg.payload)
        with self.lock:
            if msg.topic == self.t.ready:
                self.ready = doc["state"]
                return
            rid = doc.get("request_id")
            if rid is None:
                return
            kind = {self.t.plc: "plc", self.t.result: "result",
                    self.t.cmd_trigger_ack: "ack"}[msg.topic]
            self.seen.setdefault(rid, {})[kind] = now
            if kind == "result":
                self.results[rid] = doc

    def trigger(self, n: int, timeout: float = 20.0) -> dict[str, float]:
        deadline = time.monotonic() + timeout
        while self.ready != "READY":
            if time.monotonic() > deadline:
                raise RuntimeError(f"station not READY (ready = {self.ready!r})")
            time.sleep(0.001)
        rid = f"bench-{n}"
        t0 = time.monotonic()
        self.c.publish(self.t.cmd_trigger, json.dumps({"request_id": rid,
                                                        "part_id": f"PN-{n:05d}"}), qos=1)
        while not {"plc", "result", "ack"} <= set(self.seen.get(rid, {})):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer to {rid}: {self.seen.get(rid)}")
            time.sleep(0.0005)
        with self.lock:
            return {k: (v - t0) * 1000 for k, v in self.seen[rid].items()}


def _q(xs: list[float]) -> tuple[float, float]:
    xs = sorted(xs)
    return statistics.median(xs), xs[min(len(xs) - 1, int(round(0.99 * (len(xs) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--triggers", type=int, default=100)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench-trigger-"))
    broker = Broker(work / "broker", tcp_nodelay=True).start()
    cfg = StationConfig.model_validate({
        "station": {"site": "bench", "line": "l1", "station": "s1"},
        "cameras": [{"name": "cam0", "source": {"kind": "synthetic", "seed": 5,
                                                "width": args.size, "height": args.size,
                                                "triggered": True}}],
        "recipe": str(demo_recipe()), "storage": {"state_dir": str(work / "state")},
        "console": False, "archive": {"enabled": False},
        "mqtt": {"host": "127.0.0.1", "port": broker.port,
                 "outbox": {"path": "outbox.sqlite"}},
        "opcua": {"enabled": True, "port": free_port(), "users": ["plc"]}})
    UserStore(work / "state" / "users.json").add("plc", "operator", "bench-password")
    topics = Topics.for_station("inspector/v1", "bench", "l1", "s1")
    service = Service(cfg)
    service.start()
    opc = OpcUaServer(service, cfg)
    opc.start()
    plc = Plc(broker.port, topics)
    rows: list[dict[str, float]] = []
    opc_ms: list[float] = []
    try:
        for n in range(args.warmup + args.triggers):
            got = plc.trigger(n)
            if n >= args.warmup:
                res = plc.results[f"bench-{n}"]
                got["total"] = res["latency_ms"]["total"]
                got["infer"] = res["latency_ms"]["infer"]
                rows.append(got)
            print(f"\r  trigger {n + 1}/{args.warmup + args.triggers}", end="",
                  file=sys.stderr, flush=True)
        print(file=sys.stderr)
        opc_ms = asyncio.run(_opcua(opc.url, args.warmup, args.triggers))
    finally:
        plc.c.loop_stop()
        opc.stop()
        service.stop()
    try:
        spb_ms = _sparkplug(cfg, work, broker.port, args.warmup, args.triggers)
    finally:
        broker.stop()
    lost = service.pipeline.stats.counters.get("dropped_queue", 0)
    print(f"\n{args.triggers} triggers, one at a time, {args.size} x {args.size} px, demo "
          f"recipe (prompt detector, ONNX Runtime on the CPU), local mosquitto; "
          f"frames dropped: {lost}\n")
    print("| path | p50 ms | p99 ms |\n|---|---:|---:|")
    for key, label in (("plc", "MQTT: cmd/trigger -> plc verdict at the PLC"),
                       ("result", "MQTT: cmd/trigger -> full result at the PLC"),
                       ("ack", "MQTT: cmd/trigger -> trigger ack"),
                       ("total", "service: capture -> result (latency_ms.total)"),
                       ("infer", "detector alone (latency_ms.infer)")):
        p50, p99 = _q([r[key] for r in rows])
        print(f"| {label} | {p50:.1f} | {p99:.1f} |")
    p50, p99 = _q(opc_ms)
    print(f"| OPC UA: Trigger method -> LastRequestId notification at the client | {p50:.1f} "
          f"| {p99:.1f} |")
    p50, p99 = _q(spb_ms)
    print(f"| Sparkplug B: DCMD Command/Trigger -> DDATA Result/* at the host | {p50:.1f} "
          f"| {p99:.1f} |")
    return 0


def _sparkplug(cfg: StationConfig, work: Path, port: int, warmup: int, n: int) -> list[float]:
    """The same station in Sparkplug mode; ms from DCMD to the part's DDATA."""
    from inspector.outputs.mqtt.sparkplug.metrics import DataType, Payload, add, value

    doc = cfg.model_dump(mode="json")
    doc["mqtt"]["mode"] = "sparkplug"
    doc["opcua"]["enabled"] = False
    doc["storage"]["state_dir"] = str(work / "state-spb")
    node = "spBv1.0/bench/{}/l1-s1"
    seen: dict[str, float] = {}
    ready = {"state": ""}
    lock = threading.Lock()

    def on_message(client, userdata, msg) -> None:
        now = time.monotonic()
        values = {m.name: value(m) for m in Payload.FromString(msg.payload).metrics}
        with lock:
            if values.get("Ready/State"):
                ready["state"] = str(values["Ready/State"])
            if "Result/PartId" in values and msg.topic.split("/")[2] == "DDATA":
                seen[str(values["Result/PartId"])] = now

    host = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"spb-{uuid.uuid4().hex[:6]}")
    host.on_message = on_message
    host.connect("127.0.0.1", port)
    host.subscribe([(node.format("DBIRTH") + "/vision", 0), (node.format("DDATA") + "/vision", 0)])
    host.loop_start()
    service = Service(StationConfig.model_validate(doc))
    service.start()
    out: list[float] = []
    try:
        for i in range(warmup + n):
            deadline = time.monotonic() + 20
            while ready["state"] != "READY":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Sparkplug station not READY ({ready})")
                time.sleep(0.001)
            part = f"PN-SPB-{i:05d}"
            cmd = Payload(timestamp=int(time.time() * 1000))
            add(cmd, "Command/Trigger", DataType.String, part)
            t0 = time.monotonic()
            host.publish(node.format("DCMD") + "/vision", cmd.SerializeToString(), qos=0)
            while part not in seen:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no DDATA for {part}")
                time.sleep(0.0005)
            if i >= warmup:
                out.append((seen[part] - t0) * 1000)
            print(f"\r  Sparkplug trigger {i + 1}/{warmup + n}", end="", file=sys.stderr,
                  flush=True)
        print(file=sys.stderr)
    finally:
        host.loop_stop()
        service.stop()
    return out


async def _opcua(url: str, warmup: int, n: int) -> list[float]:
    """`Trigger` calls one after another; ms until `LastRequestId` changes to the call's id."""
    from asyncua import Client

    got: asyncio.Queue = asyncio.Queue()

    class Handler:
        def datachange_notification(self, node, val, data) -> None:
            got.put_nowait((val, time.monotonic()))

    client = Client(url)
    client.set_user("plc")
    client.set_password("bench-password")
    out: list[float] = []
    async with client:
        obj = client.get_node("ns=2;s=Inspector")
        sub = await client.create_subscription(10, Handler())
        await sub.subscribe_data_change(client.get_node("ns=2;s=Inspector.LastRequestId"))
        state = client.get_node("ns=2;s=Inspector.SystemState")
        for i in range(warmup + n):
            while await state.read_value() != "Ready":
                await asyncio.sleep(0.001)
            t0 = time.monotonic()
            ok, rid, msg = await obj.call_method("2:Trigger", f"PN-UA-{i:05d}")
            if not ok:
                raise RuntimeError(f"OPC UA trigger refused: {msg}")
            while True:
                val, t = await asyncio.wait_for(got.get(), 20)
                if val == rid:
                    break
            if i >= warmup:
                out.append((t - t0) * 1000)
            print(f"\r  OPC UA trigger {i + 1}/{warmup + n}", end="", file=sys.stderr,
                  flush=True)
    print(file=sys.stderr)
    return out


if __name__ == "__main__":
    sys.exit(main())
