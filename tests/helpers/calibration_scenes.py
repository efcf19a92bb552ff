"""A synthetic camera with known optics and the images the calibration tests use.

The camera (640 x 480) has barrel distortion, 35 % vignetting at the corners, 1 % PRNU,
a dark offset with DSNU and temporal noise. Images are rendered once per test session
(cached) through inspector.calibration.render; `write` puts them into a test's folder.
The part plane lies PLANE_MM in front of the camera, square to its axis.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np

from inspector.calibration.render import (
    CameraModel,
    calibration_poses,
    expose,
    look_at_pose,
    pixel_rays,
    plane_coordinates,
    render_flat,
    render_target,
)
from inspector.calibration.targets import TargetSpec

K = np.array([[700.0, 0.0, 322.0], [0.0, 700.0, 236.0], [0.0, 0.0, 1.0]])
DIST = np.array([-0.28, 0.10, 0.0008, -0.0005, 0.0])
CAMERA = CameraModel(640, 480, K, DIST, vignetting=0.35, dark_level=6.0, dsnu=0.8, prnu=0.01,
                     noise=1.0, seed=7)
BOARD = TargetSpec(squares=(12, 9), square_mm=10.0)  # intrinsics target
SCALE_TARGET = TargetSpec(squares=(22, 16), square_mm=4.0)  # lies in the part plane
PLANE_MM = 120.0
LEVEL = 200.0  # exposure: grey level of a white surface at the optical centre


@cache
def rays(camera: CameraModel = CAMERA) -> np.ndarray:
    return pixel_rays(camera)


@cache
def views(n: int = 12, seed: int = 3) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    poses = calibration_poses(CAMERA, BOARD, n, rng)
    return tuple(render_target(CAMERA, BOARD, rv, tv, LEVEL, rng, rays()) for rv, tv in poses)


@cache
def flats(n: int = 4, seed: int = 5) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """(dark frames, white frames), each with its own temporal noise."""
    rng = np.random.default_rng(seed)
    darks = tuple(render_flat(CAMERA, 0.0, rng) for _ in range(n))
    whites = tuple(render_flat(CAMERA, LEVEL, rng) for _ in range(n))
    return darks, whites


@cache
def scale_images(seed: int = 9, tilt_y_deg: float = 0.0) -> tuple[np.ndarray, ...]:
    """The scale target in the part plane, twice (moved and turned a little), filling
    most of the view; `tilt_y_deg` tilts it (a badly laid target)."""
    rng = np.random.default_rng(seed)
    sx, sy = SCALE_TARGET.squares
    centre = (sx * SCALE_TARGET.square_mm / 2, sy * SCALE_TARGET.square_mm / 2)
    out = []
    for k in range(2):
        rv, tv = look_at_pose(centre, PLANE_MM, (0.0, tilt_y_deg, 3.0 * k), (2.0 * k, -1.5 * k))
        out.append(render_target(CAMERA, SCALE_TARGET, rv, tv, LEVEL, rng, rays()))
    return tuple(out)


# Defects on a plate in the part plane: (x, y) of the centre relative to the optical
# axis, and radius, in mm. Those near the corners are where the lens shrinks most.
DISKS = ((0.0, 0.0, 2.5), (-40.0, -27.0, 3.0), (40.0, 27.0, 2.0), (-40.0, 27.0, 2.5),
         (40.0, -27.0, 3.0), (0.0, 28.0, 2.0), (-46.0, 0.0, 2.5))


def plate(seed: int = 0) -> np.ndarray:
    """A raw frame of a light plate with dark round pits (DISKS), exposed by CAMERA."""
    rv, tv = look_at_pose((0.0, 0.0), PLANE_MM)
    xy = plane_coordinates(CAMERA, rv, tv, rays())
    footprint = PLANE_MM / K[0, 0]  # mm per pixel near the centre: the edge's softness
    radiance = np.full(xy.shape[:2], 0.8)
    for cx, cy, r in DISKS:
        d = np.hypot(xy[..., 0] - cx, xy[..., 1] - cy)
        cover = np.clip(0.5 + (r - d) / footprint, 0.0, 1.0)  # anti-aliased edge
        radiance -= 0.6 * cover
    return expose(CAMERA, radiance, LEVEL, np.random.default_rng(seed))


def disk_centres_raw() -> np.ndarray:
    """Where the pits' centres land in the raw (distorted) frame, px."""
    from inspector.calibration.render import project

    rv, tv = look_at_pose((0.0, 0.0), PLANE_MM)
    pts = np.array([[x, y, 0.0] for x, y, _ in DISKS])
    return project(CAMERA, pts, rv, tv)


def write(folder: Path, images, prefix: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, image in enumerate(images):
        p = folder / f"{prefix}{k:02d}.png"
        cv2.imwrite(str(p), image)
        paths.append(p)
    return paths
