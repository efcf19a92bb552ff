"""The `synthetic` frame source: seeded procedural parts with ground truth.

Stands in for a camera in the demo, in tests and for training data. Frame `k` of seed
`s` is always the same image (its own generator, `frame_rng(s, k)`), whatever was
grabbed or dropped before it, so a run can be reproduced and a single frame re-rendered.
With `distinct: n` frame `k` is part `k % n`: the n parts are rendered once, on first
use, and copied into the pool buffers afterwards, so that a benchmark at 2048 x 2048 or
with several cameras measures the pipeline rather than the renderer.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np

from inspector.acquisition.base import EndOfStream, FrameSource, SourceError
from inspector.acquisition.synthetic_parts import frame_rng, render_part
from inspector.config.sources import SyntheticSourceConfig
from inspector.core.frames import DefectTruth, Frame


class SyntheticSource(FrameSource):
    """Renders parts into pool buffers, free-running at `rate_hz` or as fast as asked."""

    kind = "synthetic"

    def __init__(self, name: str, cfg: SyntheticSourceConfig) -> None:
        super().__init__(name)
        self.cfg = cfg
        self.frame_id = 0  # id of the next frame; a frame lost to a full pool uses one up
        self._next_due: float | None = None  # monotonic time the next frame is due
        self._closed = False
        self._parts: dict[int, tuple[np.ndarray, list[DefectTruth]]] = {}  # `distinct` cache
        self._triggers = threading.Semaphore(0)  # fired, not yet delivered (`triggered`)

    def open(self, pool) -> None:
        super().open(pool)
        self._next_due = None
        self._closed = False

    @property
    def paced_by_consumer(self) -> bool:
        return self.cfg.rate_hz is None and not self.cfg.triggered

    @property
    def triggered(self) -> bool:
        return self.cfg.triggered

    def trigger(self) -> None:
        """One part, delivered by the next grab (software-trigger mode only)."""
        if self.cfg.triggered:
            self._triggers.release()

    def grab(self, timeout: float) -> Frame | None:
        """Next part, or None if it is not due within `timeout` or the pool is exhausted.

        Raises EndOfStream after `count` frames (dropped ones included, as on a camera
        whose buffers were full).
        """
        if self.pool is None or self._closed:
            raise SourceError(f"synthetic source {self.name!r} is not open")
        cfg = self.cfg
        if cfg.count is not None and self.frame_id >= cfg.count:
            raise EndOfStream(f"synthetic source {self.name!r}: {cfg.count} frames delivered")
        if cfg.triggered:
            if not self._triggers.acquire(timeout=max(timeout, 0.0)):
                return None
        elif cfg.rate_hz is not None:
            now = time.monotonic()
            if self._next_due is None:
                self._next_due = now
            wait = self._next_due - now
            if wait > timeout:
                time.sleep(max(0.0, timeout))
                return None
            if wait > 0:
                time.sleep(wait)
            period = 1.0 / cfg.rate_hz
            # Free-running like a camera: slots keep their phase, and a late consumer
            # misses slots rather than getting a burst of catch-up frames.
            self._next_due += period
            late = time.monotonic() - self._next_due
            if late > 0:
                self._next_due += math.ceil(late / period) * period
        frame_id = self.frame_id
        self.frame_id += 1
        got = self.pool.acquire((cfg.height, cfg.width))
        if got is None:
            return None
        buf, release = got
        try:
            if cfg.distinct is None:
                _, truth = render_part(
                    frame_rng(cfg.seed, frame_id), cfg.width, cfg.height, cfg.kinds,
                    cfg.defect_rate, cfg.max_defects, out=buf,
                )
            else:
                image, truth = self._part(frame_id % cfg.distinct)
                np.copyto(buf, image)
                truth = list(truth)
        except BaseException:
            release()
            raise
        return Frame(
            image=buf,
            camera=self.name,
            frame_id=frame_id,
            part_id=f"{self.name}-{cfg.seed}-{frame_id:06d}",
            ts_capture=time.time(),
            t_arrival=time.monotonic(),
            truth=truth,
            meta={"source": self.kind, "seed": cfg.seed},
            release=release,
        )

    def _part(self, index: int) -> tuple[np.ndarray, list[DefectTruth]]:
        """Part `index` of this seed, rendered on first use and kept read-only."""
        part = self._parts.get(index)
        if part is None:
            cfg = self.cfg
            image, truth = render_part(frame_rng(cfg.seed, index), cfg.width, cfg.height,
                                       cfg.kinds, cfg.defect_rate, cfg.max_defects)
            for a in (image, *(t.mask for t in truth if t.mask is not None)):
                a.setflags(write=False)  # shared by every frame that shows this part
            part = self._parts[index] = (image, truth)
        return part

    def close(self) -> None:
        self._closed = True
