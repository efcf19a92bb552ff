"""`inspector calibrate intrinsics`: camera matrix and lens distortion from target views.

Corners are found in every view (`targets.find_corners`); a view without a usable
target is an error naming the file (or, with `skip_unusable`, left out and reported),
and at least MIN_VIEWS usable views are needed. OpenCV's calibrateCameraExtended fits
fx, fy, cx, cy and the distortion k1, k2, p1, p2 (k3 too when asked: only wide-angle
lenses need it, and with few views it trades off against k1, k2) and returns the
reprojection error and 1-sigma uncertainties. Coverage (share of a 10x10 grid of the
image that holds corners) tells whether the distortion is known where parts are seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspector.calibration.inputs import CalibrationError, read_frames
from inspector.calibration.store import Intrinsics, now_iso
from inspector.calibration.targets import Corners, TargetSpec, find_corners

MIN_VIEWS = 4
STD_NAMES = ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3")


@dataclass
class IntrinsicsResult:
    """The fitted section plus what the picture and the report show."""

    intrinsics: Intrinsics
    image_size: tuple[int, int]  # w, h
    views: list[Path]
    view_rms_px: list[float]
    corners: list[Corners]
    skipped: list[tuple[Path, str]]


def coverage(corners: list[Corners], size: tuple[int, int], cells: int = 10) -> float:
    """Share of a cells x cells grid over the image that contains at least one corner."""
    w, h = size
    hit = np.zeros((cells, cells), bool)
    for c in corners:
        ix = np.clip((c.image_points[:, 0] / w * cells).astype(int), 0, cells - 1)
        iy = np.clip((c.image_points[:, 1] / h * cells).astype(int), 0, cells - 1)
        hit[iy, ix] = True
    return float(hit.mean())


def calibrate_intrinsics(
    paths: Sequence[Path],
    spec: TargetSpec,
    expect_size: tuple[int, int] | None = None,
    skip_unusable: bool = False,
    k3: bool = False,
    progress: bool = False,
) -> IntrinsicsResult:
    """Fit intrinsics to views of `spec`; raises CalibrationError naming bad files."""
    paths = [Path(p) for p in paths]
    frames = read_frames(paths, expect_size, "calibration views", progress)
    h, w = frames[0].shape
    found: list[tuple[Path, Corners]] = []
    skipped: list[tuple[Path, str]] = []
    for path, image in tqdm(list(zip(paths, frames, strict=True)), desc="finding corners",
                            disable=not progress, leave=False):
        got = find_corners(image, spec)
        if isinstance(got, str):
            skipped.append((path, got))
        else:
            found.append((path, got))
    if skipped and not skip_unusable:
        raise CalibrationError("target not usable in " + "; ".join(
            f"{p}: {why}" for p, why in skipped) + " (remove the file(s), or pass "
            "--skip-unusable to calibrate from the others)")
    if len(found) < MIN_VIEWS:
        detail = "".join(f"\n  {p}: {why}" for p, why in skipped)
        raise CalibrationError(f"only {len(found)} usable view(s) of the {spec.describe()}, "
                               f"at least {MIN_VIEWS} needed{detail}")
    obj = [c.board_points.astype(np.float32).reshape(-1, 1, 3) for _, c in found]
    img = [c.image_points.astype(np.float32).reshape(-1, 1, 2) for _, c in found]
    flags = 0 if k3 else cv2.CALIB_FIX_K3
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)
    rms, K, dist, rvecs, tvecs, std_int, _std_ext, per_view = cv2.calibrateCameraExtended(
        obj, img, (w, h), None, None, flags=flags, criteria=criteria)
    if not np.all(np.isfinite(K)) or not np.all(np.isfinite(dist)):
        raise CalibrationError("calibration did not converge: use more views, tilted "
                               "in different directions, that cover the image")
    dist = dist.reshape(-1)[:5]
    std = {n: float(s) for n, s in zip(STD_NAMES, std_int.reshape(-1)[:9], strict=True)
           if n != "k3" or k3}
    corners = [c for _, c in found]
    section = Intrinsics(
        date=now_iso(),
        target=spec,
        images=[p.name for p, _ in found],
        camera_matrix=[[float(v) for v in row] for row in K],
        dist_coeffs=[float(v) for v in dist],
        rms_px=float(rms),
        max_view_rms_px=float(np.max(per_view)),
        std=std,
        corners=int(sum(len(c.image_points) for c in corners)),
        coverage=coverage(corners, (w, h)),
    )
    return IntrinsicsResult(section, (w, h), [p for p, _ in found],
                            [float(v) for v in per_view.reshape(-1)], corners, skipped)
