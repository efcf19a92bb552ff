"""What the PLC and the MES see in the demo: a plain MQTT subscriber that counts.

It subscribes to the station's topics before inspection starts, so the demo's summary
can show that every result reached the broker and came back out, not just that it was
produced.
"""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt


class CountingSubscriber:
    """`persistent` (the benchmark, with a persistent broker) keeps a durable session, so
    what is published while it reconnects after a broker restart is queued for it."""

    def __init__(self, host: str, port: int, root: str, *, persistent: bool = False,
                 client_id: str = "inspector-demo-viewer") -> None:
        self.root = root.rstrip("/") + "/"
        self.lock = threading.Lock()
        self.event_ids: set[str] = set()
        self.plc = 0
        self.retained: dict[str, str] = {}
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=not persistent)
        if persistent:
            self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        return self._subscribed.wait(timeout)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        client.subscribe(self.root + "#", qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        topic = msg.topic[len(self.root):]
        with self.lock:  # counting only: nothing blocking on paho's thread
            if topic == "result":
                self.event_ids.add(json.loads(msg.payload)["event_id"])
            elif topic == "plc":
                self.plc += 1
            elif msg.retain or topic in ("status", "state"):
                self.retained[topic] = msg.payload.decode(errors="replace")[:80]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
