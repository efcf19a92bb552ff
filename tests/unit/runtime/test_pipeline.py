"""Pipeline: order, drop-oldest under backpressure, fail-safe errors, shutdown without loss.

The pipeline is what is tested here; source and detector are small stand-ins with
controllable speed so that backpressure and shutdown can be provoked deterministically.
"""

from __future__ import annotations

import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from inspector.acquisition.base import EndOfStream, FrameSource
from inspector.core.frames import Frame, FramePool
from inspector.core.queues import DropOldestQueue
from inspector.core.result import Result
from inspector.decision.results import ResultBuilder, schema
from inspector.inference.detectors.base import Detection, Detector
from inspector.outputs.sinks.base import ResultSink
from inspector.recipes.recipe import load_recipe
from inspector.runtime.pipeline import ERROR_CODE, ActiveRecipe, Pipeline
from tests.helpers import standins


class TickSource(FrameSource):
    """Delivers `count` frames whose pixel value encodes the frame id, every `period` s."""

    kind = "tick"

    def __init__(self, name: str, count: int, period: float = 0.0, paced: bool = False) -> None:
        super().__init__(name)
        self.count, self.period, self.n = count, period, 0
        self.last = 0.0
        self.paced = paced

    @property
    def paced_by_consumer(self) -> bool:
        return self.paced

    def grab(self, timeout: float) -> Frame | None:
        if self.n >= self.count:
            raise EndOfStream(self.name)
        wait = self.last + self.period - time.monotonic()
        if wait > timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(wait, 0))
        self.last = time.monotonic()
        got = self.pool.acquire((32, 32))
        if got is None:
            return None
        buf, release = got
        buf[:] = self.n % 256
        self.n += 1
        return Frame(buf, self.name, self.n - 1, f"{self.name}-{self.n - 1}", time.time(),
                     time.monotonic(), release=release)


class SlowDetector(Detector):
    """Takes `delay` s per frame; finds a 'scratch' in frames whose id is odd."""

    kind = "slow"

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.delay, self.fail_on = delay, fail_on

    def enroll(self, prompts, normals, progress=False) -> None:
        pass

    def detect(self, image: np.ndarray) -> list[Detection]:
        time.sleep(self.delay)
        value = int(image[0, 0])
        if value == self.fail_on:
            raise RuntimeError("sensor glitch")
        if value % 2:
            mask = np.ones((4, 5), bool)
            return [Detection("scratch", 0.9, (3, 4, 5, 4), mask, 200.0, "scratch-1")]
        return []


class ListSink(standins.ListSink):
    """The stand-in list sink, optionally slow (a sink that holds the result thread)."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay

    def emit(self, result: Result) -> None:
        time.sleep(self.delay)
        super().emit(result)


def make(recipe_dir: Path, sources, detector, sink, frame_queue=4, pool=16) -> Pipeline:
    p = Pipeline(sources, ActiveRecipe(load_recipe(recipe_dir), detector), [sink],
                 ResultBuilder("test-session"), frame_queue=frame_queue, result_queue=8)
    for s in sources:
        s.open(FramePool(pool))
    return p


def test_every_frame_in_order_with_valid_results(recipe_dir: Path) -> None:
    sink = ListSink()
    p = make(recipe_dir, [TickSource("cam0", 20, period=0.002)], SlowDetector(), sink,
             frame_queue=32, pool=40)
    p.start()
    assert p.wait(10)
    assert [r["frame_id"] for r in sink.results] == list(range(20))
    assert [r["seq"] for r in sink.results] == list(range(20))
    assert len({r["event_id"] for r in sink.results}) == 20
    validator = jsonschema.Draft202012Validator(schema("result"))
    for r in sink.results:
        validator.validate(r)
    odd = sink.results[1]
    assert odd["verdict"] == "NG" and odd["code"] == 11
    assert odd["defects"][0]["area_mm2"] == pytest.approx(2.0)
    assert odd["defects"][0]["mask"]["size"] == [32, 32]
    assert sink.results[0]["verdict"] == "OK" and sink.results[0]["code"] == 0
    lat = odd["latency_ms"]
    assert lat["total"] >= lat["infer"] >= 0 and set(lat) >= {"acq", "preprocess", "decide"}
    assert p.stats.get("dropped_queue") == 0


def test_backpressure_drops_oldest_and_counts(recipe_dir: Path) -> None:
    sink = ListSink()
    src = TickSource("cam0", 60, period=0.001)
    p = make(recipe_dir, [src], SlowDetector(delay=0.03), sink, frame_queue=2)
    p.start()
    assert p.wait(20)
    dropped = p.stats.get("dropped_queue") + p.stats.get("dropped_shutdown")
    assert p.stats.get("dropped_queue") > 10
    assert len(sink.results) + dropped == p.stats.get("frames_in")
    ids = [r["frame_id"] for r in sink.results]
    assert ids == sorted(ids) and ids[-1] == 59  # the newest frame is never the one dropped
    assert src.pool.in_use() == 0  # every buffer, dropped or inspected, came back


def test_offline_source_is_paced_not_dropped(recipe_dir: Path) -> None:
    sink = ListSink()
    src = TickSource("cam0", 30, paced=True)
    p = make(recipe_dir, [src], SlowDetector(delay=0.02), sink, frame_queue=2)
    p.start()
    assert p.wait(20)
    assert [r["frame_id"] for r in sink.results] == list(range(30))
    assert p.stats.get("dropped_queue") == 0
    # frames wait for at most the one in inference, so queueing stays near one detect time
    assert max(r["latency_ms"]["queue"] for r in sink.results) < 200


def test_acquisition_never_waits_for_detector(recipe_dir: Path) -> None:
    src = TickSource("cam0", 100, period=0.0)
    p = make(recipe_dir, [src], SlowDetector(delay=0.5), ListSink(), frame_queue=2)
    t0 = time.monotonic()
    p.start()
    while src.n < 100 and time.monotonic() - t0 < 3:
        time.sleep(0.01)
    assert src.n == 100, "acquisition was held up by a slow detector"
    p.stop(2.0)


def test_inspection_error_gives_ng_result(recipe_dir: Path) -> None:
    sink = ListSink()
    p = make(recipe_dir, [TickSource("cam0", 5)], SlowDetector(fail_on=2), sink, 8)
    p.start()
    assert p.wait(10)
    bad = sink.results[2]
    assert bad["verdict"] == "NG" and bad["code"] == ERROR_CODE
    assert bad["reasons"] == ["inspection error: sensor glitch"]
    assert p.stats.get("inspect_errors") == 1 and len(sink.results) == 5


def test_stop_loses_no_accepted_result(recipe_dir: Path) -> None:
    sink = ListSink(delay=0.02)  # a slow sink: results queue up behind it
    src = TickSource("cam0", 10_000, period=0.005)
    p = make(recipe_dir, [src], SlowDetector(delay=0.01), sink, frame_queue=4)
    p.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    p.stop(4.0)
    assert time.monotonic() - t0 < 5.0
    s = p.stats
    assert s.get("frames_in") > 20
    assert len(sink.results) == s.get("results")
    assert s.get("frames_in") == (s.get("results") + s.get("dropped_queue")
                                  + s.get("dropped_shutdown"))
    assert [r["seq"] for r in sink.results] == list(range(len(sink.results)))
    assert src.pool.in_use() == 0


def test_two_cameras(recipe_dir: Path) -> None:
    sink = ListSink()
    p = make(recipe_dir, [TickSource("cam0", 10, 0.002), TickSource("cam1", 10, 0.002)],
             SlowDetector(), sink, frame_queue=32, pool=40)
    p.start()
    assert p.wait(10)
    for cam in ("cam0", "cam1"):
        assert [r["frame_id"] for r in sink.results if r["camera"] == cam] == list(range(10))


def test_swap_between_frames(recipe_dir: Path, tmp_path: Path) -> None:
    from tests.helpers.files import RECIPE, write_recipe

    other = write_recipe(tmp_path / "other", {**RECIPE, "id": "other-part", "rev": 7})
    sink = ListSink()
    src = TickSource("cam0", 40, period=0.01)
    p = make(recipe_dir, [src], SlowDetector(), sink, frame_queue=64, pool=80)
    p.start()
    while len(sink.results) < 10:
        time.sleep(0.005)
    p.swap(ActiveRecipe(load_recipe(other), SlowDetector()))
    assert p.wait(10)
    ids = [r["recipe"]["id"] for r in sink.results]
    first_new = ids.index("other-part")
    assert set(ids[:first_new]) == {"test-part"} and set(ids[first_new:]) == {"other-part"}
    assert sink.results[-1]["recipe"]["rev"] == 7


def test_drop_oldest_queue_counts() -> None:
    dropped = []
    q: DropOldestQueue[int] = DropOldestQueue(3, dropped.append)
    for i in range(10):
        q.put(i)
    assert q.dropped == 7 and dropped == list(range(7))
    assert [q.get(0) for _ in range(3)] == [7, 8, 9]
    assert q.get(0.01) is None


def test_drop_oldest_queue_never_drops_a_kept_item() -> None:
    dropped = []
    q: DropOldestQueue[int] = DropOldestQueue(3, dropped.append, keep=lambda i: i == 1)
    for i in range(10):
        q.put(i)
    assert 1 not in dropped and q.dropped == 7
    assert [q.get(0) for _ in range(3)] == [1, 8, 9]  # the kept one, still in order
    both = DropOldestQueue(2, keep=lambda i: True)  # nothing droppable: the oldest goes
    for i in range(3):
        both.put(i)
    assert [both.get(0), both.get(0)] == [1, 2]


def test_frame_pool_bounds_buffers() -> None:
    pool = FramePool(2)
    a, b = pool.acquire((4, 4)), pool.acquire((4, 4))
    assert pool.acquire((4, 4)) is None and pool.exhausted == 1
    a[1]()
    a[1]()  # a second release is harmless
    c = pool.acquire((4, 4))
    assert c is not None and c[0] is a[0]  # reused, not reallocated
    b[1]()
    c[1]()
    pool.acquire((8, 8))[1]()  # another shape evicts a free buffer: still 2 at most
    assert pool.allocations == 3 and pool.in_use() == 0


def test_result_thread_releases_frames_even_when_sink_fails(recipe_dir: Path) -> None:
    class Broken(ResultSink):
        def emit(self, result: Result) -> None:
            raise OSError("disk full")

    src = TickSource("cam0", 5)
    p = Pipeline([src], ActiveRecipe(load_recipe(recipe_dir), SlowDetector()), [Broken()],
                 ResultBuilder(), frame_queue=16)  # all 5 frames fit: none dropped under load
    src.open(FramePool(8))
    p.start()
    assert p.wait(10)
    assert p.stats.get("sink_errors") == 5 and src.pool.in_use() == 0
