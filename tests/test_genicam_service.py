"""The whole service on a GenICam camera: viky.cti frames through the pipeline to results."""

from __future__ import annotations

import json
import time
from pathlib import Path

import genicam
import pytest

from inspector.config import load_config
from inspector.service import Service
from tests.conftest import REPO, write_config

CTI = Path(genicam.__file__).parent / "viky.cti"
pytestmark = pytest.mark.skipif(not CTI.is_file(), reason=f"simulated producer {CTI} not found")


def test_service_inspects_viky_frames(tmp_path: Path) -> None:
    cfg = load_config(write_config(
        tmp_path / "station.yaml", REPO / "recipes" / "demo",
        cameras=[{"name": "line-cam", "source": {
            "kind": "genicam", "cti": str(CTI), "serial_number": "1",
            "features": {"PixelFormat": "Mono8", "Width": 512, "Height": 512}}}],
        console=False,
    ))
    service = Service(cfg)
    service.start()
    try:
        stats = service.pipeline.stats
        deadline = time.monotonic() + 60
        while stats.get("results") < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        service.stop()
    lines = [json.loads(s) for s in (tmp_path / "state" / "results.jsonl").read_text()
             .splitlines()]
    assert len(lines) >= 5
    assert {r["camera"] for r in lines} == {"line-cam"}
    ids = [r["frame_id"] for r in lines]
    assert ids == sorted(ids)
    # a live camera is never paced: drops are counted, never silent
    c = stats.counters
    assert c["frames_in"] == c["results"] + c.get("dropped_queue", 0) + c.get(
        "dropped_shutdown", 0)
    assert all(r["code"] != 65535 for r in lines), "viky frames could not be inspected"
