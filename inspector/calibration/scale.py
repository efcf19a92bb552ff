"""`inspector calibrate scale`: millimetres per pixel, and how well it is known.

The target (checkerboard or ChArUco of known square size) lies where the parts lie, in
the part plane. In each image its corners are found, moved into the calibrated frame
through the camera's intrinsics when the file has them, and an affine map from board
millimetres to pixels is fitted by least squares. Its determinant gives the area scale,
so mm_per_px = 1 / sqrt(|det A|) is the figure that turns pixel areas into mm² (and
lengths into mm for a square-pixel, untilted view; `anisotropy`, x scale / y scale - 1,
says how far from that the view is).

Uncertainty (1 sigma) adds in quadrature: the fit's own (corner residuals propagated
through det A), the scatter between images (target moved, tilted), and the printed
target's tolerance when given (`square_mm_uncertainty`, a systematic share).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.calibration.inputs import CalibrationError, read_frames
from inspector.calibration.lens import undistort_pixels
from inspector.calibration.store import Intrinsics, ScaleInfo, now_iso
from inspector.calibration.targets import Corners, TargetSpec, find_corners

MIN_CORNERS = 8


@dataclass
class AffineFit:
    """One image's board-to-pixel affine fit and the scale it implies (see fit_affine)."""

    mm_per_px: float
    sigma: float  # 1 sigma of mm_per_px from the corner residuals
    anisotropy: float
    rms_px: float
    n: int


def fit_affine(board_mm: np.ndarray, px: np.ndarray) -> AffineFit:
    """Least-squares px = [X, Y, 1] @ M and the scale it implies, with its uncertainty."""
    n = len(px)
    X = np.column_stack([board_mm[:, 0], board_mm[:, 1], np.ones(n)])
    M, *_ = np.linalg.lstsq(X, px, rcond=None)
    res = px - X @ M
    dof = max(2 * n - 6, 1)
    s2 = float((res ** 2).sum() / dof)
    C = s2 * np.linalg.inv(X.T @ X)
    a11, a21 = M[0, 0], M[0, 1]  # pixel step (u, v) per mm along board x
    a12, a22 = M[1, 0], M[1, 1]  # pixel step (u, v) per mm along board y
    det = abs(a11 * a22 - a12 * a21)
    gu = np.array([a22, -a21, 0.0])  # d det / d (M[0,0], M[1,0], M[2,0])
    gv = np.array([-a12, a11, 0.0])  # d det / d (M[0,1], M[1,1], M[2,1])
    var_det = float(gu @ C @ gu + gv @ C @ gv)
    m = det ** -0.5
    sx, sy = np.hypot(a11, a21), np.hypot(a12, a22)
    return AffineFit(m, 0.5 * m * np.sqrt(var_det) / det, float(sx / sy - 1),
                     float(np.sqrt((res ** 2).sum(axis=1).mean())), n)


@dataclass
class ScaleResult:
    """What measure_scale found: the section for the file, plus per-image fits and corners."""

    info: ScaleInfo
    image_size: tuple[int, int]
    fits: list[AffineFit]
    corners: list[Corners]  # in raw pixels, for the picture


def measure_scale(
    paths: Sequence[Path],
    spec: TargetSpec,
    intrinsics: Intrinsics | None = None,
    expect_size: tuple[int, int] | None = None,
    square_mm_uncertainty: float = 0.0,
    progress: bool = False,
) -> ScaleResult:
    """mm per pixel of the calibrated frame from images of `spec` in the part plane."""
    paths = [Path(p) for p in paths]
    frames = read_frames(paths, expect_size, "scale target images", progress)
    h, w = frames[0].shape
    fits, found = [], []
    for path, image in zip(paths, frames, strict=True):
        got = find_corners(image, spec)
        if isinstance(got, str):
            raise CalibrationError(f"{path}: {got}")
        if len(got.image_points) < MIN_CORNERS:
            raise CalibrationError(f"{path}: only {len(got.image_points)} corners found, at "
                                   f"least {MIN_CORNERS} needed")
        px = got.image_points
        if intrinsics is not None:
            try:
                px = undistort_pixels(px, intrinsics.K, intrinsics.dist)
            except ValueError as exc:
                raise CalibrationError(f"{path}: {exc}") from exc
        fits.append(fit_affine(got.board_points[:, :2], px))
        found.append(got)
    m = np.array([f.mm_per_px for f in fits])
    s = np.array([f.sigma for f in fits])
    weights = 1.0 / np.maximum(s, 1e-12) ** 2
    mean = float((weights * m).sum() / weights.sum())
    var = 1.0 / float(weights.sum())
    if len(m) >= 2:
        var += float(np.var(m, ddof=1)) / len(m)
    var += (mean * square_mm_uncertainty / spec.square_mm) ** 2
    info = ScaleInfo(
        date=now_iso(),
        target=spec,
        images=[p.name for p in paths],
        mm_per_px=mean,
        uncertainty_mm_per_px=float(np.sqrt(var)),
        anisotropy=float(np.mean([f.anisotropy for f in fits])),
        fit_rms_px=float(np.sqrt(np.mean([f.rms_px ** 2 for f in fits]))),
        corners=int(sum(f.n for f in fits)),
        undistorted=intrinsics is not None,
    )
    return ScaleResult(info, (w, h), fits, found)
