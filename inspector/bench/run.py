"""`inspector bench`: the whole service under load, timed from frame arrival to PUBACK.

The station is the real one (inspector.service.Service): synthetic cameras, preprocess,
the recipe's detector, decision, outbox, a local mosquitto, and a subscriber that counts
every result coming back out of the broker, so "no result lost" is observed, not assumed.
The instruments (per-result stamps, CPU and memory sampler) are in
inspector.bench.measure. Afterwards the enrolled detector
runs alone on frames of the same source, to separate the pipeline's cost from the
model's. inspector.bench.report turns the measurements into figures and files.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from inspector.bench.measure import Collector, Sampler
from inspector.config.station import StationConfig
from inspector.core.assets import demo_recipe
from inspector.runtime.pipeline import ActiveRecipe

log = logging.getLogger(__name__)
SITE, LINE, STATION = "bench", "line1", "st1"


@dataclass
class BenchSettings:
    """What to run; stored as the `config` of bench.json."""

    recipe: Path = field(default_factory=demo_recipe)
    config: Path | None = None  # a station config: its cameras, calibration and recipe
    camera: str = "synthetic"  # or "genicam" (the simulated viky.cti unless configured)
    cameras: int = 1  # each its own synthetic source and seed (or GenICam device)
    size: int = 512  # square frames
    rate_hz: float | None = None  # per camera; None: free-run, paced by the detector
    seconds: float | None = 20.0  # measured time after the warm-up
    parts: int | None = None  # or: stop after this many results (warm-up included)
    warmup_s: float = 5.0
    restart_broker_every_s: float | None = None  # stop + start mosquitto on the same port
    distinct: int | None = 16  # parts rendered once per camera (None: render every frame)
    broker: str = "auto"  # auto: a local mosquitto; or HOST:PORT
    archive: bool = False  # the station's default archive (NG images, overlays)
    alone_frames: int = 30  # frames for the detector-alone timing
    seed: int = 1000
    soak: bool = False  # judge the soak verdict
    progress: bool = True  # a progress line on stderr

    def check(self) -> None:
        """Raise ValueError with the reason for settings that cannot run."""
        if not 1 <= self.cameras <= 8:
            raise ValueError(f"cameras {self.cameras}: expected 1..8")
        if not 64 <= self.size <= 8192:
            raise ValueError(f"size {self.size}: expected 64..8192")
        if self.camera not in ("synthetic", "genicam"):
            raise ValueError(f"camera {self.camera!r}: expected synthetic or genicam")
        if self.camera == "genicam" and self.cameras > 3 and self.config is None:
            raise ValueError("the simulated GenICam producer has 3 cameras")
        if self.seconds is None and self.parts is None:
            raise ValueError("give seconds or parts")
        if self.restart_broker_every_s is not None and self.broker != "auto":
            raise ValueError("broker restarts need the local broker (broker auto)")
        for name in ("rate_hz", "seconds", "restart_broker_every_s"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.warmup_s < 0 or self.alone_frames < 1 or (self.parts or 1) < 1:
            raise ValueError("warmup_s >= 0, alone_frames >= 1 and parts >= 1 expected")


def station_config(s: BenchSettings, out: Path, host: str, port: int) -> StationConfig:
    """The bench station, state in `out`, MQTT to host:port. With `config`: that
    station's cameras, calibration, recipe and queues (its own MQTT, storage, archive
    and Prometheus port are replaced, so the bench neither needs its broker credentials
    nor writes into its state); else `cameras` synthetic or GenICam cameras."""
    from inspector.demo.run import _source

    common = {
        "storage": {"state_dir": str(out.resolve())},
        "archive": {"dir": "archive"} if s.archive else {"enabled": False},
        "console": False,
        "mqtt": {"host": host, "port": port, "outbox": {"path": "outbox.sqlite"},
                 "reconnect_min_s": 0.2, "reconnect_max_s": 2.0, "drain_timeout_s": 15.0},
    }
    if s.config is not None:
        from inspector.config.station import load_config

        doc = load_config(Path(s.config)).model_dump(mode="json", exclude_none=True)
        doc.pop("recipes_dir", None)
        doc["station"] = {"site": SITE, "line": LINE, "station": STATION}
        doc["health"] = {**doc.get("health", {}), "prometheus_port": None}
        return StationConfig.model_validate(doc | common)

    def camera(i: int) -> dict:
        if s.camera == "genicam":  # at `rate_hz` if given, else the camera's own rate
            src = _source("genicam", None, 0, None, s.size, s.size)
            if s.rate_hz is not None:
                src["features"]["AcquisitionFrameRate"] = s.rate_hz
            if "serial_number" in src:  # the simulated producer: one serial per camera
                src["serial_number"] = str(i)
            return {"name": f"cam{i}", "source": src}
        src = _source("synthetic", None, s.seed + i, s.rate_hz, s.size, s.size)
        return {"name": f"cam{i}", "source": src | {"distinct": s.distinct}}

    return StationConfig.model_validate({
        "station": {"site": SITE, "line": LINE, "station": STATION},
        "cameras": [camera(i) for i in range(s.cameras)],
        "recipe": str(Path(s.recipe).resolve()),
        **common,
    })


def _start_broker(broker: str, out: Path):
    """(local Broker or None, host, port). The local one is persistent, so the counting
    subscriber's durable session and queue survive a restart."""
    if broker != "auto":
        host, _, port = broker.rpartition(":")
        return None, host or "127.0.0.1", int(port)
    from inspector.demo.local_broker import Broker, mosquitto_binary

    if mosquitto_binary() is None:
        raise RuntimeError("inspector bench needs mosquitto (scripts/setup.sh installs it) "
                           "or --broker HOST:PORT")
    for old in (out / "broker").glob("mosquitto.db*"):
        old.unlink()
    local = Broker(out / "broker", persistence=True).start()
    return local, "127.0.0.1", local.port


def detector_alone(active: ActiveRecipe, source_cfg, frames: int, pre=None) -> list[float]:
    """ms of `detect` alone on `frames` frames of the same source (its preprocessing
    `pre` applied first, untimed), in this thread only, once the service has stopped."""
    from inspector.acquisition import build_source
    from inspector.core.frames import FramePool
    from inspector.preprocess.frame import Preprocessor

    if source_cfg.kind in ("synthetic", "replay"):  # flat out, and no end within `frames`
        update = {"rate_hz": None} | ({"count": None} if source_cfg.kind == "synthetic"
                                      else {"loop": True})
        source_cfg = source_cfg.model_copy(update=update)
    src = build_source("alone", source_cfg)
    src.open(FramePool(2))
    pre = pre or Preprocessor()
    times = []
    try:
        for _ in range(frames):
            frame = src.grab(5.0)
            if frame is None:
                continue
            try:
                image = pre(frame.image, active.recipe.roi).image
                t = time.perf_counter()
                active.detector.detect(image)
                times.append((time.perf_counter() - t) * 1000.0)
            finally:
                frame.done()
    finally:
        src.close()
    return times


def run_bench(settings: BenchSettings, out: Path, signals: bool = False) -> dict:
    """Run, measure, write bench.json / bench.md / latency.png into `out`; the report."""
    from inspector.bench import report as bench_report

    settings.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("outbox.sqlite*"):  # a fresh outbox: no replays of earlier runs
        old.unlink()
    local, host, port = _start_broker(settings.broker, out)
    try:
        raw = _measure(settings, out, local, host, port, signals)
    finally:
        if local is not None:
            local.stop()
    report = bench_report.build_report(raw)
    bench_report.write_outputs(out, report)
    return report


def _measure(s: BenchSettings, out: Path, local, host: str, port: int,
             signals: bool) -> dict:
    from inspector.demo.subscriber import CountingSubscriber
    from inspector.outputs.mqtt.topics import Topics
    from inspector.runtime.service import Service

    cfg = station_config(s, out, host, port)
    root = Topics.for_station(cfg.mqtt.prefix, SITE, LINE, STATION).root
    viewer = CountingSubscriber(host, port, root, persistent=True,
                                client_id=f"inspector-bench-{uuid.uuid4().hex[:8]}")
    if not viewer.wait_ready():
        viewer.close()
        raise RuntimeError(f"bench subscriber could not subscribe at {host}:{port}")
    col = Collector([c.name for c in cfg.cameras])
    service = Service(cfg, on_result=col.on_result, ack_listener=col.on_ack)
    if signals:
        service.install_signal_handlers()
    t0 = time.monotonic()
    sampler = Sampler(t0, lambda: service.mqtt.outbox.depth() if service.mqtt else None,
                      col.count)
    sampler.start()
    try:
        service.start()
    except Exception:
        service.stop()
        sampler.stop()
        viewer.close()
        raise
    t_start = time.monotonic()
    t_warm = t_start + s.warmup_s
    t_end = t_warm + s.seconds if s.seconds is not None else math.inf
    every = s.restart_broker_every_s
    state = {"next_restart": t_start + every if every else math.inf,
             "next_print": t_start + 1.0, "t_stop": None}
    restarts: list[float] = []
    failed_restarts: list[float] = []

    def tick() -> None:
        now = time.monotonic()
        if local is not None and now >= state["next_restart"] and now < t_end:
            state["next_restart"] += every
            try:
                local.restart()
                restarts.append(round(now - t0, 3))
            except RuntimeError:  # the broker stays down: the outbox keeps the results
                log.exception("bench: broker restart failed")
                failed_restarts.append(round(now - t0, 3))
        if now >= t_end or (s.parts is not None and col.count() >= s.parts):
            state["t_stop"] = now
            service.stop_requested.set()
        if s.progress and now >= state["next_print"]:
            state["next_print"] = now + 1.0
            _progress(col, service, sampler, restarts, now - t_start,
                      s.warmup_s + (s.seconds or 0))

    service.run_until_stopped(tick)  # stops the service: outbox drained up to 15 s
    t_stop = state["t_stop"] or time.monotonic()
    if s.progress:
        print(file=sys.stderr)
    sampler.stop()
    pending = service.mqtt.outbox.depth()
    deadline = time.monotonic() + 15.0  # what the broker accepted reaches the subscriber
    while time.monotonic() < deadline:
        with viewer.lock:
            missing = len(col.accepted - viewer.event_ids)
        if not missing:
            break
        time.sleep(0.1)
    viewer.close()
    with viewer.lock:
        received = col.accepted & viewer.event_ids
    cam0 = cfg.cameras[0]
    alone = detector_alone(service.pipeline.active, cam0.source, s.alone_frames,
                           service.pipeline.preprocessors.get(cam0.name))
    stats = service.pipeline.stats
    delivered = sum(getattr(src, "frame_id", 0) for src in service.pipeline.sources)
    recipe = service.pipeline.active.recipe
    return {
        "settings": s, "t0": t0, "t_start": t_start, "t_warm": t_warm, "t_stop": t_stop,
        "rows": col.matrix(), "samples": sampler.samples, "restarts_s": restarts,
        "failed_restarts_s": failed_restarts,
        "counters": dict(stats.counters), "frames_started": delivered,
        "accepted": len(col.accepted), "received": len(received),
        "lost": len(col.accepted) - len(received), "outbox_pending": pending,
        "alone_ms": alone, "recipe": {"id": recipe.id, "rev": recipe.rev},
    }


def _progress(col: Collector, service, sampler: Sampler, restarts: list, elapsed: float,
              planned: float) -> None:
    p50 = col.recent_total_ms()
    print(f"\r  {elapsed:5.0f}/{planned:.0f} s  parts {col.count()}  "
          f"{service.pipeline.stats.fps():5.1f} parts/s  p50 total {p50:6.1f} ms  "
          f"RSS {sampler.last_rss_mb():6.0f} MB  broker restarts {len(restarts)} ",
          end="", file=sys.stderr, flush=True)
