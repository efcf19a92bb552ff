"""Frames and the frame pool: the unit of work that flows through the pipeline.

A source fills a buffer taken from the FramePool, so steady-state acquisition allocates
nothing; the buffer goes back to the pool when the frame's result has been emitted or the
frame was dropped. On NVIDIA hardware the pool can hand out page-locked buffers; here
it is plain NumPy memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class DefectTruth:
    """Ground truth for one injected defect (synthetic source, COCO replay)."""

    kind: str
    bbox: tuple[int, int, int, int]  # x, y, w, h in pixels
    mask: np.ndarray | None = None  # bool, full-frame HxW, or None for box-only truth


@dataclass
class Frame:
    """One acquired image plus everything later stages need to know about it."""

    image: np.ndarray  # HxW uint8/uint16 mono, or HxWx3 uint8
    camera: str
    frame_id: int
    part_id: str
    ts_capture: float  # wall clock (epoch seconds) when the frame was captured
    t_arrival: float  # time.monotonic() when acquisition handed the frame over
    truth: list[DefectTruth] | None = None
    meta: dict = field(default_factory=dict)
    stamps: dict[str, float] = field(default_factory=dict)  # stage -> monotonic end time
    release: Callable[[], None] | None = None  # returns the buffer to its pool

    def stamp(self, stage: str) -> None:
        """Record that `stage` finished for this frame now."""
        self.stamps[stage] = time.monotonic()

    def done(self) -> None:
        """Give the image buffer back; the frame must not be used afterwards."""
        if self.release is not None:
            release, self.release = self.release, None
            release()


class FramePool:
    """At most `size` reusable image buffers in use at once, handed out by shape and dtype.

    `acquire` never blocks: when `size` buffers are in use it returns None and counts an
    exhaustion, so acquisition can drop the frame instead of waiting for downstream.
    Free buffers are kept for reuse (steady state allocates nothing); when the shapes
    vary (replay of mixed sizes) the pool holds at most `size` buffers in all.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("FramePool size must be >= 1")
        self.size = size
        self._free: dict[tuple, list[np.ndarray]] = {}
        self._in_use = 0
        self._lock = threading.Lock()
        self.exhausted = 0
        self.allocations = 0

    def acquire(
        self, shape: tuple[int, ...], dtype: np.dtype | type = np.uint8
    ) -> tuple[np.ndarray, Callable[[], None]] | None:
        """Return (buffer, release) or None when all `size` buffers are busy."""
        key = (tuple(shape), np.dtype(dtype).str)
        with self._lock:
            if self._in_use >= self.size:
                self.exhausted += 1
                return None
            free = self._free.get(key)
            if free:
                buf = free.pop()
            else:
                self._evict_one_free()
                buf = np.empty(shape, dtype=dtype)
                self.allocations += 1
            self._in_use += 1

        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if released:
                    return
                released = True
                self._in_use -= 1
                self._free.setdefault(key, []).append(buf)

        return buf, release

    def _evict_one_free(self) -> None:
        """Keep free + in-use buffers <= size by dropping a free buffer of another shape."""
        total = self._in_use + sum(len(v) for v in self._free.values())
        if total < self.size:
            return
        for lst in self._free.values():
            if lst:
                lst.pop()
                return

    def in_use(self) -> int:
        with self._lock:
            return self._in_use
