"""`inspector demo`: the whole service on embedded defaults, watched live.

A synthetic camera (seeded parts with ground truth) feeds the pipeline with the demo
recipe; a progress line shows parts/s, NG count and latency; the summary compares
verdicts with the injected defects; NG parts get overlay images in the output folder.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from inspector.config import StationConfig
from inspector.pipeline import Finished
from inspector.service import Service

REPO_RECIPES = Path(__file__).resolve().parents[1] / "recipes"


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

    def add(self, item: Finished) -> None:
        truth = item.frame.truth or []
        res = item.result
        counted = [d for d in res["defects"] if d["accepted"]]
        with self.lock:
            self.parts += 1
            ng = res["verdict"] == "NG"
            self.ng += ng
            if truth:
                self.tp += ng
                self.fn += not ng
            else:
                self.fp += ng
                self.tn += not ng
            for t in truth:
                self.defects += 1
                hits = [d for d in counted if _iou(d["bbox"], t.bbox) >= 0.1]
                if hits:
                    self.found += 1
                    best = max(hits, key=lambda d: _iou(d["bbox"], t.bbox))
                    self.class_ok += best["class"] == t.kind


def run_demo(
    parts: int = 200,
    out: Path = Path("demo-out"),
    seed: int = 1000,
    recipe: Path | None = None,
    rate_hz: float | None = None,
    width: int = 512,
    height: int = 512,
    broker: str = "auto",
) -> int:
    recipe = recipe or REPO_RECIPES / "demo"
    out.mkdir(parents=True, exist_ok=True)
    local, mqtt_cfg = _broker(broker, out)
    cfg = StationConfig.model_validate(
        {
            "station": {"site": "demo", "line": "line1", "station": "st1"},
            "cameras": [{"name": "cam0", "source": {
                "kind": "synthetic", "seed": seed, "count": parts, "rate_hz": rate_hz,
                "width": width, "height": height}}],
            "recipe": str(recipe.resolve()),
            "storage": {"state_dir": str(out.resolve())},
            "console": False,
            "mqtt": mqtt_cfg,
        }
    )
    viewer = None
    if mqtt_cfg is not None:
        from inspector.demo_subscriber import CountingSubscriber
        from inspector.mqtt.topics import Topics

        root = Topics.for_station("inspector/v1", "demo", "line1", "st1").root
        viewer = CountingSubscriber(mqtt_cfg["host"], mqtt_cfg["port"], root)
        viewer.wait_ready()
    tally = Tally()
    service = Service(cfg, on_result=tally.add, progress=True)
    service.install_signal_handlers()
    where = f"broker {mqtt_cfg['host']}:{mqtt_cfg['port']}" if mqtt_cfg else "no broker"
    print(f"Inspector demo: {parts} synthetic parts, recipe {recipe}, {where}, output {out}/",
          file=sys.stderr)
    t0 = time.monotonic()
    try:
        service.start()
    except Exception:
        if local is not None:
            local.stop()
        raise
    stats = service.pipeline.stats

    def tick() -> None:
        lat = stats.percentiles().get("total", {})
        print(f"\r  parts {tally.parts}/{parts}  {stats.fps():5.1f} parts/s  NG {tally.ng}"
              f"  latency p50 {lat.get('p50', 0):6.1f} ms  p99 {lat.get('p99', 0):6.1f} ms ",
              end="", file=sys.stderr, flush=True)

    service.run_until_stopped(tick)
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
    print(summary_table(tally, stats, wall, out, mqtt_rows))
    return 0


def _broker(broker: str, out: Path) -> tuple[object | None, dict | None]:
    """(local broker we started or None, mqtt config section or None) for `--broker`."""
    if broker == "none":
        return None, None
    common = {"outbox": {"path": "outbox.sqlite"}, "reconnect_min_s": 0.2}
    if broker != "auto":
        host, _, port = broker.rpartition(":")
        return None, {"host": host or "127.0.0.1", "port": int(port), **common}
    from inspector.mqtt.local_broker import Broker, mosquitto_binary

    if mosquitto_binary() is None:
        print("mosquitto is not installed: running without MQTT (scripts/setup.sh installs "
              "it)", file=sys.stderr)
        return None, None
    local = Broker(out / "broker").start()
    return local, {"host": "127.0.0.1", "port": local.port, **common}


def summary_table(t: Tally, stats, wall: float, out: Path,
                  extra: list[tuple[str, str]] | None = None) -> str:
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
