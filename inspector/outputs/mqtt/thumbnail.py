"""The last part's picture on MQTT (`mqtt.thumbnail`): its overlay as a small JPEG,
retained on `camera/<cam>/thumbnail` (QoS 1, latest wins), for a dashboard that cannot
reach the station page. Its `result` went out just before it, same camera.

`offer` runs on the result thread and only copies the frame (the pipeline reuses its
buffer); drawing, resizing and encoding happen on the thread `mqtt-thumbnail`. One part
waits at most: a newer one replaces it (counted in `replaced`), so a slow encoder never
holds results back.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

import cv2
import numpy as np

from inspector.config.mqtt import ThumbnailConfig
from inspector.core.result import Result
from inspector.outputs.overlay import draw

log = logging.getLogger("inspector.outputs.mqtt.thumbnail")
_MIN_QUALITY = 30


def encode(image: np.ndarray, result: Result, cfg: ThumbnailConfig) -> bytes | None:
    """The overlay, its longer side at most `max_side`, as a JPEG of at most `max_bytes`
    (quality first, then size, give way); None if even 32 px do not fit."""
    img = draw(image, result)  # BGR uint8 whatever the frame's depth
    side = cfg.max_side
    while side >= 32:
        h, w = img.shape[:2]
        scale = min(1.0, side / max(h, w))
        small = img if scale >= 1.0 else cv2.resize(
            img, (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA)
        quality = cfg.quality
        while quality >= _MIN_QUALITY:
            ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and buf.size <= cfg.max_bytes:
                return buf.tobytes()
            quality -= 15
        side //= 2
    return None


class Thumbnails:
    """Copies frames in, publishes JPEGs out (see the module docstring)."""

    def __init__(self, cfg: ThumbnailConfig, topic_of: Callable[[str], str],
                 publish: Callable[[str, bytes], None]) -> None:
        self.cfg, self._topic_of, self._publish = cfg, topic_of, publish
        self._queue: queue.Queue[tuple[np.ndarray, Result] | None] = queue.Queue(maxsize=1)
        self.published = self.replaced = self.too_big = 0
        self._thread = threading.Thread(target=self._work, name="mqtt-thumbnail", daemon=True)
        self._thread.start()

    def offer(self, image: np.ndarray, result: Result) -> None:
        """Result thread: copy and hand over; never waits."""
        if self.cfg.only_ng and result.verdict == "OK":
            return
        item = (image.copy(), result)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            try:
                self._queue.get_nowait()
                self.replaced += 1
            except queue.Empty:
                pass
            try:
                self._queue.put_nowait(item)
            except queue.Full:  # the worker took one meanwhile and another came: skip
                self.replaced += 1

    def close(self, timeout: float = 5.0) -> None:
        """Publish what is waiting, then end the thread."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:  # the worker is stuck on a frame: it is a daemon, leave it
            log.warning("thumbnail thread still busy at shutdown; not waiting for it")
            return
        self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            image, result = item
            try:
                jpeg = encode(image, result, self.cfg)
                if jpeg is None:
                    self.too_big += 1
                    continue
                self._publish(self._topic_of(result.camera), jpeg)
                self.published += 1
            except Exception:  # a bad frame costs its thumbnail, never the thread
                log.exception("thumbnail of %s failed", result.event_id)
