"""Small controllable stand-ins for the archive and supervisor tests.

The archive and the supervisor are what those tests exercise; the frame source and the
detector around them are these stand-ins, so that speed, stalls and verdicts can be
provoked deterministically.
"""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np

from inspector.acquisition.base import EndOfStream, FrameSource
from inspector.core.frames import Frame
from inspector.core.result import Result
from inspector.inference.detectors.base import Detection, Detector
from inspector.outputs.sinks.base import ResultSink


class TickSource(FrameSource):
    """`count` 64x64 frames (None: endless), one every `period` s, free-running."""

    kind = "tick"

    def __init__(self, name: str, count: int | None, period: float = 0.0) -> None:
        super().__init__(name)
        self.count, self.period, self.n, self.last = count, period, 0, 0.0

    def grab(self, timeout: float) -> Frame | None:
        if self.count is not None and self.n >= self.count:
            raise EndOfStream(self.name)
        wait = self.last + self.period - time.monotonic()
        if wait > timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(wait, 0))
        self.last = time.monotonic()
        got = self.pool.acquire((64, 64))
        if got is None:
            return None
        buf, release = got
        buf[:] = 100
        buf[20:30, 20:40] = 250
        self.n += 1
        return Frame(buf, self.name, self.n - 1, f"{self.name}-{self.n - 1}", time.time(),
                     time.monotonic(), release=release)


class ScratchDetector(Detector):
    """Finds one scratch in every frame (every part NG); blocks while `gate` is clear."""

    kind = "scratch-standin"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()

    def enroll(self, prompts, normals, progress=False) -> None:
        pass

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.gate.wait()
        return [Detection("scratch", 0.9, (20, 20, 20, 10), np.ones((10, 20), bool), 200.0,
                          "scratch-1")]


class ListSink(ResultSink):
    """Records the payload of every result it is given (what a consumer would receive)."""

    def __init__(self) -> None:
        self.results: list[dict] = []

    def emit(self, result: Result) -> None:
        self.results.append(result.payload())


def result(seq: int, ng: bool, camera: str = "cam0", ts: float | None = None) -> Result:
    """A Result for the archive and overlay tests (one counted scratch when NG)."""
    t = time.time() if ts is None else ts
    defects = [{"class": "scratch", "score": 0.9, "bbox": [20.0, 20.0, 20.0, 10.0],
                "area_px": 200.0, "area_mm2": 2.0, "accepted": True}] if ng else []
    return Result.model_validate({
        "event_id": uuid.uuid4().hex, "session": "test", "seq": seq, "ts_capture": t,
        "ts_done": t, "camera": camera, "frame_id": seq, "part_id": f"P/{seq:04d}",
        "recipe": {"id": "test-part", "rev": 1, "sha256": "0" * 64, "model_sha256": "0" * 64},
        "verdict": "NG" if ng else "OK", "code": 11 if ng else 0, "score": 0.9 if ng else 0.0,
        "reasons": [], "defects": defects, "latency_ms": {
            "acq": 0.0, "preprocess": 0.0, "infer": 0.0, "decide": 0.0, "total": 0.0},
        "image_uri": None})


def fast_recipe(folder):
    """A valid recipe on 64x64 noise (tests.conftest.write_recipe): with 64x64 synthetic
    frames the real texture detector inspects a part in milliseconds, so service tests
    do not depend on the demo recipe's speed or on the machine's load."""
    from tests.helpers.files import write_recipe

    return write_recipe(folder, n_normal=6)


FAST_CAMERA = {"kind": "synthetic", "width": 64, "height": 64}
