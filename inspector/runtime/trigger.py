"""The trigger handshake: a PLC asks for one part, the station says READY, BUSY or ERROR.

`cmd/trigger {request_id, part_id?, camera?}` reaches `TriggerDesk.fire` (on the MQTT
trigger thread). With one part in flight at a time, the desk:
- fires the camera's software trigger; a free-running camera's next frame is taken
  instead;
- on the acquisition thread (`tag`), gives the first frame of that camera captured after
  the trigger the PLC's `part_id` and the `request_id`, so both travel in the result and
  the `plc` message;
- on the result thread (`finished`), clears the part when its result is out.

The retained `ready` topic follows every change:
- BUSY with the request while a part is in flight, and while a recipe switch runs;
- ERROR while a camera is offline or nothing is inspecting;
- READY otherwise.

A trigger that is not READY gets an error ack naming the reason; nothing is queued
silently. A part whose frame does not come within `timeout_s` is given up (logged, and
`ready` says so), so a lost trigger cannot leave the station BUSY for ever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from inspector.acquisition.base import FrameSource
from inspector.core.errors import InspectorError
from inspector.core.frames import Frame
from inspector.runtime.pipeline import Finished

log = logging.getLogger(__name__)


class TriggerRefused(InspectorError, ValueError):
    """The station cannot take a trigger now; the message says why (the error ack)."""


@dataclass
class _Part:
    request_id: str
    part_id: str | None
    camera: str
    t_wall: float  # time.time() of the trigger: frames captured after it qualify
    t0: float  # time.monotonic() of the trigger
    captured: bool = False


class TriggerDesk:
    """One triggered part in flight at a time, and the READY/BUSY/ERROR state."""

    def __init__(self, sources: list[FrameSource], publish: Callable[[dict], None],
                 timeout_s: float = 10.0) -> None:
        self._sources = {s.name: s for s in sources}
        self._default = sources[0].name if sources else None
        self._publish = publish
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._part: _Part | None = None
        self._switching = False
        self._note = ""  # why the last part was given up, shown with READY until the next
        self._last: dict | None = None
        # trigger -> result out, seconds, of the last parts (bounded: a line runs for months)
        self.latencies: deque[float] = deque(maxlen=1000)

    # -- the MQTT trigger thread ------------------------------------------------------
    def fire(self, request_id: str, part_id: str | None, camera: str | None) -> dict:
        """Accept a trigger and fire it, or raise TriggerRefused with the reason."""
        cam = camera or self._default
        with self._lock:
            self._expire()
            if cam not in self._sources:
                raise TriggerRefused(f"unknown camera {cam!r}; cameras: "
                                     f"{', '.join(self._sources) or 'none'}")
            state = self._state()
            if state["state"] != "READY":
                raise TriggerRefused(f"{state['state'].lower()}: {state['reason']}")
            self._part = _Part(request_id, part_id, cam, time.time(), time.monotonic())
            self._note = ""
        try:
            self._sources[cam].trigger()  # a free-running camera ignores it
        except Exception as exc:
            with self._lock:
                self._part = None
            self.announce()
            raise TriggerRefused(f"camera {cam}: trigger failed: {exc}") from None
        log.info("trigger %s: part %s on camera %s", request_id, part_id or "(camera's)", cam)
        self.announce()
        return {"camera": cam, "part_id": part_id}

    # -- the acquisition threads ------------------------------------------------------
    def tag(self, frame: Frame) -> None:
        """Give the triggered part's ids to the first frame captured after the trigger."""
        part = self._part
        if part is None or part.captured or frame.camera != part.camera:
            return
        with self._lock:
            if self._part is not part or part.captured or frame.ts_capture < part.t_wall:
                return
            part.captured = True
        if part.part_id is not None:
            frame.part_id = part.part_id
        frame.meta["request_id"] = part.request_id

    # -- the result thread ------------------------------------------------------------
    def finished(self, item: Finished) -> None:
        """The triggered part's result is out: READY for the next."""
        part = self._part
        if part is None or item.result.request_id != part.request_id:
            return
        with self._lock:
            if self._part is part:
                self._part = None
                self.latencies.append(time.monotonic() - part.t0)
        self.announce()

    # -- the service ------------------------------------------------------------------
    def switching(self, on: bool) -> None:
        """A recipe switch starts (BUSY) or ends."""
        with self._lock:
            self._switching = on
        self.announce()

    def tick(self) -> None:
        """Give up a part whose frame never came; publish camera state changes."""
        with self._lock:
            self._expire()
        self.announce()

    def state(self) -> dict:
        """The `ready` payload now."""
        with self._lock:
            return self._state()

    def announce(self) -> None:
        """Publish `ready` when it changed (retained: a PLC that connects later sees it)."""
        state = self.state()
        key = {k: v for k, v in state.items() if k != "ts"}
        if key != self._last:
            self._last = key
            self._publish(state)

    def _state(self) -> dict:
        now = time.time()
        if self._part is not None:
            p = self._part
            return {"state": "BUSY", "reason": f"inspecting part {p.part_id or '(camera)'} "
                    f"of trigger {p.request_id}", "request_id": p.request_id, "ts": now}
        if self._switching:
            return {"state": "BUSY", "reason": "switching recipe", "ts": now}
        offline = [f"camera {n} is {s.status()}" for n, s in self._sources.items()
                   if s.status() != "online"]
        if offline or not self._sources:
            return {"state": "ERROR", "reason": "; ".join(offline) or "no camera", "ts": now}
        return {"state": "READY", "reason": self._note or "waiting for a trigger", "ts": now}

    def _expire(self) -> None:
        p = self._part
        if p is not None and time.monotonic() - p.t0 > self.timeout_s:
            self._note = (f"trigger {p.request_id} was given up: "
                          f"{'no result' if p.captured else 'no frame'} within "
                          f"{self.timeout_s:g} s")
            log.error("%s", self._note)
            self._part = None
