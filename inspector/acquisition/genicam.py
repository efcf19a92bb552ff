"""GenICam camera source: harvesters + a GenTL producer, configured, triggered, reconnecting.

Threads: none of its own. The pipeline's acquisition thread calls `grab`, which polls
with `ImageAcquirer.try_fetch(timeout=...)` (never `fetch()` without a timeout, never
harvesters' `run_as_thread`), copies the image into a FramePool buffer and re-queues the
GenTL buffer at the end of the `with` block. `trigger` (MQTT/PLC thread) and
`apply_features` (recipe swap) may come from other threads; `_FairLock` lets them in
between two fetches so a busy grab loop cannot starve them.

Device loss: an exception from the producer, an invalid acquirer or a closed device, or
(free-run) `lost_after_timeouts` fetches in a row without a frame, or (software trigger)
a trigger left unanswered for `trigger.timeout_s`. The acquirer is then disposed,
`status()` says "offline", and later `grab` calls try to reconnect with exponential
backoff (`reconnect_backoff_s`), each call still returning within its timeout plus at
most one reconnect attempt. One acquirer exists per connection, never one per frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import cv2
import numpy as np
from harvesters.core import Callback, ImageAcquirer

from inspector.acquisition.base import FrameSource, SourceError
from inspector.acquisition.genicam_features import (
    LAYOUT_NODES,
    FeatureError,
    apply_features,
    describe,
    get_node,
)
from inspector.acquisition.genicam_producer import DeviceEntry, ProducerHub, find_ctis
from inspector.config.sources import GenicamSourceConfig
from inspector.core.frames import Frame, FramePool

log = logging.getLogger(__name__)

# PFNC format -> (channels, dtype, cv2 code to mono, cv2 code to RGB); None: plain copy.
PIXEL_FORMATS: dict[str, tuple[int, type, int | None, int | None]] = {
    "Mono8": (1, np.uint8, None, cv2.COLOR_GRAY2RGB),
    "Mono10": (1, np.uint16, None, None),
    "Mono12": (1, np.uint16, None, None),
    "Mono14": (1, np.uint16, None, None),
    "Mono16": (1, np.uint16, None, None),
    "RGB8": (3, np.uint8, cv2.COLOR_RGB2GRAY, None),
    "BGR8": (3, np.uint8, cv2.COLOR_BGR2GRAY, cv2.COLOR_BGR2RGB),
    "RGBa8": (4, np.uint8, cv2.COLOR_RGBA2GRAY, cv2.COLOR_RGBA2RGB),
    "BGRa8": (4, np.uint8, cv2.COLOR_BGRA2GRAY, cv2.COLOR_BGRA2RGB),
}
_OPEN_STATUS_BAD = 3  # DEVICE_ACCESS_STATUS_NOACCESS
POLL_S = 0.005  # sleep between two buffer checks (GIL released): the most delay it adds
POLL_CHECK_S = 0.0001  # try_fetch's own timeout: one check, no wait (see _fetch)


class _FairLock:
    """A lock the grab loop re-takes only when no other thread is waiting for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._waiting = 0

    @contextmanager
    def priority(self) -> Iterator[None]:
        """For control calls: registers as waiting so the grab loop yields."""
        with self._cond:
            self._waiting += 1
        try:
            with self._lock:
                yield
        finally:
            with self._cond:
                self._waiting -= 1
                self._cond.notify_all()

    @contextmanager
    def loop(self, timeout: float) -> Iterator[None]:
        """For grab: waits (up to `timeout`) until control calls are done."""
        with self._cond:
            self._cond.wait_for(lambda: self._waiting == 0, timeout=max(timeout, 0))
        with self._lock:
            yield


class _IncompleteCounter(Callback):
    """harvesters reports incomplete buffers only through this callback."""

    def __init__(self, counters: dict[str, int]) -> None:
        self._counters = counters

    def emit(self, context: object = None) -> None:
        self._counters["incomplete"] += 1


def list_devices(cti: str | None = None) -> list[DeviceEntry]:
    """Devices on the given producer (or GENICAM_GENTL64_PATH), for `inspector cameras`."""
    hub = ProducerHub.acquire(find_ctis(cti))
    try:
        return hub.devices()
    finally:
        hub.release()


class GenicamSource(FrameSource):
    """A GenICam camera delivering frames into FramePool buffers."""

    kind = "genicam"

    def __init__(
        self, name: str, cfg: GenicamSourceConfig, pipeline_depth: int | None = None
    ) -> None:
        super().__init__(name)
        self.cfg = cfg
        depth = cfg.pipeline_depth if pipeline_depth is None else pipeline_depth
        self.num_buffers = max(cfg.num_buffers, depth + 2)
        self.search = {k: getattr(cfg, k) for k in ("serial_number", "user_defined_name", "model")}
        self.counters: dict[str, int] = dict.fromkeys(
            ("frames", "timeouts", "incomplete", "pool_drops", "losses", "reconnects",
             "reconnect_failures", "triggers", "part_id_errors"), 0)  # fmt: skip
        self.last_error: str | None = None
        self.device: DeviceEntry | None = None
        self._recipe_features: dict[str, Any] = {}
        self._hub: ProducerHub | None = None
        self._ia: ImageAcquirer | None = None
        self._lock = _FairLock()  # acquirer lifetime, fetches, feature writes
        self._life = threading.Lock()  # held briefly: swapping/destroying _ia, trigger
        self._closing = threading.Event()
        self._frame_id = 0
        self._consecutive_timeouts = 0
        self._outstanding = 0  # software triggers without a frame yet
        self._outstanding_since: float | None = None
        self._backoff = cfg.reconnect_backoff_s[0]
        self._next_attempt = 0.0
        self._failures_at_loss = 0
        self._has_timestamp_ns = True

    # -- lifecycle ---------------------------------------------------------------------

    def open(self, pool: FramePool) -> None:
        """Load the producer, open and configure the device, start streaming.

        Configuration mistakes (no such device, bad feature values) raise here.
        """
        super().open(pool)
        self._closing.clear()
        self._hub = ProducerHub.acquire(find_ctis(self.cfg.cti))
        try:
            with self._lock.priority():
                self._connect()
        except Exception:
            self._hub.release()
            self._hub = None
            raise

    def close(self) -> None:
        """Stop streaming and release the device and producer; safe to call twice."""
        self._closing.set()
        with self._lock.priority():
            self._drop_acquirer()
            if self._hub is not None:
                self._hub.release()
                self._hub = None

    @property
    def triggered(self) -> bool:
        return self.cfg.trigger.mode != "off"

    def status(self) -> str:
        """`online` while an acquirer streams, else `offline`."""
        ia = self._ia
        return "online" if ia is not None and ia.is_acquiring() else "offline"

    def stats(self) -> dict[str, Any]:
        """Counters plus state, for the stats topic and tests."""
        return {**self.counters, "status": self.status(), "last_error": self.last_error,
                "num_buffers": self.num_buffers}  # fmt: skip

    # -- connection --------------------------------------------------------------------

    def _trigger_features(self, node_map: Any) -> dict[str, Any]:
        """SFNC trigger nodes for the configured mode (Off only if the camera has it)."""
        trig = self.cfg.trigger
        out: dict[str, Any] = {}
        has = node_map.has_node
        if trig.mode == "off":
            if has("TriggerMode"):
                out = {"TriggerSelector": trig.selector} if has("TriggerSelector") else {}
                out["TriggerMode"] = "Off"
            return out
        if has("TriggerSelector"):
            out["TriggerSelector"] = trig.selector
        out["TriggerMode"] = "On"
        out["TriggerSource"] = "Software" if trig.mode == "software" else trig.source
        if trig.mode == "hardware" and trig.activation:
            out["TriggerActivation"] = trig.activation
        return out

    def _connect(self) -> None:
        """Create, configure and start one acquirer (caller holds the lock)."""
        assert self._hub is not None
        ia = self._hub.create_acquirer(self.search, self.num_buffers)
        try:
            ia.add_callback(
                ImageAcquirer.Events.INCOMPLETE_BUFFER, _IncompleteCounter(self.counters)
            )
            nm = ia.remote_device.node_map
            try:
                wanted = {**self.cfg.features, **self._trigger_features(nm)}
                apply_features(nm, {**wanted, **self._recipe_features})
                if self.cfg.trigger.mode == "software":
                    get_node(nm, "TriggerSoftware", "software trigger")
            except FeatureError as e:
                raise FeatureError(f"camera {self.name!r}: {e}") from None
            self._check_format(nm.PixelFormat.value)
            ia.timeout_period_on_update_event_data_call = 0  # never wait in GenTL: _fetch
            ia.start()
        except Exception:
            self._hub.dispose(ia)
            raise
        self.device = next((d for d in self._hub.devices() if d.id_ == ia.device.id_), self.device)
        with self._life:
            self._ia = ia
        self._consecutive_timeouts = 0
        self._outstanding, self._outstanding_since = 0, None
        self._has_timestamp_ns = True
        self._backoff = self.cfg.reconnect_backoff_s[0]

    def _check_format(self, fmt: str) -> None:
        """Refuse pixel formats (or format/output pairs) the frame copy cannot handle."""
        if fmt not in PIXEL_FORMATS:
            raise SourceError(f"camera {self.name!r}: PixelFormat {fmt!r} is not supported; "
                              f"use one of {', '.join(PIXEL_FORMATS)}")  # fmt: skip
        if self.cfg.output == "rgb" and PIXEL_FORMATS[fmt][1] is not np.uint8:
            raise SourceError(
                f"camera {self.name!r}: output 'rgb' needs an 8-bit format, got {fmt}"
            )

    def _drop_acquirer(self) -> None:
        """Dispose the current acquirer, if any (caller holds the lock)."""
        with self._life:
            ia, self._ia = self._ia, None
        if ia is not None and self._hub is not None:
            self._hub.dispose(ia)

    def _lose(self, reason: str) -> None:
        """The device is gone or stalled: go offline and schedule a reconnect."""
        self.counters["losses"] += 1
        self.last_error = reason
        log.warning("camera %s offline: %s", self.name, reason)
        self._drop_acquirer()
        self._failures_at_loss = self.counters["reconnect_failures"]
        self._backoff = self.cfg.reconnect_backoff_s[0]
        self._next_attempt = time.monotonic() + self._backoff

    def _try_reconnect(self) -> None:
        """One reconnect attempt; on failure the next waits twice as long (capped).

        The first attempt reuses the device list (a stalled device is still listed);
        later ones re-enumerate first, as an unplugged device comes back with a new entry.
        """
        assert self._hub is not None
        try:
            if self.counters["reconnect_failures"] > self._failures_at_loss:
                self._hub.refresh()
            self._connect()
        except Exception as e:  # a reconnect must never kill the acquisition thread
            self.counters["reconnect_failures"] += 1
            self.last_error = f"reconnect failed: {e}"
            self._next_attempt = time.monotonic() + self._backoff
            self._backoff = min(self._backoff * 2, self.cfg.reconnect_backoff_s[1])
            log.info("camera %s: %s; next try in %.1fs", self.name, self.last_error,
                     self._next_attempt - time.monotonic())  # fmt: skip
        else:
            self.counters["reconnects"] += 1
            log.warning("camera %s online again", self.name)

    def _device_ok(self, ia: ImageAcquirer) -> bool:
        """Whether the producer still reports the device open and accessible."""
        try:
            dev = ia.device
            return (ia.is_valid() and dev is not None and dev.is_open()
                    and dev.module.access_status != _OPEN_STATUS_BAD)  # fmt: skip
        except Exception:
            return False

    # -- acquisition -------------------------------------------------------------------

    def grab(self, timeout: float) -> Frame | None:
        """Next frame within `timeout` s, or None (timeout, offline, pool exhausted)."""
        if self.pool is None or self._hub is None:
            raise SourceError(f"camera {self.name!r} is not open")
        deadline = time.monotonic() + timeout
        with self._lock.loop(timeout):
            if self._closing.is_set():
                return None
            if self._ia is None and time.monotonic() >= self._next_attempt:
                self._try_reconnect()
            ia = self._ia
            if ia is not None:
                return self._fetch(ia, deadline)
        self._closing.wait(max(0.0, min(deadline, self._next_attempt) - time.monotonic()))
        return None

    def _fetch(self, ia: ImageAcquirer, deadline: float) -> Frame | None:
        """Poll until `deadline`; the image is copied out before the buffer is re-queued.

        GenTL's new-buffer wait holds the GIL (harvesters calls it in slices of
        `timeout_period_on_update_event_data_call` ms): beside a 2 Hz grab loop a pure
        Python thread ran at 0.44-0.62 of its speed with the default 1 ms slices and at
        0.06 with 100 ms slices, which slowed inference 2x. So each check here does not
        wait in GenTL (slices of 0 ms, set in _open) and the waiting is time.sleep, which
        releases the GIL: at most POLL_S of added delay per frame.
        """
        try:
            while True:
                buffer = ia.try_fetch(timeout=POLL_CHECK_S)
                left = deadline - time.monotonic()
                if buffer is not None or left <= 0:
                    break
                time.sleep(min(POLL_S, left))
        except Exception as e:  # producer error, destroyed acquirer: all mean "lost"
            self._lose(f"fetch failed: {type(e).__name__}: {e}")
            return None
        if buffer is None:
            self._on_timeout(ia)
            return None
        t_arrival, ts_capture = time.monotonic(), time.time()
        with buffer:
            return self._to_frame(ia, buffer, t_arrival, ts_capture)

    def _on_timeout(self, ia: ImageAcquirer) -> None:
        """Count the timeout and decide whether the device is lost."""
        self.counters["timeouts"] += 1
        self._consecutive_timeouts += 1
        trig = self.cfg.trigger
        if not self._device_ok(ia):
            self._lose("device no longer accessible (access status / handle)")
        elif trig.mode == "off" and self._consecutive_timeouts >= self.cfg.lost_after_timeouts:
            self._lose(f"no frame in {self._consecutive_timeouts} fetches in a row")
        elif (trig.mode == "software" and self._outstanding_since is not None
              and time.monotonic() - self._outstanding_since > trig.timeout_s):  # fmt: skip
            self._lose(f"software trigger unanswered for more than {trig.timeout_s}s")

    def _to_frame(
        self, ia: ImageAcquirer, buffer: Any, t_arrival: float, ts: float
    ) -> Frame | None:
        """Convert/copy the GenTL image into a pool buffer and build the Frame."""
        t0 = time.perf_counter()
        self._consecutive_timeouts = 0
        if self._outstanding:
            with self._life:  # trigger() updates these from its own thread
                self._outstanding = max(self._outstanding - 1, 0)
                self._outstanding_since = time.monotonic() if self._outstanding else None
        comp = buffer.payload.components[0]
        fmt, w, h = comp.data_format, comp.width, comp.height
        self._check_format(fmt)  # a format changed behind our back fails loudly
        channels, dtype, to_mono, to_rgb = PIXEL_FORMATS[fmt]
        data = comp.data.reshape(h, -1)[:, : w * channels]  # drops line padding, if any
        src = data.reshape(h, w, channels) if channels > 1 else data
        rgb = self.cfg.output == "rgb"
        code = to_rgb if rgb else to_mono
        got = self.pool.acquire((h, w, 3) if rgb else (h, w), dtype)
        if got is None:
            self.counters["pool_drops"] += 1
            return None
        out, release = got
        if code is None:
            np.copyto(out, src)
        else:
            cv2.cvtColor(src, code, dst=out)
        self._frame_id += 1
        self.counters["frames"] += 1
        meta = self._metadata(ia, buffer, fmt)
        part_id = self._part_id(ia)
        meta["acq_ms"] = (time.perf_counter() - t0) * 1000
        return Frame(
            image=out, camera=self.name, frame_id=self._frame_id,
            part_id=part_id or f"{self.name}-{self._frame_id}", ts_capture=ts,
            t_arrival=t_arrival, meta=meta, release=release,
        )  # fmt: skip

    def _metadata(self, ia: ImageAcquirer, buffer: Any, fmt: str) -> dict[str, Any]:
        """Device timestamp and frame id where the producer has them."""
        meta: dict[str, Any] = {"pixel_format": fmt, "device_timestamp": None}
        module = buffer.module
        if self._has_timestamp_ns:
            try:
                meta["device_timestamp"], meta["device_timestamp_unit"] = module.timestamp_ns, "ns"
            except Exception:
                self._has_timestamp_ns = False  # this producer has none: stop asking
        if meta["device_timestamp"] is None:
            try:
                ticks = module.timestamp
                if ticks:
                    meta["device_timestamp"], meta["device_timestamp_unit"] = ticks, "ticks"
            except Exception as e:  # no device timestamp in this buffer: the field stays None
                log.debug("camera %s: no device timestamp: %s", self.name, e)
        try:
            meta["device_frame_id"] = module.frame_id
        except Exception:
            meta["device_frame_id"] = None
        return meta

    def _part_id(self, ia: ImageAcquirer) -> str | None:
        """Part id from the configured chunk/counter node, read while the buffer is held."""
        if not self.cfg.part_id_node:
            return None
        try:
            return str(ia.remote_device.node_map.get_node(self.cfg.part_id_node).value)
        except Exception:
            self.counters["part_id_errors"] += 1
            return None

    # -- control -----------------------------------------------------------------------

    def trigger(self) -> None:
        """Execute TriggerSoftware in software-trigger mode; free-run/hardware ignore it."""
        if self.cfg.trigger.mode != "software":
            return
        with self._life:
            ia = self._ia
            if ia is None:
                raise SourceError(f"camera {self.name!r} is offline: trigger not sent")
            try:
                ia.remote_device.node_map.TriggerSoftware.execute()
            except Exception as e:
                raise SourceError(f"camera {self.name!r}: TriggerSoftware failed: {e}") from e
            if self._outstanding == 0:
                self._outstanding_since = time.monotonic()
            self._outstanding += 1
        self.counters["triggers"] += 1

    def apply_features(self, features: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a recipe's camera features now and after every reconnect.

        Nodes the previous recipe set and this one does not go back to the config's
        value. All or nothing: on error nothing changes and FeatureError says why.
        Acquisition pauses around writes that change the image layout.
        """
        with self._lock.priority():
            ia = self._ia
            if ia is None:
                raise SourceError(f"camera {self.name!r} is offline: features not applied")
            restore = {k: self.cfg.features[k] for k in self._recipe_features
                       if k not in features and k in self.cfg.features}  # fmt: skip
            wanted = {**restore, **features}
            pause = bool(LAYOUT_NODES & wanted.keys()) and ia.is_acquiring()
            if pause:
                ia.stop()
            try:
                result = apply_features(ia.remote_device.node_map, wanted)
            except FeatureError as e:
                raise FeatureError(f"camera {self.name!r}: {e}") from None
            finally:
                if pause:
                    ia.start()
            self._recipe_features = dict(features)
            return result

    def node_info(self, names: list[str]) -> list[dict[str, Any]]:
        """Value, access and range/entries of the named nodes (for `camera-info`)."""
        with self._lock.priority():
            if self._ia is None:
                raise SourceError(f"camera {self.name!r} is offline")
            nm = self._ia.remote_device.node_map
            return [describe(nm.get_node(n)) for n in names if nm.has_node(n)]
