"""Scale: mm per pixel from a target of known size lying in the part plane.

Truth: the plane is 120 mm from a camera with fx = fy = 700 px, so the calibrated
frame has 120 / 700 = 0.171429 mm per pixel. Tolerances: through the camera's
intrinsics the scale is within 0.05 % and within 4 sigma of its stated uncertainty,
which is below 0.05 %; a printed-target tolerance widens the uncertainty by its share.
Without intrinsics (barrel distortion left in) the scale is off by more than 1 % and
the fit residual says so (> 1 px); a target tilted by 8 degrees shows as anisotropy.
"""

from __future__ import annotations

import pytest

from inspector.calibration.scale import measure_scale
from inspector.calibration.store import Intrinsics
from tests.helpers.calibration_scenes import (
    BOARD,
    DIST,
    PLANE_MM,
    SCALE_TARGET,
    K,
    scale_images,
    write,
)

TRUE_MM_PER_PX = PLANE_MM / K[0, 0]


@pytest.fixture(scope="module")
def true_lens() -> Intrinsics:
    return Intrinsics(date="2024-01-01T00:00:00+00:00", target=BOARD, images=[],
                      camera_matrix=K.tolist(), dist_coeffs=DIST.tolist(), rms_px=0.0,
                      max_view_rms_px=0.0)


def test_scale_in_the_part_plane(tmp_path, true_lens) -> None:
    res = measure_scale(write(tmp_path, scale_images()), SCALE_TARGET, true_lens)
    s = res.info
    err = s.mm_per_px - TRUE_MM_PER_PX
    assert abs(err) / TRUE_MM_PER_PX < 0.0005
    assert 0 < s.uncertainty_mm_per_px / s.mm_per_px < 0.0005
    assert abs(err) < 4 * s.uncertainty_mm_per_px
    assert s.undistorted and s.corners == 2 * SCALE_TARGET.corner_count
    assert abs(s.anisotropy) < 0.001 and s.fit_rms_px < 0.2


def test_target_tolerance_widens_the_uncertainty(tmp_path, true_lens) -> None:
    paths = write(tmp_path, scale_images())
    tight = measure_scale(paths, SCALE_TARGET, true_lens).info
    loose = measure_scale(paths, SCALE_TARGET, true_lens, square_mm_uncertainty=0.004).info
    assert loose.mm_per_px == pytest.approx(tight.mm_per_px)
    assert loose.uncertainty_mm_per_px / loose.mm_per_px >= 0.001  # 0.004 / 4 mm
    assert loose.uncertainty_mm_per_px > 5 * tight.uncertainty_mm_per_px


def test_without_intrinsics_the_scale_is_off_and_the_fit_says_so(tmp_path) -> None:
    s = measure_scale(write(tmp_path, scale_images()), SCALE_TARGET, None).info
    assert not s.undistorted
    assert abs(s.mm_per_px / TRUE_MM_PER_PX - 1) > 0.01
    assert s.fit_rms_px > 1.0


def test_tilted_target_shows_as_anisotropy(tmp_path, true_lens) -> None:
    s = measure_scale(write(tmp_path, scale_images(tilt_y_deg=8.0)), SCALE_TARGET,
                      true_lens).info
    assert s.anisotropy < -0.005
    assert s.fit_rms_px > 1.0
