"""Service: wire a station config into a running pipeline, and stop it cleanly.

Builds the frame pool, the sources, the active recipe with its enrolled detector, and
the result sinks; installs SIGTERM/SIGINT handlers that stop acquisition, finish the
frames already accepted and flush every result within the stop deadline.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from inspector.acquisition import build_source
from inspector.config.station import StationConfig
from inspector.core import workers
from inspector.core.frames import FramePool
from inspector.decision.results import ResultBuilder
from inspector.inference.detectors.select import describe_choice
from inspector.outputs.archive import Archive
from inspector.outputs.sinks.base import ResultSink
from inspector.outputs.sinks.console import ConsoleSink
from inspector.outputs.sinks.jsonl import JsonlSink
from inspector.preprocess.frame import Preprocessor
from inspector.recipes.cache import detector_for, enroll_cached, enroll_isolated
from inspector.recipes.recipe import load_recipe
from inspector.recipes.store import find_recipe
from inspector.runtime.control import ControlServer
from inspector.runtime.health import PrometheusExporter, stats_payload
from inspector.runtime.instance_lock import InstanceLock
from inspector.runtime.logs import register_secret
from inspector.runtime.notify import Notifier
from inspector.runtime.pipeline import ActiveRecipe, Finished, Pipeline
from inspector.runtime.supervisor import Supervisor
from inspector.runtime.trigger import TriggerDesk

if TYPE_CHECKING:
    from inspector.outputs.mqtt.publisher import AckListener

log = logging.getLogger(__name__)
STOP_DEADLINE_S = 4.0  # SIGTERM to exit within 5 s, including sink flush


def control_path(cfg: StationConfig) -> Path:
    """Where the running service listens for the CLI (`inspector status`, switches)."""
    return cfg.storage.state_dir / "control.sock"


def apply_camera_features(sources: list, features: dict, previous: dict) -> None:
    """A recipe's `camera_features` on every camera, all or nothing: when a camera refuses
    (unknown node, value out of range, camera offline), the cameras already changed get
    `previous` (the running recipe's features) back and the error names the camera, so a
    switch fails with an error ack and the line keeps its old recipe and settings."""
    if not features and not previous:
        return
    done = []
    for src in sources:
        try:
            src.apply_features(features)
        except Exception as exc:
            for d in reversed(done):
                try:
                    d.apply_features(previous)
                except Exception as back:  # the camera stays as the new recipe left it
                    log.error("camera %s: restoring the previous camera_features failed: %s",
                              d.name, back)
            raise ValueError(f"camera_features: {exc}") from None
        done.append(src)


def load_active(path: Path, progress: bool = False, expect_rev: int | None = None,
                isolate: bool = False) -> ActiveRecipe:
    """Validate a recipe and enrol its detector: only a fully ready recipe is returned.

    The enrolment comes from the recipe's cache when it fits (inspector.recipes.cache);
    `isolate` (a switch while the line runs) enrols a cache miss in a child process.
    """
    recipe = load_recipe(path)
    if expect_rev is not None and recipe.rev != expect_rev:
        raise ValueError(f"recipe {recipe.id!r} is at rev {recipe.rev}, not {expect_rev}")
    detector = detector_for(recipe)
    got = (enroll_isolated(recipe, detector) if isolate
           else enroll_cached(recipe, detector, progress=progress))
    log.info("recipe %s rev %s %s in %.2f s", recipe.id, recipe.rev,
             "loaded from cache" if got.hit else "enrolled", got.seconds)
    return ActiveRecipe(recipe, detector)


class Service:
    """One station's service: builds and runs the pipeline, its sinks and control socket."""

    def __init__(
        self,
        cfg: StationConfig,
        extra_sinks: list[ResultSink] | None = None,
        on_result: Callable[[Finished], None] | None = None,
        progress: bool = False,
        ack_listener: AckListener | None = None,
    ) -> None:
        self.cfg = cfg
        # called by the MQTT publisher on every PUBACK (kind, event_id, t); the benchmark's
        # arrival-to-broker latency
        self.ack_listener = ack_listener
        self.extra_sinks = extra_sinks or []
        self.on_result = on_result
        # more callers of every finished part (the station page's live view); each must
        # return quickly: it runs on the result thread
        self.observers: list[Callable[[Finished], None]] = []
        self.progress = progress
        # a switch's cache miss is enrolled in a child process, so that inspection never
        # waits behind it; scripts/bench_switch.py turns it off to measure the difference
        self.isolate_enrolment = True
        self.stop_requested = threading.Event()
        self.pipeline: Pipeline | None = None
        self.sinks: list[ResultSink] = []
        self.mqtt = None  # the MqttSink when the station has an `mqtt:` section
        self.control: ControlServer | None = None
        self.builder = ResultBuilder()
        self.notifier = Notifier.from_env()  # sd_notify; a no-op outside systemd
        self.supervisor: Supervisor | None = None
        self.trigger_desk: TriggerDesk | None = None  # cmd/trigger (READY/BUSY/ERROR)
        self.exporter: PrometheusExporter | None = None
        self._next_stats = 0.0
        self._stop_lock = threading.Lock()
        self._switch_lock = threading.Lock()
        self._stopped = False
        self.lock = InstanceLock(cfg.storage.state_dir)

    def start(self) -> None:
        cfg = self.cfg
        self.lock.acquire()  # first: a second instance must touch nothing of the first
        active = load_active(cfg.recipe, progress=self.progress)
        cams = [c for c in cfg.cameras if c.enabled]
        sources = [build_source(c.name, c.source) for c in cams]
        # per camera, once: calibration loaded, undistortion maps computed (before opening)
        preprocessors = {c.name: Preprocessor(c.calibration) for c in cams}
        depth = cfg.queues.frames + cfg.queues.results + 2  # queued + in flight
        pool = FramePool(size=depth + cfg.queues.pool_spare)
        if cfg.mqtt is not None and cfg.mqtt.enabled:
            try:
                register_secret(cfg.mqtt.read_password())  # never printed from now on
            except Exception:
                pass  # the publisher reports an unreadable password source
        self.sinks = self._build_sinks()
        opened = []
        try:
            for src in sources:
                src.open(pool)
                opened.append(src)
            # the recipe's camera features, before the first frame is judged
            apply_camera_features(sources, active.recipe.camera_features, {})
        except Exception:
            for src in opened:
                src.close()
            raise
        for sink in self.sinks:
            for c in cfg.cameras:
                sink.camera_status(c.name, "online" if c.enabled else "disabled")
            sink.state_changed(self.state(active))
        self.trigger_desk = TriggerDesk(sources, self._ready_changed)
        self.observers.append(self.trigger_desk.finished)
        self.pipeline = Pipeline(
            sources,
            active,
            self.sinks,
            self.builder,
            frame_queue=cfg.queues.frames,
            result_queue=cfg.queues.results,
            on_result=self._finished,
            archive=(Archive(cfg.archive, cfg.storage.resolve(cfg.archive.dir),
                             uri_base=self._archive_url())
                     if cfg.archive.enabled else None),
            on_camera_status=self._camera_status,
            preprocessors=preprocessors,
            on_frame=self.trigger_desk.tag,
        )
        self.pipeline.start()
        self.trigger_desk.announce()
        self.control = ControlServer(control_path(cfg))
        self.control.register("status", lambda req: {"stats": self.stats(),
                                                     "state": self.state(self.pipeline.active)})
        self.control.register("switch", lambda req: {"recipe": self.switch_recipe(
            str(req.get("recipe_id", "")), req.get("rev"))})
        self.control.start()
        self.supervisor = Supervisor(cfg.supervisor, self.pipeline, self.notifier, self.mqtt)
        self.supervisor.control = self.control
        if cfg.health.prometheus_port is not None:
            self.exporter = PrometheusExporter(cfg.health, self.stats)
            self.exporter.start()
        chosen = describe_choice(active.detector)
        log.info("inspecting with %d camera(s), recipe %s rev %s, detector %s%s",
                 len(sources), active.recipe.id, active.recipe.rev, active.detector.kind,
                 f": {chosen}" if chosen else "")
        # cameras open, detector enrolled; the broker may still be away (the outbox waits)
        self.supervisor.ready()

    def _archive_url(self) -> str | None:
        """The station page's /archive/ URL when it serves the archive, else None."""
        web = self.cfg.web
        base = web.base_url() if web.enabled else None
        return None if base is None else base + "archive/"

    def _finished(self, item: Finished) -> None:
        if self.on_result is not None:
            self.on_result(item)
        for observe in self.observers:
            try:
                observe(item)
            except Exception:  # a viewer's bug never stops results
                log.exception("observer %r failed on %s", observe, item.result.event_id)

    def _camera_status(self, camera: str, status: str) -> None:
        for sink in self.sinks:
            sink.camera_status(camera, status)

    def _build_sinks(self) -> list[ResultSink]:
        cfg = self.cfg
        sinks: list[ResultSink] = []
        jsonl = cfg.storage.resolve(cfg.storage.results_jsonl)
        if jsonl is not None:
            sinks.append(JsonlSink(jsonl))
        if cfg.console:
            sinks.append(ConsoleSink())
        if cfg.mqtt is not None and cfg.mqtt.enabled:
            from inspector.outputs.mqtt.sink import MqttSink

            st = cfg.station
            self.mqtt = MqttSink(cfg.mqtt, st.site, st.line, st.station, self.builder.session,
                                 recipe_handler=self.switch_recipe,
                                 trigger_handler=self.trigger,
                                 threshold_handler=self.change_thresholds,
                                 enterprise=st.enterprise, area=st.area,
                                 state_dir=cfg.storage.state_dir,
                                 ack_listener=self.ack_listener,
                                 cameras=[c.name for c in cfg.cameras])
            sinks.append(self.mqtt)
            thumbnails = self.mqtt.thumbnails
            if thumbnails is not None:
                self.observers.append(lambda item: thumbnails.offer(item.frame.image,
                                                                    item.result))
        return sinks + self.extra_sinks

    def _ready_changed(self, state: dict) -> None:
        for sink in self.sinks:
            sink.ready_changed(state)

    def trigger(self, request_id: str, part_id: str | None = None,
                camera: str | None = None) -> dict:
        """Inspect the next part (cmd/trigger): `{camera, part_id}`, or TriggerRefused."""
        if self.trigger_desk is None or self.pipeline is None:
            raise RuntimeError("the service is still starting; try again")
        return self.trigger_desk.fire(request_id, part_id, camera)

    def change_thresholds(self, classes: dict) -> dict:
        """Save new per-class rules as rev + 1 of the running recipe and switch to it
        (cmd/thresholds); an invalid change raises and changes nothing."""
        from inspector.recipes.rules import RuleChange, save_rules

        if self.pipeline is None:
            raise RuntimeError("the service is still starting; try again")
        with self._switch_lock:  # no switch may slip in between the save and the swap
            recipe = self.pipeline.active.recipe
            assert recipe.folder is not None
            rev = save_rules(recipe, RuleChange.model_validate({"classes": classes}))
            return self._switch(recipe.folder.name, rev)

    def state(self, active: ActiveRecipe) -> dict:
        return {"recipe": active.recipe.ref, "mode": "inspecting", "since": time.time()}

    def switch_recipe(self, recipe_id: str, rev: int | None = None) -> dict:
        """Load, validate and enrol `recipe_id` from the recipes folder, then swap it in.

        Raises ValueError / FileNotFoundError with the reason; the running recipe stays.
        """
        if self.pipeline is None:
            raise RuntimeError("the service is still starting; try again")
        with self._switch_lock:  # MQTT and CLI switches never interleave
            return self._switch(recipe_id, rev)

    def _switch(self, recipe_id: str, rev: int | None) -> dict:
        desk = self.trigger_desk
        if desk is not None:
            desk.switching(True)  # `ready` says BUSY: no trigger while the recipe changes
        try:
            return self._swap(recipe_id, rev)
        finally:
            if desk is not None:
                desk.switching(False)

    def _swap(self, recipe_id: str, rev: int | None) -> dict:
        t0 = time.monotonic()
        folder = find_recipe(Path(self.cfg.recipes_dir), recipe_id)
        active = load_active(folder, expect_rev=rev, isolate=self.isolate_enrolment)
        apply_camera_features(self.pipeline.sources, active.recipe.camera_features,
                              self.pipeline.active.recipe.camera_features)
        self.pipeline.swap(active)
        log.info("switch to %s rev %s took %.2f s", recipe_id, active.recipe.rev,
                 time.monotonic() - t0)
        for sink in self.sinks:
            sink.state_changed(self.state(active))
        return active.recipe.ref

    def install_signal_handlers(self) -> None:
        def handler(signum, _frame) -> None:
            log.info("signal %s: stopping", signal.Signals(signum).name)
            self.stop_requested.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def stats(self) -> dict:
        """The `stats` payload: fps, latency, drops, cameras, disk, health
        (inspector.runtime.health)."""
        return stats_payload(self)

    def tick(self) -> None:
        """Periodic duties of the main thread: supervision, watchdog, the `stats` topic,
        the trigger handshake's timeouts and camera state."""
        if self.trigger_desk is not None:
            try:
                self.trigger_desk.tick()
            except Exception:
                log.exception("trigger desk tick failed")
        if self.supervisor is not None:
            try:
                self.supervisor.tick()
            except Exception:  # never let a supervision bug feed or kill anything by itself
                log.exception("supervisor tick failed")
        now = time.monotonic()
        if self.mqtt is not None and now >= self._next_stats:
            self._next_stats = now + self.cfg.stats_interval_s
            try:
                self.mqtt.publish_stats(self.stats())
            except Exception:
                log.exception("publishing stats failed")

    def run_until_stopped(self, tick: Callable[[], None] | None = None) -> None:
        """Block until a signal, stop(), or every finite source has ended."""
        while not self.stop_requested.wait(0.2):
            self.tick()
            if tick is not None:
                tick()
            if self.pipeline.finished():
                break
        self.stop()

    def stop(self) -> None:
        """Stop everything once; later calls wait for the first one to finish."""
        self.stop_requested.set()
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            self._stop()

    def _stop(self) -> None:
        self.notifier.stopping()
        if self.exporter is not None:
            self.exporter.stop()
        if self.control is not None:
            self.control.stop()
        if self.pipeline is not None:
            self.pipeline.stop(STOP_DEADLINE_S)
            c = self.pipeline.stats.counters
            log.info("stopped", extra={"kv": {
                k: c.get(k, 0) for k in ("frames_in", "results", "ng", "dropped_queue",
                                         "dropped_shutdown", "inspect_errors")}})
            for src in self.pipeline.sources:
                try:
                    src.close()
                except Exception:
                    log.exception("closing camera %s failed", src.name)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s failed", type(sink).__name__)
        self.sinks = []
        workers.shutdown()  # the shared pools (unknown branch, spectral CPU) end with us
        self.lock.release()
