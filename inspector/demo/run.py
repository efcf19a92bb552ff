"""`inspector demo`: the whole service on embedded defaults, watched live.

A synthetic camera (seeded parts with ground truth) feeds the pipeline with the demo
recipe; a progress line shows parts/s, NG count and latency; the summary compares
verdicts with the injected defects; NG parts get overlay images in the output folder.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from inspector.config.station import StationConfig
from inspector.core.assets import demo_calibration, demo_recipe
from inspector.decision.sizes import length_px
from inspector.runtime.pipeline import Finished
from inspector.runtime.service import Service


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / max(aw * ah + bw * bh - inter, 1e-9)


class Tally:
    """Verdicts against the synthetic ground truth, updated from the result thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.parts = self.ng = 0
        self.tp = self.fn = self.fp = self.tn = 0  # part level: defective vs NG
        self.defects = self.found = 0  # defect level: truth boxes hit by a counted detection
        self.class_ok = 0
        self.areas_mm2: list[float] = []  # counted defects, as the results report them
        self.lengths_mm: list[float] = []

    def add(self, item: Finished) -> None:
        truth = item.frame.truth or []
        res = item.result
        counted = [d for d in res.defects if d.accepted]
        sizes = [(d.area_mm2, length_px(det) * (d.area_mm2 / d.area_px) ** 0.5)
                 for d, det in zip(res.defects, item.detections, strict=False)
                 if d.accepted and d.area_px > 0]
        with self.lock:
            self.parts += 1
            self.areas_mm2 += [a for a, _ in sizes]
            self.lengths_mm += [length for _, length in sizes]
            ng = res.verdict == "NG"
            self.ng += ng
            if item.frame.truth is None:  # a real camera: no ground truth to score
                return
            if truth:
                self.tp += ng
                self.fn += not ng
            else:
                self.fp += ng
                self.tn += not ng
            for t in truth:
                self.defects += 1
                hits = [d for d in counted if _iou(d.bbox, t.bbox) >= 0.1]
                if hits:
                    self.found += 1
                    best = max(hits, key=lambda d: _iou(d.bbox, t.bbox))
                    self.class_ok += best.cls == t.kind


def run_demo(
    parts: int | None = 200,
    out: Path = Path("demo-out"),
    seed: int = 1000,
    recipe: Path | None = None,
    rate_hz: float | None = None,
    width: int = 512,
    height: int = 512,
    broker: str = "auto",
    calibration: str | Path | None = "auto",
    camera: str = "synthetic",
    ui_port: int | None = None,
) -> int:
    """Run the service on demo defaults for `parts` parts and print the summary table.

    `ui_port`: also serve the station page there, on a copy of the demo recipe that lacks
    one defect kind to teach (inspector.demo.ui); parts then come at 2/s until Ctrl-C
    unless `parts` and `rate_hz` say otherwise.
    """
    out.mkdir(parents=True, exist_ok=True)
    if ui_port is not None:
        from inspector.demo.ui import teachable_recipe

        recipe = teachable_recipe(recipe or demo_recipe(), out)
        rate_hz = rate_hz or 2.0
    recipe = recipe or demo_recipe()
    if camera == "genicam":
        calibration = None  # the demo calibration belongs to the synthetic camera
    calibration, scale_note = _calibration(calibration, recipe, width, height)
    local, mqtt_cfg = _broker(broker, out)
    cfg = StationConfig.model_validate(
        {
            "station": {"site": "demo", "line": "line1", "station": "st1"},
            "cameras": [{"name": "cam0", "source": _source(camera, parts, seed, rate_hz,
                                                           width, height),
                "calibration": str(calibration) if calibration else None}],
            "recipe": str(recipe.resolve()),
            "storage": {"state_dir": str(out.resolve())},
            # NG overlays under <out>/overlays/<day>/ (inspector.outputs.archive layout)
            "archive": {"dir": ".", "ng_images": False},
            "console": False,
            "mqtt": mqtt_cfg,
            "web": {"enabled": ui_port is not None, "port": ui_port or 0},
        }
    )
    viewer = None
    if mqtt_cfg is not None:
        from inspector.demo.subscriber import CountingSubscriber
        from inspector.outputs.mqtt.topics import Topics

        root = Topics.for_station("inspector/v1", "demo", "line1", "st1").root
        viewer = CountingSubscriber(mqtt_cfg["host"], mqtt_cfg["port"], root)
        viewer.wait_ready()
    tally = Tally()
    service = Service(cfg, on_result=tally.add, progress=True)
    service.install_signal_handlers()
    where = f"broker {mqtt_cfg['host']}:{mqtt_cfg['port']}" if mqtt_cfg else "no broker"
    print(f"Inspector demo: {parts or 'endless'} parts from the {camera} camera, recipe "
          f"{recipe}, {where}, output {out}/",
          file=sys.stderr)
    t0 = time.monotonic()
    try:
        service.start()
    except Exception:
        service.stop()
        if local is not None:
            local.stop()
        raise
    stats = service.pipeline.stats
    try:
        web = _start_page(service, cfg) if ui_port is not None else None
    except (OSError, RuntimeError) as exc:  # e.g. the port is taken: say so, stop cleanly
        print(f"inspector demo: the station page cannot start on port {ui_port}: {exc} "
              "(choose another with --ui-port)", file=sys.stderr)
        service.stop()
        if local is not None:
            local.stop()
        return 2

    def tick() -> None:
        lat = stats.percentiles().get("total", {})
        print(f"\r  parts {tally.parts}/{parts or '-'}  {stats.fps():5.1f} parts/s  NG {tally.ng}"
              f"  latency p50 {lat.get('p50', 0):6.1f} ms  p99 {lat.get('p99', 0):6.1f} ms ",
              end="", file=sys.stderr, flush=True)

    def tick_and_count() -> None:
        tick()
        if parts is not None and tally.parts >= parts:  # a live camera never ends by itself
            service.stop_requested.set()

    try:
        service.run_until_stopped(tick_and_count)
    finally:
        if web is not None:
            web.stop()
    tick()
    print(file=sys.stderr)
    wall = time.monotonic() - t0
    mqtt_rows = []
    if viewer is not None:
        deadline = time.monotonic() + 5
        while len(viewer.event_ids) < tally.parts and time.monotonic() < deadline:
            time.sleep(0.05)
        viewer.close()
        mqtt_rows = [
            ("MQTT results received by a subscriber", f"{len(viewer.event_ids)}/{tally.parts}"),
            ("MQTT plc messages received", f"{viewer.plc}/{tally.parts}"),
            ("MQTT retained status", viewer.retained.get("status", "?")),
        ]
    if local is not None:
        local.stop()
    print(summary_table(tally, stats, wall, out, [("scale (px to mm)", scale_note), *mqtt_rows]))
    return 0


def _start_page(service: Service, cfg: StationConfig):
    """Serve the station page and print where and how to log in."""
    from inspector.demo.ui import LEFT_OUT, demo_login
    from inspector.web.server import WebServer

    web = WebServer.attach(service, cfg)
    web.start()
    users_file = cfg.storage.resolve(cfg.web.users_file)
    assert users_file is not None
    user, password = demo_login(users_file)
    login = (f"user {user}, password {password}" if password
             else f"user {user}, password as printed on the first run ({users_file})")
    print(f"\nStation page: {web.url}  ({login})\n"
          f"The recipe lacks the class {LEFT_OUT!r}: teach it from an NG part on the page.\n",
          file=sys.stderr)
    return web


def _calibration(calibration: str | Path | None, recipe: Path, width: int, height: int
                 ) -> tuple[Path | None, str]:
    """(calibration file for the synthetic camera or None, where mm per pixel comes from).

    `auto` takes calibration/demo-cam0.yaml (scripts/make_demo_calibration.py) when it was
    made for this frame size."""
    from inspector.calibration.store import load_calibration
    from inspector.recipes.recipe import load_recipe

    path = None
    if calibration == "auto":
        demo_cal = demo_calibration()
        if tuple(load_calibration(demo_cal).image_size) == (width, height):
            path = demo_cal
    elif calibration not in (None, "none"):
        path = Path(calibration).resolve()
    cal = load_calibration(path) if path else None
    if cal is not None and cal.scale is not None:
        return path, f"{cal.scale.mm_per_px:.5g} mm/px from calibration {path}"
    return path, f"{load_recipe(recipe).mm_per_px:.5g} mm/px from the recipe"


def _source(camera: str, parts: int | None, seed: int, rate_hz: float | None, width: int,
            height: int) -> dict:
    """The demo camera: the synthetic part generator, or a GenICam camera (by default the
    simulated one, viky.cti from the genicam wheel, when GENICAM_GENTL64_PATH is unset)."""
    if camera == "synthetic":
        return {"kind": "synthetic", "seed": seed, "count": parts, "rate_hz": rate_hz,
                "width": width, "height": height}
    if camera != "genicam":
        raise ValueError(f"--camera {camera!r}: expected synthetic or genicam")
    source = {"kind": "genicam",
              "features": {"PixelFormat": "Mono8", "Width": width, "Height": height}}
    if not os.environ.get("GENICAM_GENTL64_PATH"):
        import genicam

        source |= {"cti": str(Path(genicam.__file__).parent / "viky.cti"),
                   "serial_number": "0"}
    return source


def _broker(broker: str, out: Path) -> tuple[object | None, dict | None]:
    """(local broker we started or None, mqtt config section or None) for `--broker`."""
    if broker == "none":
        return None, None
    common = {"outbox": {"path": "outbox.sqlite"}, "reconnect_min_s": 0.2}
    if broker != "auto":
        host, _, port = broker.rpartition(":")
        return None, {"host": host or "127.0.0.1", "port": int(port), **common}
    from inspector.demo.local_broker import Broker, mosquitto_binary

    if mosquitto_binary() is None:
        print("mosquitto is not installed: running without MQTT (scripts/setup.sh installs "
              "it)", file=sys.stderr)
        return None, None
    local = Broker(out / "broker").start()
    return local, {"host": "127.0.0.1", "port": local.port, **common}


def _spread(values: list[float], unit: str) -> str:
    if not values:
        return "n/a"
    v = sorted(values)
    return f"{v[len(v) // 2]:.3g} {unit} ({v[0]:.3g}..{v[-1]:.3g}), {len(v)} defects"


def summary_table(t: Tally, stats, wall: float, out: Path,
                  extra: list[tuple[str, str]] | None = None) -> str:
    """The demo's summary as a Markdown table: verdicts against truth, latency, drops."""
    lat = stats.percentiles()
    c = stats.counters

    def pct(a: int, b: int) -> str:
        return f"{100.0 * a / b:.1f} % ({a}/{b})" if b else "n/a"

    rows = [
        ("parts inspected", str(t.parts)),
        ("NG verdicts", str(t.ng)),
        ("defective parts rejected (part recall)", pct(t.tp, t.tp + t.fn)),
        ("good parts rejected (false reject rate)", pct(t.fp, t.fp + t.tn)),
        ("injected defects found (IoU >= 0.1)", pct(t.found, t.defects)),
        ("found defects with the right class", pct(t.class_ok, t.found)),
        ("counted defect area, median (min..max)", _spread(t.areas_mm2, "mm2")),
        ("counted defect length, median (min..max)", _spread(t.lengths_mm, "mm")),
        ("throughput", f"{t.parts / max(wall, 1e-9):.1f} parts/s (wall {wall:.1f} s)"),
    ]
    for stage in ("preprocess", "infer", "decide", "total"):
        if stage in lat:
            rows.append((f"latency {stage} p50 / p99",
                         f"{lat[stage]['p50']:.1f} / {lat[stage]['p99']:.1f} ms"))
    rows += [
        ("frames dropped (queue full / shutdown)",
         f"{c.get('dropped_queue', 0)} / {c.get('dropped_shutdown', 0)}"),
        ("inspection errors", str(c.get("inspect_errors", 0))),
        *(extra or []),
        ("results", str(out / "results.jsonl")),
        ("NG overlays", str(out / "overlays")),
    ]
    w = max(len(r[0]) for r in rows)
    lines = [f"| {'figure':<{w}} | value |", f"|{'-' * (w + 2)}|-------|"]
    lines += [f"| {k:<{w}} | {v} |" for k, v in rows]
    return "\n".join(lines)
