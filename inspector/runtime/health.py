"""Health figures: one payload for the `stats` topic, `inspector status` and Prometheus.

`stats_payload` gathers what an operator or a monitoring system wants to see from the
running service: parts/s, per-stage latency p50/p99, counters and drops, outbox depth,
camera states, disk use and the archive, and the supervisor's verdict. The `stats`
topic (schema inspector/outputs/schemas/stats.schema.json), the control socket's `status`
answer and the optional Prometheus endpoint all read this one payload, so they agree.

Prometheus (prometheus-client, optional, off unless `health.prometheus_port` is set)
serves from prometheus-client's own HTTP thread; each scrape calls `stats_payload`,
which only reads counters under short locks.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable

from inspector.config.sections import HealthConfig
from inspector.outputs.archive import disk_figures

log = logging.getLogger(__name__)


def outbox_figures(sink) -> dict:
    """The `outbox` object of the stats schema for an MqttSink."""
    oldest = sink.outbox.oldest_created()
    return {"depth": sink.outbox.depth(), "pending": len(sink.pending),
            "dropped": sink.outbox.dropped_total(),
            "oldest_age_s": None if oldest is None else round(time.time() - oldest, 3),
            "connected": sink.connected, "fault": sink.fault}


def stats_payload(service) -> dict:
    """Every health figure of a started Service (see the stats schema)."""
    p = service.pipeline
    snap = p.stats.snapshot()
    archive = p.archive
    if archive is not None:
        snap["counters"].update(archive.stats.snapshot()["counters"])
    c = snap["counters"]
    snap["ts"] = time.time()
    snap["session"] = service.builder.session
    snap["recipe"] = dict(p.active.recipe.ref)
    snap["drops"] = {"queue": c.get("dropped_queue", 0),
                     "shutdown": c.get("dropped_shutdown", 0),
                     "archive": c.get("archive_dropped", 0)}
    status = {s.name: s.status() for s in p.sources}
    snap["cameras"] = {cam.name: status.get(cam.name, "disabled") if cam.enabled
                       else "disabled" for cam in service.cfg.cameras}
    try:
        snap["disk"] = (archive.disk(5.0) if archive is not None
                        else disk_figures(service.cfg.storage.state_dir))
    except OSError as exc:
        log.warning("disk figures unavailable: %s", exc)
    if archive is not None:
        snap["archive"] = archive.figures()
    if service.supervisor is not None:
        snap["health"] = service.supervisor.figures()
    if service.mqtt is not None:
        snap["outbox"] = outbox_figures(service.mqtt)
    return snap


# -- `inspector status` ----------------------------------------------------------------

def _mb(n: float | None) -> str:
    return "?" if n is None else f"{n / 1e6:,.0f} MB"


def status_table(payload: dict) -> str:
    """The status payload as a Markdown table (what `inspector status` prints)."""
    rows: list[tuple[str, str]] = []
    health = payload.get("health") or {}
    if health:
        rows.append(("health", "OK" if health.get("ok") else
                     ("STUCK: " if health.get("watchdog_fed") is False else "FAULT: ")
                     + "; ".join(health.get("problems", []))))
        iv = health.get("watchdog_interval_s")
        rows.append(("watchdog", f"every {iv:g} s, {health.get('watchdog_pings', 0)} pings"
                     if iv else "not requested by systemd"))
    r = payload.get("recipe") or {}
    if r:
        rows.append(("recipe", f"{r.get('id')} rev {r.get('rev')}"))
    rows.append(("uptime", f"{payload.get('uptime_s', 0):.0f} s"))
    rows.append(("parts/s", f"{payload.get('fps', 0):.2f}"))
    c = payload.get("counters", {})
    rows.append(("results (OK / NG)", f"{c.get('results', 0)} ({c.get('ok', 0)} / "
                 f"{c.get('ng', 0)})"))
    for cam, st in sorted(payload.get("cameras", {}).items()):
        rows.append((f"camera {cam}", st))
    for stage, q in payload.get("latency_ms", {}).items():
        rows.append((f"latency {stage} p50 / p99", f"{q['p50']:.1f} / {q['p99']:.1f} ms"))
    d = payload.get("drops", {})
    rows.append(("drops (queue / shutdown / archive)",
                 f"{d.get('queue', 0)} / {d.get('shutdown', 0)} / {d.get('archive', 0)}"))
    ob = payload.get("outbox")
    if ob:
        rows.append(("outbox depth", f"{ob['depth']} (broker "
                     f"{'connected' if ob['connected'] else 'NOT connected'})"))
        if ob.get("pending") or ob.get("fault"):
            rows.append(("outbox NOT COMMITTING", f"{ob.get('pending', 0)} result(s) held in "
                         "memory, see health"))
    disk = payload.get("disk")
    if disk:
        rows.append(("disk", f"{disk['used_pct']:.1f} % used, {_mb(disk['free_bytes'])} free "
                     f"of {_mb(disk['total_bytes'])} ({disk['path']})"))
    a = payload.get("archive")
    if a:
        rows.append(("archive", f"{a['files']} files, {_mb(a['bytes'])}"
                     + (", WRITES DROPPED (disk low)" if a.get("disk_low") else "")))
    for k in sorted(c):
        if "." in k or k.startswith(("stuck", "watchdog", "publisher")):
            rows.append((k, str(c[k])))
    w = max(len(k) for k, _ in rows)
    lines = [f"| {'figure':<{w}} | value |", f"|{'-' * (w + 2)}|-------|"]
    lines += [f"| {k:<{w}} | {v} |" for k, v in rows]
    return "\n".join(lines)


# -- Prometheus --------------------------------------------------------------------------

_METRIC_RE = re.compile(r"[^a-zA-Z0-9_]")


class PrometheusExporter:
    """Serves `stats_payload` as Prometheus metrics on health.prometheus_port."""

    def __init__(self, cfg: HealthConfig, payload: Callable[[], dict]) -> None:
        try:
            from prometheus_client import CollectorRegistry
        except ImportError as exc:
            raise RuntimeError("health.prometheus_port is set but prometheus-client is not "
                               "installed (pip install prometheus-client)") from exc
        self.cfg = cfg
        self.payload = payload
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self._server = None
        self._thread = None

    def start(self) -> None:
        from prometheus_client import start_http_server

        self._server, self._thread = start_http_server(
            self.cfg.prometheus_port, addr=self.cfg.prometheus_addr, registry=self.registry)
        log.info("Prometheus metrics on http://%s:%d/metrics", self.cfg.prometheus_addr,
                 self.cfg.prometheus_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def collect(self):
        """Called by prometheus-client on each scrape (its HTTP thread)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = self.payload()
        yield GaugeMetricFamily("inspector_parts_per_second", "Parts inspected per second",
                                value=p.get("fps", 0.0))
        yield GaugeMetricFamily("inspector_uptime_seconds", "Seconds since the pipeline "
                                "started", value=p.get("uptime_s", 0.0))
        counters = CounterMetricFamily("inspector_events", "Pipeline, archive and supervisor "
                                       "counters", labels=["name", "item"])
        for k, v in p.get("counters", {}).items():
            name, _, item = k.partition(".")
            counters.add_metric([_METRIC_RE.sub("_", name), item], v)
        yield counters
        lat = GaugeMetricFamily("inspector_latency_ms", "Per-stage latency over the recent "
                                "window", labels=["stage", "quantile"])
        for stage, q in p.get("latency_ms", {}).items():
            lat.add_metric([stage, "0.5"], q["p50"])
            lat.add_metric([stage, "0.99"], q["p99"])
        yield lat
        cams = GaugeMetricFamily("inspector_camera_online", "1 while the camera delivers",
                                 labels=["camera", "state"])
        for cam, st in p.get("cameras", {}).items():
            cams.add_metric([cam, st], 1.0 if st == "online" else 0.0)
        yield cams
        if "outbox" in p:
            yield GaugeMetricFamily("inspector_outbox_depth", "Results not yet acknowledged "
                                    "by the broker", value=p["outbox"]["depth"])
            yield GaugeMetricFamily("inspector_broker_connected", "1 while connected",
                                    value=1.0 if p["outbox"]["connected"] else 0.0)
            yield GaugeMetricFamily("inspector_outbox_pending", "Results held in memory "
                                    "because the outbox cannot commit them",
                                    value=p["outbox"].get("pending", 0))
        if "disk" in p:
            yield GaugeMetricFamily("inspector_disk_free_bytes", "Free bytes on the state "
                                    "disk", value=p["disk"]["free_bytes"])
        if "archive" in p:
            yield GaugeMetricFamily("inspector_archive_bytes", "Bytes in the image archive",
                                    value=p["archive"]["bytes"])
        if "health" in p:
            yield GaugeMetricFamily("inspector_healthy", "1 while every stage progresses",
                                    value=1.0 if p["health"]["ok"] else 0.0)

    def describe(self):
        return []  # collect() depends on the running service: no describe-time probe
