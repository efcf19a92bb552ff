"""The whole service on a GenICam camera: viky.cti frames through the pipeline to results."""

from __future__ import annotations

import json
import time
from pathlib import Path

import genicam
import pytest
import yaml

from inspector.config.station import load_config
from inspector.runtime.service import Service
from tests.helpers.files import REPO, write_config
from tests.helpers.recipe_factory import make_recipe

CTI = Path(genicam.__file__).parent / "viky.cti"
pytestmark = pytest.mark.skipif(not CTI.is_file(), reason=f"simulated producer {CTI} not found")


def _viky_station(tmp_path: Path, recipe: Path):
    """A station with one viky.cti camera at 512 x 512 Mono8 and `recipe` active."""
    return load_config(write_config(
        tmp_path / "station.yaml", recipe,
        cameras=[{"name": "line-cam", "source": {
            "kind": "genicam", "cti": str(CTI), "serial_number": "1",
            "features": {"PixelFormat": "Mono8", "Width": 512, "Height": 512}}}],
        console=False,
    ))


def test_service_inspects_viky_frames(tmp_path: Path) -> None:
    cfg = _viky_station(tmp_path, REPO / "recipes" / "demo")
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


def _recipe(folder: Path, rid: str, features: dict) -> Path:
    make_recipe(folder, rid, size=64, n_normal=4)
    doc = yaml.safe_load((folder / "recipe.yaml").read_text())
    doc["camera_features"] = features
    (folder / "recipe.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return folder


def test_recipe_camera_features_are_applied_on_start_and_switch(tmp_path: Path) -> None:
    """A recipe's camera_features reach the camera at start and at each switch; a switch
    whose features the camera refuses fails, and recipe and camera stay as they were."""
    recipes = tmp_path / "recipes"
    first = _recipe(recipes / "first", "first", {"Width": 320})
    _recipe(recipes / "second", "second", {"Width": 256, "Height": 200})
    _recipe(recipes / "bad", "bad", {"Width": 256, "NoSuchNode": 1})
    cfg = _viky_station(tmp_path, first)
    service = Service(cfg)
    service.start()
    try:
        cam = service.pipeline.sources[0]

        def size() -> tuple[int, int]:
            info = {n["name"]: n["value"] for n in cam.node_info(["Width", "Height"])}
            return info["Width"], info["Height"]

        assert size() == (320, 512)  # the station's Height, the recipe's Width
        assert service.switch_recipe("second")["id"] == "second"
        assert size() == (256, 200)
        with pytest.raises(ValueError, match="camera_features: .*line-cam.*NoSuchNode"):
            service.switch_recipe("bad")
        assert service.pipeline.active.recipe.id == "second" and size() == (256, 200)
        service.switch_recipe("first")  # Height is not the recipe's: back to the station's
        assert size() == (320, 512)
    finally:
        service.stop()


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


def test_trigger_on_a_free_running_genicam_camera_takes_its_next_frame(tmp_path: Path) -> None:
    """viky.cti has no TriggerSoftware node: the handshake takes the camera's next frame
    and gives it the PLC's part id and the request id."""
    cfg = _viky_station(tmp_path, make_recipe(tmp_path / "r", "r", size=512, n_normal=4,
                                              kinds=("scratch",)))
    got: list = []
    service = Service(cfg, on_result=got.append)
    service.start()
    try:
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.trigger_desk.state()["state"] == "READY"
        assert service.trigger("g-1", "PN-G1") == {"camera": "line-cam", "part_id": "PN-G1"}
        t_fire = time.time()
        while not any(f.result.request_id == "g-1" for f in got) and \
                time.monotonic() < deadline + 30:
            time.sleep(0.05)
    finally:
        service.stop()
    (tagged,) = [f.result for f in got if f.result.request_id == "g-1"]
    assert tagged.part_id == "PN-G1" and tagged.ts_capture >= t_fire - 0.01
    earlier = [f.result for f in got if f.result.ts_capture < tagged.ts_capture]
    assert earlier and all(r.part_id != "PN-G1" for r in earlier)
