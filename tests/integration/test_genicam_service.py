"""The whole service on a GenICam camera: viky.cti frames through the pipeline to results."""

from __future__ import annotations

import json
import time
from pathlib import Path

import genicam
import pytest

from inspector.config.station import load_config
from inspector.runtime.service import Service
from tests.helpers.files import REPO, write_config

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


def test_camera_cli_lists_devices_and_nodes() -> None:
    import subprocess
    import sys

    cli = [sys.executable, "-m", "inspector.cli.main"]
    res = subprocess.run([*cli, "cameras", "--cti", str(CTI)], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr
    rows = [r for r in res.stdout.splitlines() if r.startswith("| ") and "viky.cti" in r]
    assert len(rows) == 3 and all("| Viky |" in r for r in rows)
    res = subprocess.run([*cli, "camera-info", "1", "--cti", str(CTI)], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert "| Width | " in res.stdout and "[100, 800]" in res.stdout
    assert "RGBa8, Mono8" in res.stdout
    res = subprocess.run([*cli, "camera-info", "7", "--cti", str(CTI)], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert res.returncode == 2 and "serial='1'" in res.stderr  # lists what is there


def test_demo_on_the_simulated_camera(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "inspector.cli.main", "demo", "--camera", "genicam",
                          "--parts", "4", "--out", str(tmp_path), "--broker", "none"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr
    results = [json.loads(s) for s in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(results) >= 4 and {r["camera"] for r in results} == {"cam0"}
    assert "| parts inspected" in res.stdout
