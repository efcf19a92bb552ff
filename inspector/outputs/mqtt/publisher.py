"""The publisher thread: drains the outbox to the broker at QoS 1, deletes on PUBACK.

One paho client per connection attempt (paho 2.x, CallbackAPIVersion.VERSION2):
`connect_async` plus `loop_start` run the network loop in paho's thread; when the attempt
fails, is refused or the connection is lost, this thread builds a fresh client after an
exponential, jittered backoff (reconnect_min_s doubling up to reconnect_max_s; reset
after a connection that held for 10 s). A fresh client per
connection means paho never re-sends a stale in-memory copy: everything unacknowledged
comes back from the outbox, marked `"replayed": true`, and the password file is read
again on every attempt (a fixed password takes effect without a restart).

paho callbacks never block: they set flags, put PUBACKs on a queue and wake this thread;
all SQLite work, JSON work and publishing happen here.

`replayed` means "this event may have been published before": rows found in the
outbox at start-up and rows handed to a connection that was lost before their PUBACK.
"""

from __future__ import annotations

import logging
import queue
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from inspector.config.mqtt import MqttConfig, PasswordError
from inspector.outputs.mqtt.outbox import Outbox, OutboxError
from inspector.outputs.mqtt.topics import Topics
from inspector.outputs.mqtt.wire import JsonWire, Msg, Wire

log = logging.getLogger("inspector.outputs.mqtt")


class _PahoNoise(logging.Filter):
    """paho 2.2 logs ERROR "Client is not connected" once after every closed socket,
    clean disconnects included; on_disconnect already tells us, so drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


_paho_log = logging.getLogger("inspector.outputs.mqtt.paho")
_paho_log.addFilter(_PahoNoise())

AckListener = Callable[[str, str, float], None]  # (kind "plc"|"result", event_id, t_puback)
MessageHandler = Callable[[mqtt.MQTTMessage], None]  # must not block: runs in paho's thread

_STABLE_S = 10.0  # a connection that lasted this long resets the backoff
_AGE_EVERY_S = 10.0  # how often the age cap is applied
_STOPPED_ACK_S = 2.0  # how long close() waits for the PUBACK of the retained `stopped`


@dataclass
class _RowState:
    event_id: str
    pending: int  # PUBACKs still expected for this row in this connection
    failed: bool = False


@dataclass
class _Conn:
    """One client and what its callbacks observed (flags written by paho's thread)."""

    client: mqtt.Client
    connected: bool = False
    closed: bool = False
    refused: str | None = None
    fail_count: int = 0  # TCP/TLS connect failures (paho retries them itself)
    receive_max: int | None = None
    connected_at: float = 0.0
    mids: dict[int, tuple[str, int]] = field(default_factory=dict)  # mid -> (kind, row id):
    # kind "plc" or "result" with its row, "ctl" or "barrier" with -1
    barriers: dict[int, list[int]] = field(default_factory=dict)  # barrier mid -> row ids
    unconfirmed: list[int] = field(default_factory=list)  # rows sent before the next barrier
    ctl_acked: set[int] = field(default_factory=set)


class Publisher:
    """Owns the `mqtt-publisher` thread and, per connection, one paho network thread."""

    def __init__(self, cfg: MqttConfig, topics: Topics, client_id: str, outbox: Outbox,
                 on_message: MessageHandler | None = None,
                 ack_listener: AckListener | None = None,
                 command_topics: tuple[str, ...] | None = None,
                 wire: Wire | None = None) -> None:
        self.cfg, self.topics, self.client_id, self.outbox = cfg, topics, client_id, outbox
        self.wire: Wire = wire or JsonWire(topics)
        self._on_message_cb = on_message
        # what `on_message` is given: the command topics, subscribed on every connect
        self.command_topics = command_topics or (topics.cmd_recipe,)
        self._ack_listener = ack_listener
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._acks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards the three control structures below
        self._retained: dict[str, bytes] = {}
        self._dirty: set[str] = set()
        self._transient: deque[tuple[str, bytes, int]] = deque(maxlen=1000)
        self._cursor = 0  # last row id handed to the current connection
        self._replay_upto = outbox.max_id()  # rows up to here may have been sent before
        self._rows: dict[int, _RowState] = {}
        self._plc_acked: set[int] = set()
        self._next_age = 0.0
        self._last_error: str | None = None
        self._fail_kind: str | None = None
        self._ssl_ctx: ssl.SSLContext | None = None
        self.connected = threading.Event()
        self.acked_rows = 0
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)

    # -- API for the sink (any thread) -------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        """Whether the publisher thread runs: what the supervisor watches."""
        return self._thread.is_alive()

    def successor(self) -> Publisher:
        """A fresh publisher (not started) on the same outbox, handlers and retained state
        (recipe, camera status): what replaces this one when its thread has died."""
        new = Publisher(self.cfg, self.topics, self.client_id, self.outbox,
                        on_message=self._on_message_cb, ack_listener=self._ack_listener,
                        command_topics=self.command_topics, wire=self.wire)
        with self._lock:
            retained = dict(self._retained)
        for topic, payload in retained.items():
            new.set_retained(topic, payload)
        return new

    def wake(self) -> None:
        """New rows in the outbox."""
        self._wake.set()

    def set_retained(self, topic: str, payload: bytes) -> None:
        """Publish retained at QoS 1 now or after the next connect (latest value wins)."""
        with self._lock:
            self._retained[topic] = payload
            self._dirty.add(topic)
        self._wake.set()

    def send(self, topic: str, payload: bytes, qos: int) -> None:
        """A message outside the outbox (command ack, stats). QoS 0 ones are dropped
        while disconnected; QoS 1 ones wait in memory (bounded) for the next connect."""
        if qos == 0 and not self.connected.is_set():
            return
        with self._lock:
            self._transient.append((topic, payload, qos))
        self._wake.set()

    @property
    def last_error(self) -> str | None:
        """The current connection problem in words (None while connected)."""
        return self._last_error

    def stop(self, timeout: float | None = None) -> bool:
        """Drain for up to drain_timeout_s, publish `stopped`, disconnect; True if joined."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- paho callbacks (paho's thread: flags and queues only) -------------------------

    def _cb_connect(self, client, conn: _Conn, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            conn.refused = str(reason_code)
        else:
            conn.receive_max = getattr(properties, "ReceiveMaximum", None)
            conn.connected = True
        self._wake.set()

    def _cb_connect_fail(self, client, conn: _Conn) -> None:
        conn.fail_count += 1
        self._wake.set()

    def _cb_disconnect(self, client, conn: _Conn, flags, reason_code, properties) -> None:
        conn.closed = True
        self._wake.set()

    def _cb_publish(self, client, conn: _Conn, mid, reason_code, properties) -> None:
        failure = str(reason_code) if reason_code.is_failure else None
        self._acks.put((conn, mid, failure, time.monotonic()))
        self._wake.set()

    def _cb_socket_open(self, client, conn: _Conn, sock) -> None:
        # No Nagle: `result` follows `plc` at once; waiting for the ACK of `plc` would
        # delay it by a round trip or a delayed-ACK timer.
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):  # unix socket or websocket wrapper
            pass

    def _cb_message(self, client, conn: _Conn, msg: mqtt.MQTTMessage) -> None:
        for item in self.wire.incoming(msg):
            if isinstance(item, Msg):  # an error ack the wire wrote itself
                self.send(item.topic, bytes(item.payload, "utf-8") if isinstance(
                    item.payload, str) else item.payload, item.qos)
            elif self._on_message_cb is not None:
                self._on_message_cb(item)

    # -- the publisher thread ----------------------------------------------------------

    def _run(self) -> None:
        backoff = self.cfg.reconnect_min_s
        while not self._stop.is_set():
            try:
                conn = self._open()
            except (PasswordError, OSError, ValueError) as exc:
                self._error(f"MQTT client setup failed: {exc}")
                conn = None
            if conn is not None:
                try:
                    self._attempt(conn)
                except Exception:  # the thread must survive anything; the outbox is safe
                    log.exception("MQTT publisher error; reconnecting")
                finally:
                    self._close(conn)
                if conn.connected and time.monotonic() - conn.connected_at >= _STABLE_S:
                    backoff = self.cfg.reconnect_min_s
            if self._stop.is_set():
                break
            delay = backoff * random.uniform(0.8, 1.2)
            backoff = min(backoff * 2, self.cfg.reconnect_max_s)
            self._idle(delay)

    def _open(self) -> _Conn:
        """Build a paho client for one connection; reads the password now."""
        cfg = self.cfg
        v5 = cfg.protocol == 5
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                             clean_session=None if v5 else True, reconnect_on_failure=False)
        conn = _Conn(client)
        client.user_data_set(conn)
        client.enable_logger(_paho_log)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.read_password())
        if cfg.tls is not None:
            self._ssl_ctx = _tls_context(cfg)
            client.tls_set_context(self._ssl_ctx)
        will = self.wire.will()
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        client.max_inflight_messages_set(2 * cfg.max_inflight + 50)
        # One attempt per client: with reconnect_on_failure off paho tries once, then would
        # sleep its reconnect delay before its thread ends; the backoff is ours (_run).
        client.reconnect_delay_set(0, 0)
        client.on_connect = self._cb_connect
        client.on_connect_fail = self._cb_connect_fail
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        client.on_message = self._cb_message
        client.on_socket_open = self._cb_socket_open
        if v5:
            client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive, clean_start=True)
        else:
            client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
        client.loop_start()
        return conn

    def _attempt(self, conn: _Conn) -> None:
        """Wait for the outcome of this client's one connection attempt, serve it if it
        succeeded, otherwise say why (each kind of failure logged once per streak)."""
        where = f"{self.cfg.host}:{self.cfg.port}"
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if conn.refused is not None:
                self._fail("refused",
                           lambda: f"MQTT broker {where} refused the connection: {conn.refused} "
                           f"(username {self.cfg.username!r}, {self.cfg.password_source()}); "
                           "results stay in the outbox, retrying with backoff")
                return
            if conn.connected:
                self._fail_kind = None
                self._serve(conn)
                return
            if conn.closed or conn.fail_count:
                what = "closed the connection before CONNACK" if conn.closed else "connect failed"
                self._fail(what, lambda w=what: f"MQTT broker {where}: {w}: {self._diagnose()}; "
                           "results stay in the outbox, retrying with backoff up to "
                           f"{self.cfg.reconnect_max_s:g} s")
                return
            self._housekeeping()

    def _fail(self, kind: str, message: Callable[[], str]) -> None:
        """Record a failed attempt; the (possibly slow) message is built once per streak."""
        if kind != self._fail_kind or self._last_error is None:
            self._error(message())
        self._fail_kind = kind

    def _serve(self, conn: _Conn) -> None:
        conn.connected_at = time.monotonic()
        self.connected.set()
        if self._last_error is not None:
            log.info("MQTT connected to %s:%d again", self.cfg.host, self.cfg.port)
        else:
            log.info("MQTT connected to %s:%d as %s", self.cfg.host, self.cfg.port, self.client_id)
        self._last_error = None
        # subscribe before the hello: whoever sees the births (or READY) and answers with a
        # command finds it routed, since the broker handles a connection's packets in order
        # (Sparkplug asks for NCMD/DCMD subscriptions before NBIRTH)
        if self._on_message_cb is not None:
            opts = (SubscribeOptions(qos=1, retainAsPublished=True)
                    if self.cfg.protocol == 5 else None)
            for topic in self.wire.subscriptions(self.command_topics):
                if opts is not None:
                    conn.client.subscribe(topic, options=opts)
                else:
                    conn.client.subscribe(topic, qos=1)
        self._hello(conn)
        window = self.cfg.max_inflight
        if conn.receive_max:
            window = max(2, min(window, conn.receive_max - 4))
        deadline: float | None = None
        while True:
            self._process_acks()
            if conn.closed:
                log.warning("MQTT connection to %s:%d lost; %d result(s) in the outbox",
                            self.cfg.host, self.cfg.port, self.outbox.depth())
                return
            if self._stop.is_set():
                deadline = deadline or time.monotonic() + self.cfg.drain_timeout_s
                if self.outbox.depth() == 0 or time.monotonic() >= deadline:
                    self._say_stopped(conn)
                    return
            if self.wire.rebirth_due():
                self._hello(conn)
            self._flush_control(conn)
            self._fill(conn, window)
            self._housekeeping()
            self._wake.wait(0.25)
            self._wake.clear()

    def _hello(self, conn: _Conn) -> None:
        """What a connection (or a host's rebirth request) publishes first."""
        with self._lock:
            retained = dict(self._retained)
        msgs, again = self.wire.hello(retained)
        for m in msgs:
            self._send(conn, m.topic, m.payload, "ctl", -1, qos=m.qos, retain=m.retain)
        with self._lock:
            if again:
                self._dirty.update(self._retained)
            else:  # the births carried them
                self._dirty.difference_update(retained)

    def _fill(self, conn: _Conn, window: int) -> None:
        """Hand the next rows to paho, `plc` before `result`, within the in-flight window.

        v1 counts QoS 1 messages in flight (two per row); a barrier wire counts the rows
        not yet confirmed, then sends one barrier after the batch."""
        if self.wire.confirms_by_barrier:
            room = window - len(self._rows)
        else:
            room = (window - len(conn.mids)) // 2
        if room < 1:
            return
        try:
            for row in self.outbox.fetch_after(self._cursor, room):
                msgs = self.wire.row(row, row.id <= self._replay_upto,
                                     row.id not in self._plc_acked)
                self._rows[row.id] = _RowState(row.event_id, sum(m.qos > 0 for _, m in msgs))
                self._cursor = row.id
                for kind, m in msgs:
                    if self._send(conn, m.topic, m.payload, kind, row.id, qos=m.qos) is None:
                        return
                if self.wire.confirms_by_barrier:
                    conn.unconfirmed.append(row.id)
        finally:
            self._barrier(conn)

    def _barrier(self, conn: _Conn) -> None:
        """After QoS 0 rows: a QoS 1 message whose PUBACK confirms them (the broker takes
        one connection's packets in order)."""
        if not conn.unconfirmed:
            return
        m = self.wire.barrier()
        if m is None:
            return
        mid = self._send(conn, m.topic, m.payload, "barrier", -1, qos=1)
        if mid is not None:
            for row_id in conn.unconfirmed:
                self._rows[row_id].pending += 1
            conn.barriers[mid] = conn.unconfirmed
            conn.unconfirmed = []

    def _send(self, conn: _Conn, topic: str, payload: str | bytes, kind: str, row_id: int,
              qos: int = 1, retain: bool = False) -> int | None:
        """Hand one message to paho; its mid, or None if the connection is going down
        (rows are then replayed on the next connection)."""
        info = conn.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return None
        if qos:
            conn.mids[info.mid] = (kind, row_id)
        return info.mid

    def _process_acks(self) -> None:
        done: list[int] = []
        while True:
            try:
                conn, mid, failure, t = self._acks.get_nowait()
            except queue.Empty:
                break
            entry = conn.mids.pop(mid, None)
            if entry is None:
                continue
            kind, row_id = entry
            if kind == "ctl":
                conn.ctl_acked.add(mid)
                continue
            if kind == "barrier":
                # even a refused barrier (MQTT 5 reason code) was taken after the rows
                for rid in conn.barriers.pop(mid, []):
                    self._row_acked(rid, ("plc", "result"), None, t, done)
                continue
            self._row_acked(row_id, (kind,), failure, t, done)
        if done:
            try:
                self.outbox.delete(done)
            except OutboxError as exc:  # the rows are replayed later: duplicates, no loss
                log.error("%s", exc)
            self._plc_acked.difference_update(done)
            self.acked_rows += len(done)

    def _row_acked(self, row_id: int, kinds: tuple[str, ...], failure: str | None, t: float,
                   done: list[int]) -> None:
        """One PUBACK for a row (or a barrier's for each row it confirms)."""
        st = self._rows.get(row_id)
        if st is None:
            return
        if failure is not None:
            st.failed = True
            log.error("MQTT broker rejected %s of event %s: %s; kept in the outbox",
                      kinds[0], st.event_id, failure)
        else:
            if "plc" in kinds:
                self._plc_acked.add(row_id)
            if self._ack_listener is not None:
                for kind in kinds:
                    self._ack_listener(kind, st.event_id, t)
        st.pending -= 1
        if st.pending <= 0:
            del self._rows[row_id]
            if not st.failed:
                done.append(row_id)

    def _flush_control(self, conn: _Conn) -> None:
        with self._lock:
            retained = [(t, self._retained[t]) for t in sorted(self._dirty)]
            self._dirty.clear()
            transient = list(self._transient)
            self._transient.clear()
        for m in self.wire.retained(retained) if retained else []:
            self._send(conn, m.topic, m.payload, "ctl", -1, qos=m.qos, retain=m.retain)
        for i, (topic, payload, qos) in enumerate(transient):
            m = self.wire.transient(topic, payload, qos)
            if m is None:
                continue
            if self._send(conn, m.topic, m.payload, "ctl", -1, qos=m.qos,
                          retain=m.retain) is None:
                with self._lock:  # keep the unsent ones for the next connection
                    self._transient.extendleft(reversed(transient[i:]))
                return

    def _say_stopped(self, conn: _Conn) -> None:
        """Clean shutdown: retained `stopped` (Sparkplug: NDEATH), wait for its PUBACK,
        DISCONNECT (no will)."""
        bye = self.wire.goodbye()
        mid = self._send(conn, bye.topic, bye.payload, "ctl", -1, qos=1, retain=bye.retain)
        if mid is not None:
            end = time.monotonic() + _STOPPED_ACK_S
            while mid not in conn.ctl_acked and not conn.closed and time.monotonic() < end:
                self._wake.wait(0.05)
                self._wake.clear()
                self._process_acks()
        conn.client.disconnect()
        log.info("MQTT disconnected cleanly; %d result(s) left in the outbox",
                 self.outbox.depth())

    def _close(self, conn: _Conn) -> None:
        """Stop paho's thread, keep the PUBACKs it delivered, mark the rest for replay."""
        if conn.connected and not conn.closed:  # only after an error: paho's loop would
            conn.client.disconnect()             # otherwise wait for its pending PUBACKs
        conn.client.loop_stop()
        self._process_acks()
        self.connected.clear()
        self._replay_upto = max(self._replay_upto, self._cursor)
        self._cursor = 0
        self._rows.clear()
        conn.mids.clear()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_age:
            self._next_age = now + _AGE_EVERY_S
            try:
                self.outbox.enforce_age()
            except OutboxError as exc:
                log.error("%s", exc)

    def _idle(self, seconds: float) -> None:
        """Back off, still applying the age cap; returns early on stop."""
        end = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < end:
            self._housekeeping()
            self._stop.wait(min(0.5, max(0.0, end - time.monotonic())))

    def _error(self, msg: str) -> None:
        """Log a connection problem once per distinct message; keep it for health/status."""
        if msg != self._last_error:
            log.error("%s", msg)
        self._last_error = msg

    def _diagnose(self) -> str:
        """Why TCP/TLS to the broker fails, in words (bounded: a few seconds)."""
        host, port = self.cfg.host, self.cfg.port
        try:
            with socket.create_connection((host, port), timeout=3.0) as sock:
                if self._ssl_ctx is None:
                    return "TCP connects; MQTT handshake failed"
                with self._ssl_ctx.wrap_socket(sock, server_hostname=host) as tls:
                    tls.settimeout(1.0)
                    try:
                        tls.recv(1)  # TLS 1.3 reports a refused client cert on first read
                    except TimeoutError:
                        pass
                    return "TLS handshake works; MQTT handshake failed"
        except ssl.SSLError as exc:
            return f"TLS failed: {exc}"
        except OSError as exc:
            return f"{exc.strerror or exc}"


def _tls_context(cfg: MqttConfig) -> ssl.SSLContext:
    """Verify the broker (CA or system store), present a client cert if configured.
    Errors name the file, which ssl's own messages do not."""
    assert cfg.tls is not None
    tls = cfg.tls
    try:
        ctx = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"tls.ca {tls.ca}: {exc}") from None
    if tls.cert is not None and tls.key is not None:
        try:
            ctx.load_cert_chain(str(tls.cert), str(tls.key))
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"tls.cert {tls.cert} / tls.key {tls.key}: {exc}") from None
    return ctx

