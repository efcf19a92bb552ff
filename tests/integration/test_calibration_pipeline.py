"""Calibration in the running pipeline: defect sizes in mm, end to end.

A light plate with seven round pits of known size (2 to 3 mm radius) lies in the part
plane and is seen through the test camera (barrel distortion, 35 % vignetting). The
camera is calibrated with the CLI from rendered views, dark/white frames and a scale
target; a recipe with a deliberately wrong mm_per_px (0.1) and an ROI is inspected by a
plain threshold detector. Tolerance held to: every pit's area_mm2 in the results within
2 % of pi r^2 (measured: 1 % at worst), its position within 3 px of where the calibrated
camera puts it, and the NG reasons name the calibration as the scale's source. Without
the calibration (the recipe given the nominal central scale instead) the worst pit is
more than 8 % off (measured: 16 %): the lens shrinks the pits near the corners and
vignetting moves their edges.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import jsonschema
import numpy as np
import pytest

from inspector.acquisition import build_source
from inspector.calibration.lens import undistort_pixels
from inspector.calibration.store import (
    CameraCalibration,
    ScaleInfo,
    load_calibration,
    save_calibration,
)
from inspector.calibration.targets import TargetSpec
from inspector.cli.main import build_parser
from inspector.config.sources import ReplaySourceConfig
from inspector.config.station import load_config
from inspector.core.frames import FramePool
from inspector.decision.results import ResultBuilder, schema
from inspector.decision.sizes import MAX_LISTED
from inspector.inference.detectors.base import Detection, Detector
from inspector.preprocess.frame import Preprocessor
from inspector.recipes.recipe import load_recipe
from inspector.runtime.pipeline import ERROR_CODE, ActiveRecipe, Pipeline
from inspector.runtime.service import Service
from tests.helpers.calibration_scenes import (
    DISKS,
    PLANE_MM,
    K,
    disk_centres_raw,
    flats,
    plate,
    scale_images,
    views,
    write,
)
from tests.helpers.files import RECIPE, REPO, write_config, write_recipe
from tests.helpers.standins import ListSink


class PitDetector(Detector):
    """Dark blobs: pixels below the level halfway between plate (0.8) and pit (0.2)."""

    kind = "pit-threshold"

    def enroll(self, prompts, normals, progress=False) -> None:
        pass

    def detect(self, image: np.ndarray) -> list[Detection]:
        mask = (image < 0.625 * np.median(image)).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        out = []
        for k in range(1, n):
            x, y, w, h, area = (int(v) for v in stats[k])
            if area >= 20:
                crop = labels[y:y + h, x:x + w] == k
                out.append(Detection("pit", 1.0, (x, y, w, h), crop, float(area)))
        return out


def calibrate(*argv) -> int:
    args = build_parser().parse_args(["calibrate", *[str(a) for a in argv]])
    return int(args.func(args))


@pytest.fixture(scope="module")
def calibration(tmp_path_factory) -> Path:
    """cam0 calibrated with the CLI: intrinsics, flat field, scale."""
    root = tmp_path_factory.mktemp("cal")
    darks, whites = flats()
    common = ["--camera", "cam0", "--serial", "SIM-0001", "--dir", root / "calibration"]
    assert calibrate("intrinsics", *common, "--squares", "12x9", "--square-mm", "10",
                     *write(root / "views", views())) == 0
    assert calibrate("flatfield", *common, "--dark", *write(root / "dark", darks),
                     "--white", *write(root / "white", whites)) == 0
    assert calibrate("scale", *common, "--squares", "22x16", "--square-mm", "4",
                     *write(root / "scale", scale_images())) == 0
    return root / "calibration" / "cam0.yaml"


def inspect(tmp_path: Path, mm_per_px: float, calibration: Path | None) -> list[dict]:
    recipe = json.loads(json.dumps(RECIPE))
    recipe.update(mm_per_px=mm_per_px, roi=[10, 8, 620, 464])
    folder = write_recipe(tmp_path / "recipes" / "plate", recipe)
    frames = write(tmp_path / "frames", [plate(seed) for seed in range(2)], "part")
    src = build_source("cam0", ReplaySourceConfig(kind="replay", path=frames[0].parent,
                                                  loop=False))
    sink = ListSink()
    p = Pipeline([src], ActiveRecipe(load_recipe(folder), PitDetector()), [sink],
                 ResultBuilder("calibration-test"), frame_queue=2, result_queue=4,
                 preprocessors={"cam0": Preprocessor(calibration)})
    src.open(FramePool(8))
    p.start()
    assert p.wait(30)
    p.stop()
    assert len(sink.results) == 2
    validator = jsonschema.Draft202012Validator(schema("result"))
    for r in sink.results:
        validator.validate(r)
    return sink.results


def area_errors(result: dict, centres: np.ndarray) -> list[float]:
    """Relative area error of each pit, matched by position (within 3 px)."""
    found = result["defects"]
    assert len(found) == len(DISKS), [d["bbox"] for d in found]
    errors = []
    for (_, _, r), (cx, cy) in zip(DISKS, centres, strict=True):
        d = min(found, key=lambda d: math.hypot(d["bbox"][0] + (d["bbox"][2] - 1) / 2 - cx,
                                                d["bbox"][1] + (d["bbox"][3] - 1) / 2 - cy))
        x, y, w, h = d["bbox"]
        assert math.hypot(x + (w - 1) / 2 - cx, y + (h - 1) / 2 - cy) < 3.0
        errors.append(d["area_mm2"] / (math.pi * r * r) - 1)
    return errors


def test_defect_areas_in_mm2_through_the_calibration(tmp_path, calibration) -> None:
    cal = load_calibration(calibration)
    results = inspect(tmp_path, 0.1, calibration)  # the recipe's 0.1 mm/px is overridden
    centres = undistort_pixels(disk_centres_raw(), cal.intrinsics.K, cal.intrinsics.dist)
    for r in results:
        errors = area_errors(r, centres)
        assert max(abs(e) for e in errors) < 0.02, errors
        assert r["verdict"] == "NG" and r["code"] == 12
        sizes = r["reasons"][-1]
        assert sizes.startswith(f"sizes at {cal.scale.mm_per_px:.5g} mm/px (calibration "
                                f"{calibration})")
        assert sizes.count(" mm2 ") == MAX_LISTED and sizes.endswith(
            f"+{len(DISKS) - MAX_LISTED} more")


def test_without_calibration_the_sizes_are_off(tmp_path) -> None:
    results = inspect(tmp_path, PLANE_MM / K[0, 0], None)
    errors = area_errors(results[0], disk_centres_raw())
    assert max(abs(e) for e in errors) > 0.08, errors
    assert "(recipe)" in results[0]["reasons"][-1]


def test_roi_is_cut_from_the_corrected_frame(calibration) -> None:
    """The ROI path (only the ROI's part of the raw frame is corrected) gives the same
    pixels as correcting the whole frame and cropping."""
    pre = Preprocessor(calibration)
    raw = plate(5)
    full = pre.display(raw)
    for roi in [(10, 8, 620, 464), (0, 0, 200, 100), (500, 400, 300, 300)]:
        got = pre(raw, roi)
        x, y = got.offset
        h, w = got.image.shape
        assert np.array_equal(got.image, full[y:y + h, x:x + w])
        assert got.mm_per_px == load_calibration(calibration).scale.mm_per_px


def _scale_only(path: Path, size: tuple[int, int], mm_per_px: float) -> Path:
    cal = CameraCalibration(camera="cam0", image_size=size, scale=ScaleInfo(
        date="2024-01-01T00:00:00+00:00", target=TargetSpec(squares=(10, 7), square_mm=5.0),
        images=["s.png"], mm_per_px=mm_per_px, uncertainty_mm_per_px=1e-5, anisotropy=0.0,
        fit_rms_px=0.05, corners=54, undistorted=False))
    return save_calibration(cal, path)


def _run_service(tmp_path: Path, cal: Path) -> list[dict]:
    """The demo recipe (mm_per_px 0.05) on four synthetic parts, each with defects."""
    cams = [{"name": "cam0", "calibration": str(cal), "source": {
        "kind": "synthetic", "seed": 4, "count": 4, "defect_rate": 1.0}}]
    cfg = load_config(write_config(tmp_path / "station.yaml", REPO / "recipes" / "demo",
                                   cameras=cams, console=False))
    service = Service(cfg)
    service.start()
    service.run_until_stopped()
    lines = (cfg.storage.state_dir / "results.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_service_threads_the_calibration_from_the_config(tmp_path) -> None:
    cal = _scale_only(tmp_path / "cal" / "cam0.yaml", (512, 512), 0.04)
    results = _run_service(tmp_path, cal)
    assert len(results) == 4
    defects = [d for r in results for d in r["defects"]]
    assert defects, "the synthetic parts should give the detector something to report"
    for d in defects:  # the calibration's 0.04 mm/px, not the recipe's 0.05
        assert d["area_mm2"] == pytest.approx(d["area_px"] * 0.0016, rel=1e-3, abs=1e-4)
    ng = [r for r in results if r["verdict"] == "NG"]
    assert ng and all(f"mm/px (calibration {cal})" in r["reasons"][-1] for r in ng)


def test_frames_of_another_size_are_rejected_fail_safe(tmp_path) -> None:
    cal = _scale_only(tmp_path / "cal" / "cam0.yaml", (640, 480), 0.04)
    results = _run_service(tmp_path, cal)
    assert len(results) == 4
    for r in results:
        assert r["verdict"] == "NG" and r["code"] == ERROR_CODE
        assert f"calibration {cal} is for 640x480 frames, camera cam0 delivered 512x512" in \
            r["reasons"][0]
