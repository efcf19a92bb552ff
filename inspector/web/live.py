"""What the station page shows live: the latest part of each camera and the recent NG parts.

The service's result thread calls `LiveView.observe` with every finished part. It keeps a
reference copy of the frame (the pool reuses the buffer after the call) and nothing else:
JPEG encoding and overlay drawing happen only when a browser asks, on the web thread,
so the page costs inspection a copy per part and nothing while nobody looks.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

import cv2
import numpy as np

from inspector.core.result import Result
from inspector.outputs.overlay import draw
from inspector.runtime.pipeline import Finished

LAST_PARTS = 32  # frames kept whatever their verdict (memory: 32 frames)


@dataclass
class Part:
    """One inspected part as the page needs it."""

    result: Result
    image: np.ndarray  # the frame as judged (mono), a copy
    offset: tuple[int, int]  # where the recipe's ROI starts in the frame
    t: float  # time.time() when it was finished

    def summary(self) -> dict:
        """The part as JSON for the page (the result's fields plus the overlay's address)."""
        r = self.result
        return {"event_id": r.event_id, "camera": r.camera, "seq": r.seq, "part_id": r.part_id,
                "verdict": r.verdict, "code": r.code, "reasons": r.reasons,
                "recipe": f"{r.recipe.id} rev {r.recipe.rev}", "t": self.t,
                "latency_ms": round(r.latency_ms.total, 1),
                "defects": [{"class": "unknown" if d.unknown else d.cls, "score": d.score,
                             "bbox": d.bbox, "area_mm2": round(d.area_mm2, 3),
                             "accepted": d.accepted} for d in r.defects],
                "width": int(self.image.shape[1]), "height": int(self.image.shape[0])}


class LiveView:
    """Latest part per camera and a bounded list of recent NG parts (newest last)."""

    def __init__(self, recent: int = 60, results: int = 500, ok_every: int = 10) -> None:
        self.recent = recent
        self.ok_every = ok_every  # every Nth OK part is kept for review beside the NG ones
        self._ok: deque[Part] = deque(maxlen=max(recent // 4, 1))
        self._ok_seen = 0
        self._results: deque[Result] = deque(maxlen=results)  # every part, without images
        self._lock = threading.Lock()
        self._latest: dict[str, Part] = {}
        # the last few parts of any verdict, so that the image of a part the page was just
        # told about is still there when the browser asks for it (parts come every few ms)
        self._last: OrderedDict[str, Part] = OrderedDict()
        self._ng: OrderedDict[str, Part] = OrderedDict()
        self.version = 0  # bumped on every part; the event stream sends on change

    def observe(self, item: Finished) -> None:
        """Called on the result thread for every part; copies the frame, never blocks long."""
        part = Part(item.result, np.array(item.frame.image, copy=True), item.offset, time.time())
        with self._lock:
            self._latest[item.result.camera] = part
            self._last[item.result.event_id] = part
            while len(self._last) > LAST_PARTS:
                self._last.popitem(last=False)
            self._results.append(item.result)
            if item.result.verdict == "NG":
                self._ng[item.result.event_id] = part
                while len(self._ng) > self.recent:
                    self._ng.popitem(last=False)
            else:
                self._ok_seen += 1
                if self._ok_seen % self.ok_every == 1 or self.ok_every == 1:
                    self._ok.append(part)
            self.version += 1

    def latest(self) -> dict[str, Part]:
        """The newest part of each camera."""
        with self._lock:
            return dict(self._latest)

    def recent_results(self) -> list[Result]:
        """The last results (OK and NG, oldest first): threshold previews judge these."""
        with self._lock:
            return list(self._results)

    def ng_rate(self) -> float | None:
        """Share of NG among the recent results (None before the first part)."""
        with self._lock:
            n = len(self._results)
            return sum(r.verdict == "NG" for r in self._results) / n if n else None

    def recent_ng(self) -> list[Part]:
        """The recent NG parts, newest first."""
        with self._lock:
            return list(reversed(self._ng.values()))

    def sampled_ok(self) -> list[Part]:
        """The sampled OK parts, newest first."""
        with self._lock:
            return list(reversed(self._ok))

    def part(self, event_id: str) -> Part | None:
        """A recent NG part, a sampled OK part or one of the last parts, by its event id."""
        with self._lock:
            hit = self._ng.get(event_id) or self._last.get(event_id)
            return hit or next((p for p in self._ok if p.result.event_id == event_id), None)


def jpeg(part: Part, overlay: bool, candidates: bool = False, quality: int = 85) -> bytes:
    """The part's frame, or its overlay (the archive's drawing), as JPEG bytes."""
    img = draw(part.image, part.result, candidates) if overlay else part.image
    if img.dtype != np.uint8:
        img = (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else img.astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"cannot encode a {img.shape} {img.dtype} image")
    return buf.tobytes()


class EncodedImages:
    """The JPEGs made for the page, kept for the last few parts: every viewer of the live
    page asks for the same overlay of the same part, and it is drawn and encoded once."""

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self._done: OrderedDict[tuple[str, bool, bool], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, part: Part, overlay: bool, candidates: bool = False) -> bytes:
        """`jpeg(part, overlay, candidates)`, encoded at most once while it is kept."""
        key = (part.result.event_id, overlay, candidates)
        with self._lock:
            hit = self._done.get(key)
        if hit is not None:
            return hit
        data = jpeg(part, overlay, candidates)
        with self._lock:
            self._done[key] = data
            while len(self._done) > self.size:
                self._done.popitem(last=False)
        return data
