"""MqttSink: the pipeline's door to the broker.

`emit` commits the result (and its small `plc` payload) to the durable outbox and
returns; the `mqtt-publisher` thread does all network work. `close` drains the outbox
for up to `drain_timeout_s`, publishes retained `stopped` and disconnects cleanly, so
the broker does not send the `offline` will; what was not acknowledged stays in the
outbox and is replayed by the next run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from inspector.config.mqtt import MqttConfig
from inspector.core.result import Result
from inspector.outputs.mqtt.commands import (
    CommandChannel,
    RecipeCommands,
    RecipeHandler,
    ThresholdCommands,
    ThresholdHandler,
    TriggerCommands,
    TriggerHandler,
)
from inspector.outputs.mqtt.outbox import MemoryOutbox, Outbox
from inspector.outputs.mqtt.pending import PendingCommits
from inspector.outputs.mqtt.publisher import AckListener, Publisher
from inspector.outputs.mqtt.thumbnail import Thumbnails
from inspector.outputs.mqtt.topics import Topics
from inspector.outputs.mqtt.wire import JsonWire, Wire
from inspector.outputs.sinks.base import ResultSink

log = logging.getLogger("inspector.outputs.mqtt")

CAMERA_STATES = ("online", "offline", "disabled")
DEFAULT_STATE_DIR = Path("/var/lib/inspector")


def plc_payload(result: Result) -> dict:
    """`{part_id, ok, code, seq, event_id, session, replayed}` from a result; a NG without
    a code gets the generic 1. `event_id` lets a PLC drop a replayed duplicate."""
    ok = result.verdict == "OK"
    code = result.code
    if code is None:
        code = 0 if ok else 1
    doc = {"part_id": result.part_id, "ok": ok, "code": int(code), "seq": result.seq,
           "event_id": result.event_id, "session": result.session, "replayed": False}
    if result.request_id is not None:  # the trigger this part answers
        doc["request_id"] = result.request_id
    return doc


def _dumps(doc: object) -> str:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


class MqttSink(ResultSink):
    """Outbox + publisher + recipe commands for one station.

    Threads: `mqtt-publisher` (drains the outbox, owns the connection), paho's network
    thread (one per connection), `mqtt-commands` (runs `recipe_handler`).
    """

    def __init__(self, config: MqttConfig, site: str, line: str, station: str, session: str,
                 *, recipe_handler: RecipeHandler | None = None,
                 trigger_handler: TriggerHandler | None = None,
                 threshold_handler: ThresholdHandler | None = None,
                 state_dir: Path | None = None,
                 outbox: Outbox | MemoryOutbox | None = None,
                 ack_listener: AckListener | None = None,
                 enterprise: str | None = None, area: str | None = None,
                 cameras: Sequence[str] = ()) -> None:
        if not config.enabled:
            raise ValueError("mqtt.enabled is false: no MqttSink for this station")
        self.config = config
        self.session = session
        self.topics = Topics.for_station(config.prefix, site, line, station, enterprise, area)
        if outbox is None:
            path = config.outbox.path
            if not path.is_absolute():
                path = (state_dir or DEFAULT_STATE_DIR) / path
            outbox = Outbox(path, config.outbox.max_rows, config.outbox.max_age_s,
                            config.outbox.synchronous)
        self.outbox = outbox
        if outbox.depth():
            log.info("outbox %s holds %d result(s) from before; they are replayed",
                     outbox.path, outbox.depth())
        ob = config.outbox
        self.pending = PendingCommits(outbox, ob.pending_max, ob.retry_s, self._fault_changed)
        t = self.topics
        self.commands = RecipeCommands(t.cmd_recipe, self._sender(t.cmd_recipe_ack),
                                       recipe_handler)
        # one channel (and worker thread) per command kind: a trigger never waits behind
        # a recipe switch that is enrolling
        self.channels: list[CommandChannel] = [
            self.commands,
            TriggerCommands(t.cmd_trigger, self._sender(t.cmd_trigger_ack), trigger_handler),
            ThresholdCommands(t.cmd_thresholds, self._sender(t.cmd_thresholds_ack),
                              threshold_handler)]
        self.wire = self._wire(site, line, station, enterprise, area, state_dir, cameras)
        self.publisher = Publisher(config, self.topics,
                                   config.effective_client_id(site, line, station), outbox,
                                   on_message=self._offer, ack_listener=ack_listener,
                                   command_topics=tuple(c.topic for c in self.channels),
                                   wire=self.wire)
        self._closed = False
        self.thumbnails: Thumbnails | None = None
        if config.thumbnail.enabled:
            self.thumbnails = Thumbnails(config.thumbnail, self.topics.camera_thumbnail,
                                         lambda t, p: self.publisher.set_retained(t, p))
        for channel in self.channels:
            channel.start()
        self.publisher.start()

    def _wire(self, site: str, line: str, station: str, enterprise: str | None,
              area: str | None, state_dir: Path | None, cameras: Sequence[str]) -> Wire:
        """Contract v1, or Sparkplug B with the group and edge node named after the
        station's ISA-95 levels unless configured."""
        if self.config.mode == "v1":
            return JsonWire(self.topics)
        from inspector import __version__
        from inspector.outputs.mqtt.sparkplug.wire import SparkplugWire

        sp = self.config.sparkplug
        group = sp.group_id or "-".join(x for x in (enterprise, site) if x)
        node = sp.edge_node_id or "-".join(x for x in (area, line, station) if x)
        state_file = sp.state_file
        if not state_file.is_absolute():
            state_file = (state_dir or DEFAULT_STATE_DIR) / state_file
        log.info("MQTT in Sparkplug B mode: group %s, edge node %s, device %s", group, node,
                 sp.device_id)
        return SparkplugWire(self.topics, group, node, sp.device_id, session=self.session,
                             software=f"inspector {__version__}", state_file=state_file,
                             cameras=cameras)

    # -- ResultSink --------------------------------------------------------------------

    def emit(self, result: Result) -> None:
        """Commit to the outbox (durable once this returns) and wake the publisher.

        When the outbox cannot commit, the result waits in memory (`pending`) and the
        sink reports a fault; when `pending_max` wait, this call holds the result thread
        until a retry succeeds (the supervisor sees it), so no result is ever dropped.
        """
        if self._closed:
            raise RuntimeError("MqttSink.emit after close")
        plc = _dumps(plc_payload(result))
        doc = _dumps(result.payload())
        while self.pending.full() and not self._closed:
            time.sleep(min(self.pending.retry_s, 0.5))
            self.pending.retry()
        self.pending.add(result.event_id, plc, doc)
        self.publisher.wake()

    def retry_pending(self) -> None:
        """Called periodically (Service.tick): commit held results once the disk allows."""
        if len(self.pending) and self.pending.retry():
            self.publisher.wake()

    @property
    def fault(self) -> str | None:
        """Why results cannot be committed now, or None."""
        return self.pending.fault

    def _fault_changed(self, fault: str | None) -> None:
        """The retained `status` says `fault` while results cannot be committed."""
        self.publisher.set_retained(self.topics.status,
                                    b"online" if fault is None else b"fault")

    def state_changed(self, state: dict) -> None:
        self.publisher.set_retained(self.topics.state, _dumps(state).encode("utf-8"))

    def camera_status(self, camera: str, status: str) -> None:
        if status not in CAMERA_STATES:
            raise ValueError(f"camera status {status!r}: expected one of {CAMERA_STATES}")
        self.publisher.set_retained(self.topics.camera_status(camera), status.encode("utf-8"))

    def close(self) -> None:
        """Drain (bounded), publish `stopped`, disconnect, close the outbox. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for channel in self.channels:
            channel.close()
        if self.thumbnails is not None:
            self.thumbnails.close()
        if not self.pending.retry(force=True):
            log.error("outbox still cannot commit at shutdown: %d result(s) lost with this "
                      "process: event_id %s", len(self.pending),
                      ", ".join(self.pending.event_ids()))
        joined = self.publisher.stop(timeout=self.config.drain_timeout_s + 15.0)
        if joined:
            self.outbox.close()
        else:  # pragma: no cover - paho stuck in a socket call; the process is exiting
            log.error("MQTT publisher did not stop in time; outbox left open")

    # -- supervision (runtime.supervisor) ----------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def is_alive(self) -> bool:
        """Whether the publisher thread runs (a closed sink has nothing left to run)."""
        return self._closed or self.publisher.is_alive()

    def restart(self) -> None:
        """Replace a dead publisher with a fresh one on the same outbox and start it."""
        self.publisher = self.publisher.successor()
        self.publisher.start()

    # -- extras ------------------------------------------------------------------------

    def publish_stats(self, stats: dict) -> None:
        """QoS 0 on `stats` (dropped while disconnected); outbox figures are added here."""
        oldest = self.outbox.oldest_created()
        doc = {"ts": time.time(), "session": self.session, **stats, "outbox": {
            "depth": self.outbox.depth(),
            "pending": len(self.pending),
            "dropped": self.outbox.dropped_total(),
            "oldest_age_s": None if oldest is None else round(time.time() - oldest, 3),
            "connected": self.connected,
            "fault": self.fault,
        }}
        self.publisher.send(self.topics.stats, _dumps(doc).encode("utf-8"), qos=0)

    @property
    def connected(self) -> bool:
        return self.publisher.connected.is_set()

    @property
    def last_error(self) -> str | None:
        return self.publisher.last_error

    def _sender(self, topic: str):
        def send(payload: bytes) -> None:
            self.publisher.send(topic, payload, qos=1)
        return send

    def _offer(self, msg) -> None:
        """paho's thread: hand a command to the channel of its topic."""
        for channel in self.channels:
            if msg.topic == channel.topic:
                channel.offer(msg)

    def ready_changed(self, state: dict) -> None:
        """The trigger handshake's state (READY/BUSY/ERROR), retained on `ready`."""
        self.publisher.set_retained(self.topics.ready, _dumps(state).encode("utf-8"))
