"""Measuring instruments of `inspector bench`: per-result stamps and a once-a-second
sampler, kept apart from running the station (inspector.bench.run).

Per result the Collector keeps the monotonic stamps of every stage and of both PUBACKs
(`plc`, `result`) in a flat array (a long soak must not grow its own memory much); the
Sampler records CPU and memory of this process once a second, from /proc and
os.times() (no psutil on the line PC for two figures).
"""

from __future__ import annotations

import math
import os
import threading
import time
from array import array

import numpy as np

from inspector.runtime.pipeline import Finished

# per-result columns of Collector.rows (monotonic seconds, NaN where not (yet) known),
# then the detector's own split of `infer` (ms; Detector.last_timing)
COLUMNS = ("camera", "arrival", "queue", "preprocess", "infer", "decide", "emitted",
           "ack_plc", "ack_result", "encode_ms", "head_ms", "unknown_ms")
_N = len(COLUMNS)
_NAN = math.nan


class Collector:
    """Per-result stamps, joined by event_id: `on_result` runs on the result thread,
    `on_ack` on the publisher thread (a PUBACK may even come first)."""

    def __init__(self, cameras: list[str]) -> None:
        self._lock = threading.Lock()
        self._cam = {name: float(i) for i, name in enumerate(cameras)}
        self.rows = array("d")
        self._open: dict[str, int] = {}  # event_id -> row, until both PUBACKs are in
        self._early: dict[str, dict[str, float]] = {}  # PUBACKs that beat on_result
        self.accepted: set[str] = set()

    def on_result(self, item: Finished) -> None:
        now = time.monotonic()
        f, st = item.frame, item.frame.stamps
        eid = item.result.event_id
        vals = [self._cam.get(f.camera, -1.0), f.t_arrival,
                *(st.get(s, _NAN) for s in ("queue", "preprocess", "infer", "decide")),
                now, _NAN, _NAN, *(item.timing.get(k, _NAN) for k in COLUMNS[9:])]
        with self._lock:
            row = len(self.rows) // _N
            for kind, t in self._early.pop(eid, {}).items():
                vals[7 if kind == "plc" else 8] = t
            self.rows.extend(vals)
            self.accepted.add(eid)
            if math.isnan(vals[7]) or math.isnan(vals[8]):
                self._open[eid] = row

    def on_ack(self, kind: str, event_id: str, t: float) -> None:
        col = 7 if kind == "plc" else 8
        with self._lock:
            row = self._open.get(event_id)
            if row is None:
                if event_id not in self.accepted and len(self._early) < 10_000:
                    self._early.setdefault(event_id, {}).setdefault(kind, t)
                return
            i = row * _N
            if math.isnan(self.rows[i + col]):  # the first PUBACK counts (replays repeat)
                self.rows[i + col] = t
            if not (math.isnan(self.rows[i + 7]) or math.isnan(self.rows[i + 8])):
                del self._open[event_id]

    def count(self) -> int:
        with self._lock:
            return len(self.rows) // _N

    def matrix(self) -> np.ndarray:
        """(results, len(COLUMNS)) copy, in the order results were emitted."""
        with self._lock:  # a copy: a live view would stop the array from growing
            return np.array(self.rows, dtype=np.float64).reshape(-1, _N)

    def recent_total_ms(self, n: int = 100) -> float:
        """p50 of arrival -> PUBACK(result) over the last `n` acknowledged results."""
        with self._lock:
            a = np.array(self.rows[-n * _N * 2:], dtype=np.float64).reshape(-1, _N)
        d = (a[:, 8] - a[:, 1])[-n:]
        d = d[~np.isnan(d)]
        return float(np.median(d) * 1000) if len(d) else _NAN


def proc_status_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB, from /proc/self/status."""
    got = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                got[key] = int(value.split()[0]) / 1024.0
    return got.get("VmRSS", _NAN), got.get("VmHWM", _NAN)


SAMPLE_FIELDS = ("t_s", "cpu_pct", "rss_mb", "hwm_mb", "outbox", "results")


class Sampler:
    """Once a second: CPU % of this process (user + sys over wall; 100 % = one core), RSS,
    peak RSS, outbox depth and results so far. Tuples, not dicts: an hour is 3600 rows."""

    def __init__(self, t0: float, outbox_depth, results, period_s: float = 1.0) -> None:
        self.t0, self.period_s = t0, period_s
        self._depth, self._results = outbox_depth, results
        self.samples: list[tuple[float, ...]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def last_rss_mb(self) -> float:
        return self.samples[-1][2] if self.samples else _NAN

    def _run(self) -> None:
        cpu0, wall0 = _cpu_s(), time.monotonic()
        while not self._stop.wait(self.period_s):
            cpu, wall = _cpu_s(), time.monotonic()
            rss, hwm = proc_status_mb()
            try:
                depth = self._depth()
            except Exception:  # the outbox is closing: no figure this second
                depth = None
            self.samples.append((round(wall - self.t0, 3),
                                 round(100.0 * (cpu - cpu0) / max(wall - wall0, 1e-9), 1),
                                 round(rss, 1), round(hwm, 1),
                                 -1 if depth is None else depth, self._results()))
            cpu0, wall0 = cpu, wall


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system
