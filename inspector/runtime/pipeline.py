"""The pipeline: every thread Inspector owns for inspection lives here, in plain sight.

    acq-<camera> (one per camera)  --DropOldestQueue-->  infer  --Queue-->  results
    source.grab -> Frame              preprocess/detect/decide    sinks, archive.submit
                                                                      --bounded queue-->  archive
                                                                    images, overlays, retention

Acquisition never waits for the detector: the frame queue drops its oldest frame when
full and counts it. Only offline sources (replay, synthetic without a rate) are paced by
the consumer instead, so that a dataset run inspects every image. A frame taken by the
inference thread always yields a result (an inspection error yields an NG result,
fail-safe for the reject gate), and every result is handed to every sink before shutdown
completes. The archive thread never holds up the result thread: a full archive queue
or a full disk drops the images (inspector.outputs.archive counts them), never a result.
Progress stamps (`acq_beat`, `last_frame`, `busy_since`, `last_progress`, `emit_since`)
are read by inspector.runtime.supervisor on the service's main thread. Threads outside this
module: the `control` socket thread (inspector.runtime.control), `mqtt-publisher` and
`mqtt-commands` (inspector.outputs.mqtt), paho's network thread, prometheus-client's HTTP
thread when `health.prometheus_port` is set, and the `unknown-branch` worker that
runs the good-part branch beside the prompt detector within one frame's inference
(inspector.inference.detectors.with_unknown).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from inspector.acquisition.base import EndOfStream, FrameSource, SourceError
from inspector.core.frames import Frame
from inspector.core.queues import DropOldestQueue
from inspector.core.result import ERROR_CODE, Result
from inspector.core.stats import Stats
from inspector.decision.results import ResultBuilder
from inspector.decision.sizes import size_reason
from inspector.decision.verdict import Verdict, decide
from inspector.inference.detectors.base import Detection, Detector
from inspector.outputs.archive import Archive
from inspector.outputs.sinks.base import ResultSink
from inspector.preprocess.frame import Preprocessor
from inspector.recipes.recipe import Recipe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActiveRecipe:
    """A recipe with its enrolled detector; swapped as a whole, between two frames."""

    recipe: Recipe
    detector: Detector


@dataclass
class Finished:
    """What the result thread needs besides the Result."""

    frame: Frame
    result: Result
    detections: list[Detection]
    verdict: Verdict
    offset: tuple[int, int]
    timing: dict[str, float] = field(default_factory=dict)  # the detector's own split, ms


class Pipeline:
    """The inspection threads and queues from cameras to sinks (see the module docstring)."""

    def __init__(
        self,
        sources: list[FrameSource],
        active: ActiveRecipe,
        sinks: list[ResultSink],
        builder: ResultBuilder,
        frame_queue: int = 4,
        result_queue: int = 64,
        on_result: Callable[[Finished], None] | None = None,
        grab_timeout: float = 0.2,
        archive: Archive | None = None,
        on_camera_status: Callable[[str, str], None] | None = None,
        preprocessors: dict[str, Preprocessor] | None = None,
        on_frame: Callable[[Frame], None] | None = None,
    ) -> None:
        self.sources = sources
        # called on the acquisition thread with each new frame before it is queued (the
        # trigger handshake tags the triggered part here); must be quick
        self.on_frame = on_frame
        self._active = active
        self.sinks = sinks
        self.builder = builder
        self.stats = Stats()
        # a frame a trigger asked for (it carries the request id) is never the one dropped
        self.frames: DropOldestQueue[Frame] = DropOldestQueue(
            frame_queue, self._dropped, keep=lambda f: "request_id" in f.meta)
        self.results: queue.Queue[Finished | None] = queue.Queue(result_queue)
        self.on_result = on_result
        self.grab_timeout = grab_timeout
        self.archive = archive  # NG images/overlays, OK samples; its file is the image_uri
        self.on_camera_status = on_camera_status
        # per camera, built once at start: calibration (flat field, undistortion, mm/px)
        self.preprocessors = preprocessors or {}
        self._plain = Preprocessor()
        self._stop_acq = threading.Event()
        self._stop_infer = threading.Event()
        self._threads: list[threading.Thread] = []
        self._threads_after: list[threading.Thread] = []  # end after the result thread
        self._acq_alive = 0
        self._lock = threading.Lock()
        self.busy_since: float | None = None  # monotonic start of the frame in inference
        self.last_progress = time.monotonic()
        self.acq_beat: dict[str, float] = {}  # camera -> last loop of its thread (monotonic)
        self.last_frame: dict[str, float] = {}  # camera -> arrival of its last frame
        self.emit_since: float | None = None  # start of the result being handed to sinks
        # sink name -> (failures, last error, monotonic time): a fault for the supervisor,
        # so that a sink that raises is never only a log line
        self.sink_failures: dict[str, tuple[int, str, float]] = {}

    # -- control -------------------------------------------------------------------
    @property
    def active(self) -> ActiveRecipe:
        return self._active

    def swap(self, active: ActiveRecipe) -> None:
        """Make `active` the recipe for the next frame; the frame in flight keeps its own."""
        self._active = active
        log.info("recipe switched to %s rev %s", active.recipe.id, active.recipe.rev)

    def start(self) -> None:
        for src in self.sources:
            t = threading.Thread(target=self._acquire, args=(src,), name=f"acq-{src.name}",
                                 daemon=True)
            self._threads.append(t)
        self._acq_alive = len(self.sources)
        self._infer_thread = threading.Thread(target=self._infer, name="infer", daemon=True)
        self._result_thread = threading.Thread(target=self._emit, name="results", daemon=True)
        if self.archive is not None:
            self._threads_after.append(threading.Thread(target=self.archive.run, name="archive",
                                                        daemon=True))
        for t in (*self._threads, self._infer_thread, self._result_thread,
                  *self._threads_after):
            t.start()

    def finished(self) -> bool:
        """True once every (finite) source has ended and every frame has been emitted."""
        return not self._result_thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        self._result_thread.join(timeout)
        return not self._result_thread.is_alive()

    def stop(self, deadline_s: float = 4.0) -> None:
        """Stop acquisition, finish queued frames while time allows, emit every result."""
        t_end = time.monotonic() + deadline_s
        self._stop_acq.set()
        for t in self._threads:
            t.join(max(t_end - time.monotonic(), 0.1))
        # frames still queued when the deadline nears were never inspected: count them
        self._infer_thread.join(max(t_end - time.monotonic() - 0.5, 0.1))
        self._stop_infer.set()
        for frame in self.frames.drain():
            self.stats.count("dropped_shutdown")
            frame.done()
        self._infer_thread.join(max(t_end - time.monotonic(), 0.5))
        self._result_thread.join(max(t_end - time.monotonic(), 1.0))
        if self._result_thread.is_alive():  # a sink is slow: results must still get out
            log.warning("result sinks still busy at the stop deadline; waiting for them")
            self._result_thread.join()
        if self.archive is not None:  # queued images while time allows; the rest counted
            self.archive.finish()
            for t in self._threads_after:
                t.join(max(t_end - time.monotonic(), 0.05))
                if t.is_alive():
                    self.archive.abort()  # ends after the file being written
                    t.join(1.0)

    # -- threads ---------------------------------------------------------------------
    def _dropped_at_shutdown(self, frame: Frame) -> None:
        self.stats.count("dropped_shutdown")
        frame.done()

    def _dropped(self, frame: Frame) -> None:
        self.stats.count("dropped_queue")
        frame.done()

    def _camera_status(self, src: FrameSource, last: str) -> str:
        status = src.status()
        if status != last:
            log.info("camera %s: %s", src.name, status)
            self.stats.count(f"camera_{status}.{src.name}")
            if self.on_camera_status is not None:
                self.on_camera_status(src.name, status)
        return status

    def _acquire(self, src: FrameSource) -> None:
        errors = 0
        status = "online"
        try:
            while not self._stop_acq.is_set():
                self.acq_beat[src.name] = time.monotonic()
                # an offline source renders or reads its next frame only when the queue is
                # empty, so its frames wait for at most the one in inference
                if src.paced_by_consumer and not self.frames.wait_below(1, self.grab_timeout):
                    continue
                try:
                    frame = src.grab(self.grab_timeout)
                    status = self._camera_status(src, status)
                except EndOfStream:
                    log.info("camera %s: end of stream", src.name)
                    break
                except SourceError as exc:
                    status = self._camera_status(src, status)
                    errors += 1
                    self.stats.count(f"source_errors.{src.name}")
                    log.error("camera %s: %s", src.name, exc)
                    self._stop_acq.wait(min(0.1 * 2**min(errors, 6), 5.0))
                    continue
                if frame is None:
                    continue
                errors = 0
                frame.t_arrival = time.monotonic()
                self.last_frame[src.name] = frame.t_arrival
                self.stats.count("frames_in")
                if self.on_frame is not None:
                    self.on_frame(frame)
                if src.paced_by_consumer:  # offline source: wait for room, lose nothing
                    while not self.frames.put_wait(frame, 0.1):
                        self.acq_beat[src.name] = time.monotonic()  # waiting is no stall
                        if self._stop_acq.is_set():
                            self._dropped_at_shutdown(frame)
                            break
                else:
                    self.frames.put(frame)
        finally:
            self.acq_beat.pop(src.name, None)
            with self._lock:
                self._acq_alive -= 1

    def _acquisition_over(self) -> bool:
        with self._lock:
            return self._acq_alive == 0

    def _infer(self) -> None:
        while not self._stop_infer.is_set():
            frame = self.frames.get(0.05)
            if frame is None:
                if self._acquisition_over() and len(self.frames) == 0:
                    break
                continue
            self.results.put(self._inspect(frame))
        self.results.put(None)

    def _inspect(self, frame: Frame) -> Finished:
        active = self._active  # read once: the whole frame sees one recipe
        recipe, detector = active.recipe, active.detector
        self.busy_since = time.monotonic()
        frame.stamp("queue")
        offset = (0, 0)
        mm_per_px = recipe.mm_per_px
        timing: dict[str, float] = {}
        try:
            pre = self.preprocessors.get(frame.camera, self._plain)(frame.image, recipe.roi)
            offset = pre.offset
            mm_per_px = pre.mm_per_px or recipe.mm_per_px  # a calibrated scale wins
            frame.stamp("preprocess")
            detections = detector.detect(pre.image)
            frame.stamp("infer")
            timing = dict(detector.last_timing)  # read before the next
            verdict = decide(detections, recipe, mm_per_px)
            if not verdict.ok:  # sizes in mm and the scale's source, in `reasons`
                sizes = size_reason(detections, verdict.accepted, mm_per_px, pre.scale_source)
                if sizes:
                    verdict.reasons.append(sizes)
        except Exception as exc:  # fail safe: a part we could not inspect is rejected
            log.exception("inspection of %s failed", frame.part_id)
            self.stats.count("inspect_errors")
            detections = []
            verdict = Verdict(False, ERROR_CODE, 1.0, [f"inspection error: {exc}"], [])
        frame.stamp("decide")
        result = self.builder.build(frame, detections, verdict, recipe.ref,
                                    detector.model_sha256, mm_per_px, offset)
        self.busy_since = None
        self.last_progress = time.monotonic()
        return Finished(frame, result, detections, verdict, offset, timing)

    def _emit(self) -> None:
        while True:
            item = self.results.get()
            if item is None:
                break
            self.emit_since = time.monotonic()
            try:
                if self.archive is not None:  # never blocks: queues a copy or drops it
                    try:
                        item.result.image_uri = self.archive.submit(item.frame.image,
                                                                    item.result)
                    except Exception:
                        self.stats.count("archive_errors")
                        log.exception("archiving %s failed", item.result.event_id)
                for sink in self.sinks:
                    try:
                        sink.emit(item.result)
                    except Exception as exc:
                        self.stats.count("sink_errors")
                        name = type(sink).__name__
                        log.exception("sink %s failed on %s", name, item.result.event_id)
                        n = self.sink_failures.get(name, (0, "", 0.0))[0] + 1
                        self.sink_failures[name] = (n, f"{item.result.event_id}: "
                                                    f"{str(exc)[:200]}", time.monotonic())
                if self.on_result is not None:
                    self.on_result(item)
            finally:
                self.emit_since = None
                self.stats.count("results")
                self.stats.count("ng" if item.result.verdict == "NG" else "ok")
                self.stats.observe(item.result.latency_ms.stages())
                item.frame.done()
