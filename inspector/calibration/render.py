"""Render images through a known camera model: targets, flat frames and test plates.

Used by the tests (recover known intrinsics, vignetting and scale) and the examples.
The model is OpenCV's: pinhole camera matrix K, Brown-Conrady distortion (k1, k2, p1,
p2, k3), pixel centres at integer coordinates. For every raw pixel the renderer inverts
the distortion (`lens.undistort_normalised`, checked by projecting back), follows
the ray to the board plane and samples the board's texture there; then it applies
vignetting (relative illumination falling off towards the image corners), per-pixel
gain and dark offset (PRNU, DSNU), temporal noise, and quantises.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from inspector.calibration.lens import distort, to_normalised, undistort_normalised
from inspector.calibration.targets import TargetSpec

__all__ = ["CameraModel", "board_fits", "calibration_poses", "distort", "expose", "look_at_pose",
           "pixel_rays", "plane_coordinates", "project", "render_flat", "render_target",
           "sample_plane", "target_texture"]


@dataclass(frozen=True)
class CameraModel:
    """A camera with known optics and sensor, for rendering."""

    width: int
    height: int
    K: np.ndarray  # 3x3 camera matrix
    dist: np.ndarray = field(default_factory=lambda: np.zeros(5))  # k1 k2 p1 p2 k3
    vignetting: float = 0.0  # relative loss of light at the image corners (0.3: 30 %)
    dark_level: float = 0.0  # mean dark offset, grey levels
    dsnu: float = 0.0  # per-pixel dark offset spread (std), grey levels
    prnu: float = 0.0  # per-pixel gain spread (relative std)
    noise: float = 0.0  # temporal noise (std), grey levels
    seed: int = 0  # fixes the per-pixel patterns (PRNU, DSNU)

    def illumination(self) -> np.ndarray:
        """Relative illumination (H, W): 1 at the optical centre, 1 - vignetting at the
        farthest image corner (a smooth r^2 + r^4 fall-off, as of cos^4 and the lens)."""
        ys, xs = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        cx, cy = self.K[0, 2], self.K[1, 2]
        r2 = (xs - cx) ** 2 + (ys - cy) ** 2
        corners = [(0, 0), (self.width - 1, 0), (0, self.height - 1),
                   (self.width - 1, self.height - 1)]
        rmax2 = max((x - cx) ** 2 + (y - cy) ** 2 for x, y in corners)
        t = r2 / rmax2
        shape = 0.7 * t + 0.3 * t * t  # 1 at the farthest corner
        return 1.0 - self.vignetting * shape

    def sensor(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel gain (PRNU) and dark offset (DSNU) maps, fixed by `seed`."""
        rng = np.random.default_rng(self.seed)
        gain = 1.0 + self.prnu * rng.standard_normal((self.height, self.width))
        dark = self.dark_level + self.dsnu * rng.standard_normal((self.height, self.width))
        return gain, dark


def pixel_rays(cam: CameraModel) -> np.ndarray:
    """Normalised undistorted coordinates (H, W, 2) of every raw pixel centre."""
    ys, xs = np.mgrid[0:cam.height, 0:cam.width].astype(np.float64)
    px = np.stack([xs.ravel(), ys.ravel()], axis=1)
    xy = undistort_normalised(to_normalised(px, cam.K), cam.dist)
    return xy.reshape(cam.height, cam.width, 2)


def plane_coordinates(cam: CameraModel, rvec, tvec, rays: np.ndarray | None = None
                      ) -> np.ndarray:
    """Where each raw pixel's ray meets the plane z = 0 of a board at pose (rvec, tvec):
    (H, W, 2) board coordinates in mm (NaN where the plane is behind the camera)."""
    rays = pixel_rays(cam) if rays is None else rays
    R, _ = cv2.Rodrigues(np.asarray(rvec, np.float64).reshape(3, 1))
    H = np.column_stack([R[:, 0], R[:, 1], np.asarray(tvec, np.float64).reshape(3)])
    Hinv = np.linalg.inv(H)
    pts = np.concatenate([rays, np.ones(rays.shape[:2] + (1,))], axis=2) @ Hinv.T
    w = pts[..., 2:3]
    out = pts[..., :2] / w
    out[(w[..., 0] <= 0)] = np.nan
    return out


def target_texture(spec: TargetSpec, px_per_square: int = 24, margin_squares: float = 1.0
                   ) -> tuple[np.ndarray, float, float]:
    """The printed target as a float32 image in [0, 1], its mm per texel and the texel
    edge position of the board origin (the outer corner of the first square)."""
    sx, sy = spec.squares
    margin = int(round(margin_squares * px_per_square))
    if spec.kind == "checkerboard":
        cells = (np.indices((sy, sx)).sum(axis=0) % 2 == 1).astype(np.float32)
        board = np.kron(cells, np.ones((px_per_square, px_per_square), np.float32))
        board = cv2.copyMakeBorder(board, margin, margin, margin, margin,
                                   cv2.BORDER_CONSTANT, value=1.0)
    else:
        size = (sx * px_per_square + 2 * margin, sy * px_per_square + 2 * margin)
        board = spec.charuco_board().generateImage(size, marginSize=margin).astype(np.float32)
        board /= 255.0
    return board, spec.square_mm / px_per_square, float(margin)


def sample_plane(texture: np.ndarray, mm_per_texel: float, origin_texel: float,
                 plane_mm: np.ndarray, background: float = 0.5) -> np.ndarray:
    """Texture value (bilinear, blurred to about one texel) at plane points (H, W, 2) mm."""
    tex = cv2.GaussianBlur(texture, (0, 0), 0.7)
    # texel k spans [k, k+1) in edge coordinates; remap samples at centre coordinates
    mx = (plane_mm[..., 0] / mm_per_texel + origin_texel - 0.5).astype(np.float32)
    my = (plane_mm[..., 1] / mm_per_texel + origin_texel - 0.5).astype(np.float32)
    bad = ~np.isfinite(mx) | ~np.isfinite(my)
    mx[bad] = -1e6
    my[bad] = -1e6
    return cv2.remap(tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=float(background))


def expose(cam: CameraModel, radiance: np.ndarray, level: float = 200.0,
           rng: np.random.Generator | None = None, dtype=np.uint8) -> np.ndarray:
    """Scene radiance (0..1) -> raw frame: vignetting, PRNU, dark offset, noise, quantise."""
    rng = rng or np.random.default_rng(0)
    gain, dark = cam.sensor()
    signal = radiance * level * cam.illumination() * gain + dark
    if cam.noise > 0:
        signal = signal + cam.noise * rng.standard_normal(signal.shape)
    top = np.iinfo(dtype).max
    return np.clip(np.rint(signal), 0, top).astype(dtype)


def render_target(cam: CameraModel, spec: TargetSpec, rvec, tvec, level: float = 200.0,
                  rng: np.random.Generator | None = None, rays: np.ndarray | None = None
                  ) -> np.ndarray:
    """A raw frame of the target at pose (rvec, tvec) (board frame in mm, camera looks
    along +z), exposed with the camera's vignetting and sensor."""
    texture, mm_per_texel, origin = target_texture(spec)
    plane = plane_coordinates(cam, rvec, tvec, rays)
    radiance = 0.08 + 0.92 * sample_plane(texture, mm_per_texel, origin, plane, background=0.6)
    return expose(cam, radiance, level, rng)


def render_flat(cam: CameraModel, level: float, rng: np.random.Generator | None = None,
                dtype=np.uint8) -> np.ndarray:
    """A frame of a uniformly lit white target (level > 0) or with the lens capped (0)."""
    return expose(cam, np.ones((cam.height, cam.width)), level, rng, dtype)


def project(cam: CameraModel, board_mm: np.ndarray, rvec, tvec) -> np.ndarray:
    """Raw pixel positions (N, 2) of board points (N, 3) mm: cv2.projectPoints."""
    pts, _ = cv2.projectPoints(np.asarray(board_mm, np.float64).reshape(-1, 1, 3),
                               np.asarray(rvec, np.float64), np.asarray(tvec, np.float64),
                               cam.K, np.asarray(cam.dist, np.float64))
    return pts.reshape(-1, 2)


def look_at_pose(target_centre_mm: tuple[float, float], distance_mm: float,
                 tilt_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 offset_mm: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """Pose (rvec, tvec) of a board tilted by (about x, about y, about z) degrees whose
    point `target_centre_mm` sits `distance_mm` in front of the camera, shifted by
    `offset_mm` across the view."""
    ax, ay, az = np.deg2rad(tilt_deg)
    Rx, _ = cv2.Rodrigues(np.array([ax, 0.0, 0.0]))
    Ry, _ = cv2.Rodrigues(np.array([0.0, ay, 0.0]))
    Rz, _ = cv2.Rodrigues(np.array([0.0, 0.0, az]))
    R = Rz @ Ry @ Rx
    c = np.array([target_centre_mm[0], target_centre_mm[1], 0.0])
    t = np.array([offset_mm[0], offset_mm[1], distance_mm]) - R @ c
    rvec, _ = cv2.Rodrigues(R)
    return rvec.reshape(3), t


def board_fits(cam: CameraModel, spec: TargetSpec, rvec, tvec, margin_px: float = 4.0) -> bool:
    """True if the whole printed board (outer corners) projects inside the image."""
    sx, sy = spec.squares
    s = spec.square_mm
    outer = np.array([[0, 0, 0], [sx * s, 0, 0], [0, sy * s, 0], [sx * s, sy * s, 0]], float)
    R, _ = cv2.Rodrigues(np.asarray(rvec, np.float64).reshape(3, 1))
    if np.any((outer @ R.T + np.asarray(tvec).reshape(3))[:, 2] <= 0):
        return False
    p = project(cam, outer, rvec, tvec)
    return bool(np.all(p >= margin_px) and np.all(p[:, 0] <= cam.width - 1 - margin_px)
                and np.all(p[:, 1] <= cam.height - 1 - margin_px))


def calibration_poses(cam: CameraModel, spec: TargetSpec, n: int, rng: np.random.Generator,
                      max_tilt_deg: float = 35.0, fill: tuple[float, float] = (0.45, 0.8),
                      whole: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """`n` varied board poses as a person would take them: tilted up to `max_tilt_deg`,
    board spanning `fill` of the image width, placed at random across the view (the
    whole board in view when `whole`; a ChArUco board may be cut by the border)."""
    sx, sy = spec.squares
    centre = (sx * spec.square_mm / 2, sy * spec.square_mm / 2)
    f = cam.K[0, 0]
    poses: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in range(200 * n):
        if len(poses) == n:
            break
        width_px = rng.uniform(*fill) * cam.width
        z = f * sx * spec.square_mm / width_px
        tilt = tuple(rng.uniform(-max_tilt_deg, max_tilt_deg, 2)) + (rng.uniform(-25, 25),)
        u, v = rng.uniform(0.1, 0.9) * cam.width, rng.uniform(0.1, 0.9) * cam.height
        off = ((u - cam.K[0, 2]) / f * z, (v - cam.K[1, 2]) / f * z)
        rvec, tvec = look_at_pose(centre, z, tilt, off)
        if not whole or board_fits(cam, spec, rvec, tvec):
            poses.append((rvec, tvec))
    if len(poses) < n:
        raise ValueError(f"found only {len(poses)} of {n} board poses that fit the image")
    return poses
