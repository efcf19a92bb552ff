"""The `inspector` command end to end, as a person or systemd would call it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema

from inspector.decision.results import schema
from tests.helpers.files import REPO, write_config

CLI = [sys.executable, "-m", "inspector.cli.main"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def test_validate_good_files() -> None:
    res = run("validate", "station.example.yaml", "recipes/demo")
    assert res.returncode == 0, res.stderr
    assert "station.example.yaml: valid config" in res.stdout
    assert "recipes/demo: valid recipe" in res.stdout


def test_validate_reports_every_error_and_fails(tmp_path: Path, recipe_dir: Path) -> None:
    bad = tmp_path / "station.yaml"
    bad.write_text(
        "station: {site: a, line: b, station: c, extra: 1}\n"
        "cameras:\n"
        "  - name: cam0\n"
        "    source: {kind: synthetic, width: 10}\n"
        f"recipe: {recipe_dir}\n"
    )
    res = run("validate", str(bad), str(recipe_dir))
    assert res.returncode == 1
    assert f"{bad}: invalid config, 2 error(s):" in res.stderr
    assert f"{bad}:1: station.extra: unknown key" in res.stderr
    assert f"{bad}:4: cameras[0].source.width: Input should be greater than or equal to 64" \
        in res.stderr
    assert f"{recipe_dir}: valid recipe" in res.stdout


def test_validate_missing_file() -> None:
    res = run("validate", "no/such/station.yaml")
    assert res.returncode == 1 and "file not found" in res.stderr


def test_run_stops_on_sigterm_without_losing_results(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "station.yaml", REPO / "recipes" / "demo",
        cameras=[{"name": "cam0", "source": {"kind": "synthetic", "seed": 3, "rate_hz": 10,
                                               "width": 256, "height": 256}}],
        console=False,
    )
    proc = subprocess.Popen([*CLI, "run", "--config", str(cfg)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    results = tmp_path / "state" / "results.jsonl"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if results.exists() and len(results.read_text().splitlines()) >= 5:
            break
        time.sleep(0.2)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 5.0, err
    assert proc.returncode == 0, err
    lines = [json.loads(s) for s in results.read_text().splitlines()]
    assert len(lines) >= 5
    validator = jsonschema.Draft202012Validator(schema("result"))
    for r in lines:
        validator.validate(r)
    stopped = next(s for s in out.splitlines() if " msg=stopped " in s)  # key=value log
    counts = dict(kv.split("=", 1) for kv in stopped.split(" msg=stopped ")[1].split())
    assert int(counts["results"]) == len(lines)
    assert int(counts["frames_in"]) == (int(counts["results"]) + int(counts["dropped_queue"])
                                        + int(counts["dropped_shutdown"]))


def test_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = run("demo", "--parts", "12", "--out", str(out), "--seed", "5", timeout=300)
    assert res.returncode == 0, res.stderr
    assert "parts 12/12" in res.stderr  # the live progress line reached the end
    assert "| parts inspected" in res.stdout and "| 12 |" in res.stdout
    results = [json.loads(s) for s in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 12
    ng = [r for r in results if r["verdict"] == "NG"]
    assert ng, "the demo's synthetic defects were not found"
    overlays = sorted((out / "overlays").rglob("*.png"))  # archive: overlays/<day>/
    assert len(overlays) == len(ng)
    assert all(r["image_uri"].startswith("file://") for r in ng)
