"""Commands: `cmd/recipe`, `cmd/trigger` and `cmd/thresholds` in, each with its `/ack` out.

Each command kind has its own channel and worker thread, so a trigger is answered while a
recipe switch is still enrolling. What follows holds for every channel.

A retained command is never honoured: it may be hours old. Over MQTT 5 the publisher
subscribes with retain-as-published, so even a retained command published while we are
connected is recognised; over 3.1.1 only the ones replayed at subscribe time can be.
Every other message gets exactly one ack: size and nesting depth are checked before
parsing, anything a handler raises becomes a short error ack (never a traceback), and
the worker thread survives whatever it is given; a busy ack names the request id.
Malformed JSON, a missing or wrong field, or a handler that raises (unknown recipe,
wrong rev) gets `ok: false` with the reason and changes nothing; the recipe switch
itself is the handler's job and runs on this module's worker thread, never on paho's
network thread.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable

from paho.mqtt.client import MQTTMessage

from inspector.core.safe_json import InputError, loads_limited, short_error
from inspector.outputs.mqtt import schemas

log = logging.getLogger("inspector.outputs.mqtt.commands")

RecipeHandler = Callable[[str, int | None], dict]  # (recipe_id, rev) -> {id, rev, sha256}
# (request_id, part_id, camera) -> {camera, part_id}; raises ValueError when not READY
TriggerHandler = Callable[[str, str | None, str | None], dict]
ThresholdHandler = Callable[[dict], dict]  # {class: {threshold?, min_area_mm2?}} -> recipe ref
MAX_PAYLOAD = 64 * 1024
_EXPECTED = (LookupError, ValueError, OSError)  # logged without a traceback


class CommandChannel:
    """One command topic: validates commands and runs them on its own worker thread.

    Subclasses name the schema and the thread and turn a valid command into the fields of
    a successful ack (`run`); whatever `run` raises becomes an error ack.
    """

    schema = ""
    what = "command"
    thread_name = "mqtt-commands"

    def __init__(self, topic: str, send_ack: Callable[[bytes], None], handler=None,
                 max_pending: int = 32) -> None:
        self.topic = topic
        self._send_ack = send_ack
        self._handler = handler
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=max_pending)
        self._stop = threading.Event()
        self.ignored_retained = 0
        self.handled = 0
        self._thread = threading.Thread(target=self._work, name=self.thread_name, daemon=True)
        self._started = False

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def offer(self, msg: MQTTMessage) -> None:
        """Called on paho's thread: filter and enqueue, nothing else."""
        if msg.topic != self.topic:
            return
        if msg.retain:
            self.ignored_retained += 1
            log.warning("ignored a retained message on %s (commands are never retained)",
                        msg.topic)
            return
        try:
            self._queue.put_nowait(bytes(msg.payload))
        except queue.Full:
            log.error("too many pending %s commands; rejecting one", self.what)
            try:  # within the limits, so cheap enough for paho's thread
                rid = _request_id(loads_limited(bytes(msg.payload), MAX_PAYLOAD))
            except Exception:
                rid = None
            self._ack(error_ack(rid, "busy: too many pending commands, try again"))

    def close(self, timeout: float = 5.0) -> None:
        """Finish the command in progress (a recipe switch is not interrupted), then stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread.is_alive() or not self._started

    def ensure_running(self) -> bool:
        """Start a fresh worker if the thread died (the supervisor calls this); False
        when it had to."""
        if self.alive() or self._stop.is_set():
            return True
        log.error("the %s thread is not running; starting a fresh one", self.thread_name)
        self._thread = threading.Thread(target=self._work, name=self.thread_name, daemon=True)
        self._thread.start()
        return False

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                payload = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                ack = self.handle(payload)
            except BaseException as exc:  # anything: answer, keep serving
                log.exception("%s command crashed its handler", self.what)
                ack = error_ack(None, f"internal error: {type(exc).__name__}")
            try:
                self._ack(ack)
            except Exception:
                log.exception("sending a %s command ack failed", self.what)

    def _ack(self, ack: dict) -> None:
        self._send_ack(json.dumps(ack, separators=(",", ":")).encode("utf-8"))

    def handle(self, payload: bytes) -> dict:
        """Validate one command, run it, return the ack (schema `<schema>_ack`)."""
        self.handled += 1
        try:
            doc = loads_limited(payload, MAX_PAYLOAD)
        except InputError as exc:
            log.warning("unusable %s command: %s", self.what, exc)
            return error_ack(None, f"command rejected: {exc}")
        rid = _request_id(doc)
        problem = schemas.first_error(self.schema, doc)
        if problem is not None:
            log.warning("invalid %s command %s: %s", self.what, rid, problem)
            return error_ack(rid, f"invalid command: {problem}")
        assert isinstance(doc, dict)
        if self._handler is None:
            return error_ack(rid, f"{self.what} commands are not available on this station")
        try:
            fields = self.run(rid, doc)
        except _EXPECTED as exc:
            log.warning("%s command %s rejected: %s", self.what, rid, _message(exc))
            return error_ack(rid, _message(exc))
        except Exception as exc:
            log.exception("%s command %s failed", self.what, rid)
            return error_ack(rid, _message(exc))
        return {"request_id": rid, "ok": True, **fields}

    def run(self, rid: str | None, doc: dict) -> dict:
        """Carry out a valid command; the fields of its successful ack."""
        raise NotImplementedError


class RecipeCommands(CommandChannel):
    """`cmd/recipe`: switch the running recipe (on the `mqtt-commands` thread)."""

    schema = "cmd_recipe"
    what = "recipe"
    thread_name = "mqtt-commands"

    def run(self, rid: str | None, doc: dict) -> dict:
        recipe_id, rev = doc["recipe_id"], doc.get("rev")
        log.info("recipe command %s: switch to %s rev %s", rid, recipe_id,
                 "latest" if rev is None else rev)
        ref = self._handler(recipe_id, rev)
        recipe = {k: ref[k] for k in ("id", "rev", "sha256") if k in ref}
        log.info("recipe command %s done: %s", rid, recipe)
        return {"recipe": recipe}


class TriggerCommands(CommandChannel):
    """`cmd/trigger`: inspect the next part (on the `mqtt-trigger` thread)."""

    schema = "cmd_trigger"
    what = "trigger"
    thread_name = "mqtt-trigger"

    def run(self, rid: str | None, doc: dict) -> dict:
        assert rid is not None  # the schema requires it
        got = self._handler(rid, doc.get("part_id"), doc.get("camera"))
        return {"camera": got["camera"], "part_id": got.get("part_id")}


class ThresholdCommands(CommandChannel):
    """`cmd/thresholds`: change rules of the running recipe as a new rev (`mqtt-thresholds`)."""

    schema = "cmd_thresholds"
    what = "thresholds"
    thread_name = "mqtt-thresholds"

    def run(self, rid: str | None, doc: dict) -> dict:
        log.info("thresholds command %s: %s", rid, doc["classes"])
        ref = self._handler(doc["classes"])
        return {"recipe": {k: ref[k] for k in ("id", "rev", "sha256") if k in ref}}


def _request_id(doc: object) -> str | None:
    """The request id if it is usable for correlation, else None."""
    if isinstance(doc, dict):
        rid = doc.get("request_id")
        if isinstance(rid, str) and 0 < len(rid) <= 128:
            return rid
    return None


def _message(exc: BaseException) -> str:
    """An exception's own words (KeyError's str() adds quotes; strip them)."""
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc) or type(exc).__name__


def error_ack(rid: str | None, message: str) -> dict:
    """The `ok: false` ack of any command, its reason cut to one short line."""
    return {"request_id": rid, "ok": False, "error": short_error(message)}
