"""Counters and latency windows shared by the pipeline, the demo and the `stats` topic."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class Stats:
    """Thread-safe counters plus the last `window` latencies of every stage (ms)."""

    def __init__(self, window: int = 2000) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self._lat: dict[str, deque[float]] = {}
        self._done_times: deque[float] = deque(maxlen=window)
        self._window = window
        self.started = time.monotonic()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def get(self, name: str) -> int:
        with self._lock:
            return self.counters.get(name, 0)

    def observe(self, latencies_ms: dict[str, float]) -> None:
        with self._lock:
            for stage, v in latencies_ms.items():
                self._lat.setdefault(stage, deque(maxlen=self._window)).append(float(v))
            self._done_times.append(time.monotonic())

    def fps(self, horizon_s: float = 5.0) -> float:
        """Parts per second over the last `horizon_s` seconds (or since start)."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._done_times if now - t <= horizon_s]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], 1e-6)
        return len(recent) / span

    def percentiles(self, q: tuple[float, ...] = (50, 99)) -> dict[str, dict[str, float]]:
        with self._lock:
            snap = {k: np.asarray(v) for k, v in self._lat.items() if v}
        return {
            stage: {f"p{int(p)}": round(float(np.percentile(a, p)), 3) for p in q}
            | {"max": round(float(a.max()), 3)}
            for stage, a in snap.items()
        }

    def snapshot(self) -> dict:
        with self._lock:
            counters = dict(self.counters)
        return {
            "uptime_s": round(time.monotonic() - self.started, 1),
            "fps": round(self.fps(), 2),
            "counters": counters,
            "latency_ms": self.percentiles(),
        }
