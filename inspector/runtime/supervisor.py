"""Supervisor: watches every stage for progress, heals what it can, feeds the watchdog.

Runs on the service's main thread (Service.tick, every 0.2 s); it owns no thread. It
reads the progress stamps the pipeline keeps (per-camera loop heartbeat and last
frame, the frame in inference since `busy_since`, the result being emitted since
`emit_since`) and decides:

* a camera that stopped delivering (free-running and no frame for `frame_timeout_s`,
  or offline for that long) is restarted in the process (close, open), at most
  `camera_restarts` times in a row without a frame in between;
* a dead MQTT publisher thread is replaced by a fresh one on the same outbox;
* a stuck stage (one grab, one inference or one result taking longer than its limit,
  frames arriving but none inspected, or a camera that restarts did not heal) makes the
  service unhealthy: `WATCHDOG=1` is no longer sent, so systemd (WatchdogSec) kills and
  restarts the service. If the stage recovers first, pinging resumes;
* a fault (the outbox cannot commit results, a result sink raised, a thread that serves
  outside input died) makes health not OK at once and names its cause in `STATUS=`,
  `inspector status` and the stats topic; an outbox fault that lasts `outbox_fault_s`
  also stops the watchdog, so that a restart is tried.

Triggered cameras (GenICam trigger mode software/hardware) are not expected to deliver
frames while the line is idle: for them only the source's own trigger timeout counts
(an unanswered trigger puts the source offline, which the offline rule covers).
Every decision is logged and counted in the pipeline's Stats; none is silent.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from dataclasses import dataclass

from inspector.acquisition.base import FrameSource
from inspector.config.sections import SupervisorConfig
from inspector.runtime.notify import Notifier, watchdog_interval

log = logging.getLogger(__name__)
STATUS_EVERY_S = 5.0


@dataclass
class _Camera:
    started: float
    offline_since: float | None = None
    restarted_at: float = 0.0
    failed_restarts: int = 0  # restarts since the last frame


class Supervisor:
    """Watches the pipeline's progress on each tick, heals what it can, feeds the watchdog."""

    def __init__(self, cfg: SupervisorConfig, pipeline, notifier: Notifier | None = None,
                 mqtt=None, interval_s: float | None = None) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        self.notifier = notifier or Notifier(None)
        self.mqtt = mqtt  # the MqttSink, when the station publishes
        self.interval_s = interval_s if interval_s is not None else watchdog_interval()
        self.problems: dict[str, str] = {}  # stage -> what is wrong, empty when healthy
        self.faults: dict[str, str] = {}  # visible, but the watchdog is still fed
        self.control = None  # the ControlServer, watched like the other threads
        self._thread_restarts: dict[str, tuple[int, float]] = {}  # name -> (count, when)
        self.pings = 0
        self.publisher_restarts = 0
        self._cams: dict[str, _Camera] = {}
        self._unpicked_since: float | None = None
        self._next_ping = 0.0
        self._next_status = time.monotonic() + STATUS_EVERY_S  # READY carried the first
        self._last_status = ""

    @property
    def healthy(self) -> bool:
        return not self.problems and not self.faults

    # -- the main-thread duty ----------------------------------------------------------

    def ready(self) -> None:
        """READY=1 with the first STATUS=: cameras are open, the detector is loaded."""
        text = self.status_text()
        self.notifier.ready(text)
        self._last_status = self._status_key()

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        problems = self._stages(now)
        problems.update(self._cameras(now))
        problems.update(self._publisher())
        faults = self._faults(now)
        for name, what in list(faults.items()):
            if name == "outbox" and self.mqtt.pending.fault_since is not None and \
                    now - self.mqtt.pending.fault_since > self.cfg.outbox_fault_s:
                problems[name] = what  # it lasts: let systemd try a restart
                del faults[name]
        self._fault_transitions(faults)
        self._transitions(problems)
        if not problems and self.interval_s and now >= self._next_ping:
            if self.notifier.watchdog():
                self.pings += 1
            self._next_ping = now + self.interval_s / 2
        text = self.status_text()
        key = self._status_key()  # a change of state is sent at once, figures every 5 s
        if key != self._last_status or now >= self._next_status:
            self.notifier.status(text)
            self._last_status, self._next_status = key, now + STATUS_EVERY_S

    def _stages(self, now: float) -> dict[str, str]:
        p, cfg = self.pipeline, self.cfg
        out: dict[str, str] = {}
        for name, beat in list(p.acq_beat.items()):
            if now - beat > cfg.acq_stuck_s:
                out[f"acquisition {name}"] = (f"camera {name}: one grab has not returned for "
                                              f"{now - beat:.0f} s (limit {cfg.acq_stuck_s:g})")
        busy = p.busy_since
        if busy is not None:  # a frame is being inspected: how long has it taken?
            self._unpicked_since = None
            if now - busy > cfg.infer_stuck_s:
                out["inference"] = (f"one frame in inference for {now - busy:.0f} s "
                                    f"(limit {cfg.infer_stuck_s:g})")
        elif p.last_frame and max(p.last_frame.values()) > p.last_progress:
            # idle, yet a frame came after the last inference: normally picked up within
            # milliseconds; if not, the inference thread is dead or blocked elsewhere
            if self._unpicked_since is None:
                self._unpicked_since = now
            elif now - self._unpicked_since > cfg.infer_stuck_s:
                out["inference"] = (f"frames arrive but none was taken for inspection for "
                                    f"{now - self._unpicked_since:.0f} s")
        else:
            self._unpicked_since = None
        since = p.emit_since
        if since is not None and now - since > cfg.emit_stuck_s:
            out["results"] = (f"one result in the sinks for {now - since:.0f} s "
                              f"(limit {cfg.emit_stuck_s:g})")
        elif p.acq_beat and p.finished():
            out["results"] = "the result thread ended while cameras still deliver"
        return out

    # -- cameras -----------------------------------------------------------------------

    def _cameras(self, now: float) -> dict[str, str]:
        p, cfg = self.pipeline, self.cfg
        out: dict[str, str] = {}
        for src in p.sources:
            name = src.name
            if name not in p.acq_beat:  # not started yet, or ended (end of stream)
                continue
            st = self._cams.setdefault(name, _Camera(started=now))
            last = p.last_frame.get(name, st.started)
            if st.failed_restarts and last > st.restarted_at:
                log.info("camera %s delivers again after %d restart(s)", name,
                         st.failed_restarts)
                p.stats.count(f"camera_recovered.{name}")
                st.failed_restarts = 0
            offline = src.status() == "offline"
            if offline and st.offline_since is None:
                st.offline_since = now
            elif not offline:
                st.offline_since = None
            silent = now - max(last, st.restarted_at)
            expects_frames = not src.paced_by_consumer and not src.triggered
            off_for = now - max(st.offline_since, st.restarted_at) if offline else 0.0
            if not ((expects_frames and silent > cfg.frame_timeout_s)
                    or off_for > cfg.frame_timeout_s):
                continue
            why = (f"offline for {off_for:.0f} s" if off_for > cfg.frame_timeout_s
                   else f"no frame for {silent:.0f} s")
            if st.failed_restarts < cfg.camera_restarts:
                self._restart_camera(src, st, why)
            else:
                out[f"camera {name}"] = (f"camera {name}: {why} after {st.failed_restarts} "
                                         f"restart(s) in the process")
        return out

    def _restart_camera(self, src: FrameSource, st: _Camera, why: str) -> None:
        p = self.pipeline
        st.failed_restarts += 1
        p.stats.count(f"camera_restarts.{src.name}")
        log.warning("camera %s: %s; restarting it (close, open), attempt %d of %d", src.name,
                    why, st.failed_restarts, self.cfg.camera_restarts)
        pool = src.pool
        try:
            src.close()
            src.open(pool)
        except Exception as exc:
            p.stats.count(f"camera_restart_failures.{src.name}")
            log.error("camera %s: restart failed: %s", src.name, exc)
        st.restarted_at = time.monotonic()

    # -- faults ------------------------------------------------------------------------

    def _faults(self, now: float) -> dict[str, str]:
        """What the station cannot do right now although every stage progresses."""
        out: dict[str, str] = {}
        sink = self.mqtt
        if sink is not None and not sink.closed:
            try:
                sink.retry_pending()
            except Exception:
                log.exception("retrying held results failed")
            if sink.fault is not None:
                out["outbox"] = sink.fault
        out.update(self._input_threads())
        failed = self.pipeline.sink_failures
        for name, (count, last, at) in list(failed.items()):
            if time.monotonic() - at <= self.cfg.sink_fault_s:
                out[f"sink {name}"] = (f"result sink {name} failed on {count} result(s); "
                                       f"last: {last}")
        return out

    def _input_threads(self) -> dict[str, str]:
        """The threads that serve outside input (MQTT commands, the control socket):
        restarted when dead, and a fault for `sink_fault_s` after each restart."""
        channels = [] if self.mqtt is None or self.mqtt.closed else self.mqtt.channels
        watched = [*((c.thread_name, c) for c in channels), ("control", self.control)]
        now = time.monotonic()
        out: dict[str, str] = {}
        for name, obj in watched:
            if obj is None:
                continue
            try:
                restarted = not obj.ensure_running()
            except Exception as exc:  # e.g. the state dir is gone: say so, try next tick
                out[f"thread {name}"] = f"thread {name} cannot be restarted: {exc}"
                continue
            if restarted:
                n = self._thread_restarts.get(name, (0, 0.0))[0] + 1
                self._thread_restarts[name] = (n, now)
                self.pipeline.stats.count(f"thread_restarts.{name}")
            n, at = self._thread_restarts.get(name, (0, -1e9))
            if now - at <= self.cfg.sink_fault_s:
                out[f"thread {name}"] = f"thread {name} died and was restarted ({n} time(s))"
        return out

    def _fault_transitions(self, faults: dict[str, str]) -> None:
        for name, what in faults.items():
            if name not in self.faults:
                self.pipeline.stats.count(f"fault.{name.split()[0]}")
                log.error("supervisor: fault: %s", what)
        for name in self.faults:
            if name not in faults:
                log.warning("supervisor: fault cleared: %s", name)
        self.faults = faults

    # -- MQTT publisher ----------------------------------------------------------------

    def _publisher(self) -> dict[str, str]:
        sink = self.mqtt
        if sink is None or sink.is_alive():
            return {}
        if self.publisher_restarts >= self.cfg.publisher_restarts:
            return {"mqtt publisher": f"MQTT publisher thread died; {self.publisher_restarts} "
                                      "restart(s) did not hold"}
        self.publisher_restarts += 1
        self.pipeline.stats.count("publisher_restarts")
        log.error("MQTT publisher thread is not running; starting a fresh one on the same "
                  "outbox (restart %d of %d)", self.publisher_restarts,
                  self.cfg.publisher_restarts)
        sink.restart()  # same outbox; retained state (recipe, camera status) carried over
        return {}

    # -- reporting ---------------------------------------------------------------------

    def _transitions(self, problems: dict[str, str]) -> None:
        stats = self.pipeline.stats
        for stage, what in problems.items():
            if stage not in self.problems:
                stats.count(f"stuck.{stage.split()[0]}")
                if not self.problems:
                    stats.count("watchdog_withheld")
                log.error("supervisor: %s stuck: %s; the watchdog is no longer fed, so "
                          "systemd restarts the service%s", stage, what, _stack_of(stage))
        for stage in self.problems:
            if stage not in problems:
                log.warning("supervisor: %s progresses again; feeding the watchdog", stage)
        self.problems = problems

    def status_text(self) -> str:
        p = self.pipeline
        r = p.active.recipe
        cams = " ".join(f"{s.name}={s.status()}" for s in p.sources)
        text = f"recipe {r.id} rev {r.rev}; cameras {cams}; {p.stats.fps():.1f} parts/s"
        if self.faults:
            text = "FAULT " + "; ".join(self.faults.values()) + " | " + text
        if self.problems:
            text = "STUCK " + "; ".join(self.problems.values()) + " | " + text
        return text

    def _status_key(self) -> str:
        p = self.pipeline
        return " ".join([*self.problems, *self.faults, p.active.recipe.id, str(p.active.recipe.rev),
                         *(f"{s.name}={s.status()}" for s in p.sources)])

    def figures(self) -> dict:
        """The `health` part of the stats payload."""
        return {"ok": self.healthy,
                "problems": [*self.problems.values(), *self.faults.values()],
                "watchdog_interval_s": self.interval_s, "watchdog_pings": self.pings,
                "watchdog_fed": not self.problems}


def _stack_of(stage: str) -> str:
    """Where the thread of a stuck stage is waiting (for the journal), or ''."""
    names = {"inference": "infer", "results": "results"}
    kind, _, cam = stage.partition(" ")
    name = f"acq-{cam}" if kind == "acquisition" else names.get(stage)
    for t in threading.enumerate():
        if t.name == name and t.ident is not None:
            frame = sys._current_frames().get(t.ident)
            if frame is not None:
                return "; thread " + name + " is at:\n" + "".join(
                    traceback.format_stack(frame)[-6:])
    return ""
