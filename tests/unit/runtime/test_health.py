"""Health figures: the `stats` topic as a subscriber receives it (schema-checked), the
Prometheus endpoint (off by default) scraped over HTTP, and the status table."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest

from inspector.config.station import load_config
from inspector.runtime.health import status_table
from inspector.runtime.service import Service
from tests.helpers.files import write_config
from tests.helpers.standins import FAST_CAMERA, fast_recipe

pytestmark = pytest.mark.timeout(90)


def _cfg(tmp_path: Path, **kw) -> Path:
    return write_config(
        tmp_path / "station.yaml", fast_recipe(tmp_path / "recipes" / "test-part"),
        console=False,
        cameras=[{"name": "cam0", "source": {**FAST_CAMERA, "seed": 2, "rate_hz": 10}},
                 {"name": "cam1", "enabled": False,
                  "source": {"kind": "synthetic", "seed": 3}}], **kw)


def _run(service: Service, seconds: float, results: int = 0) -> None:
    """Tick like the main loop for `seconds`, and until `results` parts are done."""
    end = time.monotonic() + seconds
    while time.monotonic() < end or (service.pipeline.stats.get("results") < results
                                     and time.monotonic() < end + 60):
        service.tick()
        time.sleep(0.1)


def test_stats_topic_carries_the_health_figures(tmp_path: Path) -> None:
    from tests.helpers.mosquitto import Broker, mosquitto_binary
    from tests.helpers.mqtt_fixtures import TOPICS, Collector, wait_until

    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with Broker(tmp_path / "broker") as broker:
        collector = Collector(broker)  # validates every message against its schema
        cfg = load_config(_cfg(tmp_path, stats_interval_s=0.5, mqtt={
            "host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.2}))
        service = Service(cfg)
        service.start()
        try:
            _run(service, 2.0, results=3)  # fps needs two parts within its window
            n = collector.count(TOPICS.stats)
            _run(service, 1.5)  # stats_interval_s 0.5: at least one more `stats`
            assert wait_until(lambda: collector.count(TOPICS.stats) >= n + 1, 10)
        finally:
            service.stop()
            collector.stop()
    assert collector.errors == []
    stats = collector.docs(TOPICS.stats)[-1]
    assert stats["cameras"] == {"cam0": "online", "cam1": "disabled"}
    assert stats["fps"] > 0 and {"p50", "p99"} <= set(stats["latency_ms"]["total"])
    assert stats["drops"].keys() >= {"queue", "shutdown", "archive"}
    assert stats["outbox"]["connected"] is True and stats["outbox"]["depth"] >= 0
    assert 0 < stats["disk"]["free_bytes"] <= stats["disk"]["total_bytes"]
    assert stats["health"]["ok"] is True and stats["health"]["problems"] == []
    assert stats["archive"]["disk_low"] is False
    assert stats["recipe"]["id"] == "test-part"


def test_prometheus_endpoint_serves_the_same_figures(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client", reason="prometheus-client is not installed")
    from tests.helpers.mosquitto import free_port

    port = free_port()
    cfg = load_config(_cfg(tmp_path, health={"prometheus_port": port}))
    service = Service(cfg)
    service.start()
    try:
        _run(service, 1.5, results=3)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        table = status_table(service.stats())
    finally:
        service.stop()
    assert 'inspector_camera_online{camera="cam0",state="online"} 1.0' in text
    assert 'inspector_camera_online{camera="cam1",state="disabled"} 0.0' in text
    assert 'inspector_events_total{item="",name="frames_in"}' in text
    assert 'inspector_latency_ms{quantile="0.99",stage="total"}' in text
    assert "inspector_healthy 1.0" in text and "inspector_disk_free_bytes" in text
    frames = float(text.split('inspector_events_total{item="",name="frames_in"} ')[1]
                   .split()[0])
    assert frames >= 5
    assert "| health" in table and "| camera cam1" in table and "disabled" in table
    with pytest.raises(OSError):  # stopped with the service
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_prometheus_is_off_by_default(tmp_path: Path) -> None:
    cfg = load_config(_cfg(tmp_path))
    assert cfg.health.prometheus_port is None
    service = Service(cfg)
    service.start()
    try:
        assert service.exporter is None
    finally:
        service.stop()
