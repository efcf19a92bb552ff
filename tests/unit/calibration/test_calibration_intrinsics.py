"""Intrinsics recovered from views rendered through a camera with known optics.

Camera (tests/helpers/calibration_scenes.py): 640 x 480, fx = fy = 700, (cx, cy) = (322, 236),
k1 -0.28, k2 0.10, p1 0.0008, p2 -0.0005, with vignetting, PRNU, dark offset and noise.
Tolerances, 12 checkerboard views: fx, fy within 0.15 %; cx, cy within 1 px; k1 within
0.005, k2 within 0.02, p1, p2 within 3e-4; reprojection rms below 0.1 px; and the
undistorted geometry within 0.3 px of the true pinhole image everywhere in the frame
(up to the scale and shift that the scale calibration takes up). ChArUco (8 x 6 squares of
15 mm), 8 views with the board partly outside the image: fx, fy within 0.3 %, rms below
0.15 px.
"""

from __future__ import annotations

import numpy as np
import pytest

from inspector.calibration.intrinsics import calibrate_intrinsics
from inspector.calibration.lens import to_normalised, to_pixels, undistort_normalised
from inspector.calibration.render import calibration_poses, render_target
from inspector.calibration.targets import TargetSpec, find_corners
from tests.helpers.calibration_scenes import BOARD, CAMERA, DIST, LEVEL, K, rays, views, write


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    paths = write(tmp_path_factory.mktemp("views"), views())
    return calibrate_intrinsics(paths, BOARD)


def test_checkerboard_recovers_camera_matrix_and_distortion(fitted) -> None:
    i = fitted.intrinsics
    Ke, de = i.K, i.dist
    assert len(fitted.views) == 12 and not fitted.skipped
    assert abs(Ke[0, 0] / K[0, 0] - 1) < 0.0015
    assert abs(Ke[1, 1] / K[1, 1] - 1) < 0.0015
    assert abs(Ke[0, 2] - K[0, 2]) < 1.0 and abs(Ke[1, 2] - K[1, 2]) < 1.0
    assert abs(de[0] - DIST[0]) < 0.005 and abs(de[1] - DIST[1]) < 0.02
    assert abs(de[2] - DIST[2]) < 3e-4 and abs(de[3] - DIST[3]) < 3e-4
    assert i.rms_px < 0.1 and i.max_view_rms_px < 0.2
    assert i.corners == 12 * BOARD.corner_count and 0.5 < i.coverage <= 1.0
    # the uncertainties OpenCV reports are of the size of the errors actually made
    assert abs(Ke[0, 0] - K[0, 0]) < 5 * i.std["fx"] + 0.2


def test_undistorted_geometry_matches_the_pinhole_image(fitted) -> None:
    i = fitted.intrinsics
    ys, xs = np.mgrid[0:480:8, 0:640:8]
    raw = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
    true = to_pixels(undistort_normalised(to_normalised(raw, K), DIST), K)
    est = to_pixels(undistort_normalised(to_normalised(raw, i.K), i.dist), i.K)
    # est = s * true + t up to residuals: the scale calibration absorbs s and t
    A = np.column_stack([true.ravel(), np.tile([1.0, 0.0], len(true)),
                         np.tile([0.0, 1.0], len(true))])
    coef, *_ = np.linalg.lstsq(A, est.ravel(), rcond=None)
    resid = np.abs(est.ravel() - A @ coef).reshape(-1, 2)
    assert np.hypot(resid[:, 0], resid[:, 1]).max() < 0.3
    # and without any correction the raw image is far from it: the test can fail
    raw_dev = np.hypot(*(raw - true).T).max()
    assert raw_dev > 20


def test_charuco_board_partly_outside_the_view(tmp_path) -> None:
    spec = TargetSpec(kind="charuco", squares=(8, 6), square_mm=15.0, marker_mm=11.0,
                      dictionary="DICT_4X4_50")
    rng = np.random.default_rng(11)
    poses = calibration_poses(CAMERA, spec, 8, rng, fill=(0.6, 0.95), whole=False)
    images = [render_target(CAMERA, spec, rv, tv, LEVEL, rng, rays()) for rv, tv in poses]
    counts = [len(c.ids) for c in map(lambda im: find_corners(im, spec), images)
              if not isinstance(c, str)]
    assert min(counts) < spec.corner_count  # some views really are partial
    res = calibrate_intrinsics(write(tmp_path, images), spec, skip_unusable=True)
    Ke = res.intrinsics.K
    assert len(res.views) >= 6
    assert abs(Ke[0, 0] / K[0, 0] - 1) < 0.003 and abs(Ke[1, 1] / K[1, 1] - 1) < 0.003
    assert res.intrinsics.rms_px < 0.15
