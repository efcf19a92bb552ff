"""`inspector bench`: a short real run of the whole service, the `distinct` synthetic
source it relies on, the line chart it draws with, and the soak verdict.

The end-to-end test runs the CLI in a subprocess against a real mosquitto (with one
broker restart) and checks figures that would be wrong if a stamp were misplaced: per
result, the stages add up exactly to the latency to the reject gate, every stage is
non-negative, and every accepted result came back out of the broker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.acquisition import build_source
from inspector.acquisition.synthetic_parts import frame_rng, render_part
from inspector.bench.report import GATE_CHAIN, nice_axis, rss_figures, soak_verdict
from inspector.cli.main import build_parser
from inspector.config.sources import SyntheticSourceConfig
from inspector.core.frames import FramePool
from inspector.evaluation.plotting import line_chart
from tests.helpers.mqtt_fixtures import make_result, needs_mosquitto

REPO = Path(__file__).resolve().parents[2]


def test_distinct_source_repeats_parts_with_matching_truth():
    cfg = SyntheticSourceConfig(kind="synthetic", seed=7, width=128, height=96, distinct=3,
                                defect_rate=1.0)
    src = build_source("cam0", cfg)
    src.open(FramePool(2))
    frames = []
    for k in range(7):
        f = src.grab(1.0)
        assert f is not None and f.frame_id == k
        ref, truth = render_part(frame_rng(7, k % 3), 128, 96, cfg.kinds, 1.0, cfg.max_defects)
        assert np.array_equal(f.image, ref)
        assert [(t.kind, t.bbox) for t in f.truth] == [(t.kind, t.bbox) for t in truth]
        assert all(np.array_equal(a.mask, b.mask) for a, b in zip(f.truth, truth, strict=True))
        assert f.image.flags.writeable  # a pool buffer, not the cached part
        frames.append(f.image.copy())
        f.image[:] = 0  # scribbling on a frame must not change the part it shows
        f.done()
    assert np.array_equal(frames[0], frames[3]) and np.array_equal(frames[3], frames[6])
    assert not np.array_equal(frames[0], frames[1])
    with pytest.raises(ValueError, match="distinct"):
        SyntheticSourceConfig(kind="synthetic", distinct=0)


def test_line_chart_places_series_and_markers(tmp_path: Path):
    w, h = 640, 480
    x0, y0, x1, y1 = 60, 40, w - 170, h - 50
    png = line_chart({"diag": ([0, 10], [0, 100]), "high": ([0, 10], [500, 500])},
                     tmp_path / "c.png", "t", x_label="s", y_label="ms", x_range=(0, 10),
                     y_range=(0, 100), vlines=[("restart", [2.0], (214, 39, 40))])
    img = cv2.imread(str(png))
    blue = np.array([180, 119, 31])  # first series colour, BGR
    mid = img[(y0 + y1) // 2 - 2:(y0 + y1) // 2 + 3, (x0 + x1) // 2 - 2:(x0 + x1) // 2 + 3]
    assert (np.abs(mid.astype(int) - blue).sum(axis=2) < 60).any()
    gx = int(x0 + 0.2 * (x1 - x0))
    column = img[y0 + 1:y1, gx].astype(int)
    red = (np.abs(column - [40, 39, 214]).sum(axis=1) < 30).sum()
    assert 0.3 * (y1 - y0) < red < 0.8 * (y1 - y0)  # dashed, over the whole height
    orange = np.array([14, 127, 255])  # the clipped series runs along the top edge
    top = img[y0 - 1:y0 + 2, x0 + 10:x1 - 10].astype(int)
    assert (np.abs(top - orange).sum(axis=2) < 60).mean() > 0.5
    assert nice_axis(743.2) == (800, 5) and nice_axis(27) == (30, 7)
    assert nice_axis(9) == (10, 6) and nice_axis(0) == (1, 6)


def test_rss_growth_and_soak_verdict():
    t = np.arange(0, 101, 1.0)
    flat = np.stack([t, t * 0, 400 + 0 * t, 410 + 0 * t, 0 * t, t], axis=1)
    r = rss_figures(flat, t_warm=30, t_stop=100)
    assert r["growth_pct"] == 0 and r["steady_mb"] == 400 and r["peak_mb"] == 410
    rising = flat.copy()
    rising[:, 2] = 400 + np.maximum(t - 30, 0) * 0.4  # +28 MB after the warm-up: 7 %
    r = rss_figures(rising, t_warm=30, t_stop=100)
    assert r["at_warmup_end_mb"] == 400 and r["growth_pct"] == pytest.approx(7.0)
    ok = {"rss": {"growth_pct": 1.0}, "lost": 0, "outbox_pending": 0}
    assert soak_verdict(ok)["pass"]
    for bad in ({"rss": {"growth_pct": 7.0}}, {"lost": 1}, {"outbox_pending": 3},
                {"rss": {"growth_pct": None}}):
        v = soak_verdict(ok | bad)
        assert not v["pass"] and list(v["checks"].values()).count(False) == 1


def test_collector_joins_pubacks_in_any_order():
    from inspector.bench.measure import COLUMNS, Collector
    from inspector.core.frames import Frame
    from inspector.runtime.pipeline import Finished

    def finished(eid: str, camera: str) -> Finished:
        frame = Frame(np.zeros((2, 2), np.uint8), camera, 0, "p", 0.0, t_arrival=1.0,
                      stamps={"queue": 1.1, "preprocess": 1.2, "infer": 1.5, "decide": 1.6})
        return Finished(frame, make_result("s", 0).model_copy(update={"event_id": eid}), [],
                        None, (0, 0))

    col = Collector(["cam0", "cam1"])
    col.on_ack("plc", "early", 1.7)  # the PUBACK beat on_result
    col.on_result(finished("early", "cam1"))
    col.on_ack("result", "early", 1.8)
    col.on_result(finished("late", "cam0"))
    col.on_ack("plc", "late", 2.0)
    col.on_ack("plc", "late", 9.0)  # a replay's second PUBACK: the first one counts
    col.on_ack("result", "stranger", 3.0)  # not ours: ignored
    m = col.matrix()
    c = {name: i for i, name in enumerate(COLUMNS)}
    assert m.shape == (2, len(COLUMNS)) and col.accepted == {"early", "late"}
    assert m[0, c["camera"]] == 1 and m[0, c["ack_plc"]] == 1.7 and m[0, c["ack_result"]] == 1.8
    assert m[1, c["ack_plc"]] == 2.0 and np.isnan(m[1, c["ack_result"]])
    assert m[0, c["decide"]] == 1.6 and m[0, c["emitted"]] >= m[0, c["decide"]]


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspector.cli.main", "--log-level", "WARNING",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@needs_mosquitto
@pytest.mark.timeout(240)
def test_bench_end_to_end(tmp_path: Path, monkeypatch):
    out = tmp_path / "bench"
    res = _cli("bench", "--cameras", "2", "--size", "256", "--rate", "4", "--seconds", "4",
               "--warmup", "1", "--restart-broker-every", "2.5", "--distinct", "4",
               "--alone-frames", "5", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "| throughput |" in res.stdout and "parts/s" in res.stderr  # table, progress
    report = json.loads((out / "bench.json").read_text())
    f = report["figures"]
    assert f["results_after_warmup"] >= 8 and 0 < f["throughput_per_s"] <= 2 * 4 * 1.3
    assert f["lost"] == 0 and f["received"] == f["accepted"] == f["results"]
    assert f["outbox_pending"] == 0 and f["unacked_after_warmup"] == 0
    assert f["broker_restarts"] >= 1 and f["inspection_errors"] == 0
    assert f["detector_alone_ms"]["n"] == 5 and f["overhead_ratio"] > 0
    assert f["cpu_pct"]["mean"] > 0 and f["rss"]["steady_mb"] > 50
    assert f["rss"]["peak_mb"] >= f["rss"]["steady_mb"]
    lat = f["latency_ms"]
    assert lat["infer"]["p50"] > 0 and lat["total"]["p50"] >= lat["infer"]["p50"]
    assert sum(lat[k]["share_of_gate_pct"] for k in GATE_CHAIN) == pytest.approx(100, abs=1)
    pr = report["per_result"]
    assert set(pr["camera"]) == {0, 1}
    for i in range(len(pr["t_s"])):  # the stages tile the latency to the gate exactly
        parts = [pr[f"{k}_ms"][i] for k in GATE_CHAIN]
        assert all(p is not None and p >= 0 for p in parts), parts
        assert sum(parts) == pytest.approx(pr["to_gate_ms"][i], abs=0.01)
    assert report["machine"]["cores"] >= 1 and report["soak"] is None
    assert len(report["timeline"]["rows"]) >= 4
    md = (out / "bench.md").read_text()
    assert "| infer (detector) |" in md and "Soak" not in md
    png = cv2.imread(str(out / "latency.png"))
    assert png is not None and png.shape == (480, 960, 3)

    # --soak: the exit status follows the verdict (the run itself is the one above)
    import inspector.bench.run as bench_run

    def replay(verdict: dict):
        def fake_run(settings, out_dir, signals=False):
            assert settings.soak
            return report | {"soak": verdict}
        return fake_run

    args = ["bench", "--soak", "--out", str(tmp_path / "unused")]
    for figures, status in ((f, 0), (f | {"lost": 2}, 1)):
        monkeypatch.setattr(bench_run, "run_bench", replay(soak_verdict(figures)))
        ns = build_parser().parse_args(args)
        assert ns.func(ns) == status


def test_bench_rejects_bad_settings():
    res = _cli("bench", "--cameras", "9")
    assert res.returncode == 2 and "cameras 9" in res.stderr
    res = _cli("bench", "--broker", "127.0.0.1:1883", "--restart-broker-every", "5")
    assert res.returncode == 2 and "local broker" in res.stderr


@needs_mosquitto
@pytest.mark.timeout(240)
def test_bench_of_a_station_config_uses_its_cameras_and_calibration(tmp_path: Path):
    """`--config`: the station's own cameras, calibration and recipe; the bench's broker
    and state folder (the station's MQTT section points at a broker that is not there)."""
    import shutil

    import yaml

    recipe = tmp_path / "recipes" / "station-part"  # the station's own recipe
    shutil.copytree(REPO / "recipes" / "demo", recipe)
    text = (recipe / "recipe.yaml").read_text()
    (recipe / "recipe.yaml").write_text(text.replace("id: demo-part", "id: station-part"))
    station = tmp_path / "station.yaml"
    station.write_text(yaml.safe_dump({
        "station": {"site": "plant9", "line": "l1", "station": "s1"},
        "cameras": [{"name": "cam0", "calibration": str(REPO / "calibration/demo-cam0.yaml"),
                     "source": {"kind": "synthetic", "seed": 3, "rate_hz": 4.0,
                                "width": 512, "height": 512, "distinct": 2}}],
        "recipe": str(recipe),
        "storage": {"state_dir": str(tmp_path / "station-state")},
        "mqtt": {"host": "127.0.0.1", "port": 1, "username": "plc"},
    }))
    out = tmp_path / "bench"
    res = _cli("bench", "--config", str(station), "--seconds", "3", "--warmup", "1",
               "--alone-frames", "3", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "bench.json").read_text())
    f = report["figures"]
    assert report["config"]["config"] == str(station)
    assert report["recipe"]["id"] == "station-part"
    assert f["results_after_warmup"] >= 6 and f["lost"] == 0 and f["outbox_pending"] == 0
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    ng = [r for r in results if r["verdict"] == "NG"]
    assert ng and all(any("(calibration " in why for why in r["reasons"]) for r in ng)
    assert "station config station.yaml" in (out / "bench.md").read_text()
    assert not (tmp_path / "station-state").exists()  # the station's state is untouched

    res = _cli("bench", "--config", str(station), "--recipe", str(REPO / "recipes/demo"))
    assert res.returncode == 2 and "--config brings its own" in res.stderr
    station.write_text(station.read_text().replace("rate_hz: 4.0", "rate_hz: fast"))
    res = _cli("bench", "--config", str(station))
    assert res.returncode == 2 and "rate_hz" in res.stderr and "station.yaml:" in res.stderr


@needs_mosquitto
@pytest.mark.timeout(240)
def test_bench_on_the_simulated_genicam_camera(tmp_path: Path):
    import genicam

    if not (Path(genicam.__file__).parent / "viky.cti").is_file():
        pytest.skip("the genicam wheel's simulated producer viky.cti is missing")
    out = tmp_path / "bench"
    res = _cli("bench", "--camera", "genicam", "--rate", "5", "--size", "256", "--seconds",
               "3", "--warmup", "1", "--alone-frames", "3", "--out", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    f = json.loads((out / "bench.json").read_text())["figures"]
    # AcquisitionFrameRate 5 Hz: about 5 parts/s, not the simulator's 200 frames/s
    assert 3.0 <= f["throughput_per_s"] <= 7.0 and f["dropped"]["queue_full"] <= 2, f
    assert f["lost"] == 0 and f["outbox_pending"] == 0
    assert "GenICam camera(s)" in (out / "bench.md").read_text()
