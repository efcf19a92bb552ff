"""PNG pictures of each calibration step, written beside the calibration file.

What a person checks at a glance: where the corners were found and how the lens bends
the image (intrinsics), the gain map with the white frame before and after (flat
field), the corners the scale was measured on (scale); the quality figures are written
on the picture.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.calibration.flatfield import FlatField, FlatFieldResult
from inspector.calibration.intrinsics import IntrinsicsResult
from inspector.calibration.scale import ScaleResult
from inspector.calibration.store import atomic_write

MAX_WIDTH = 1024
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _fit(image: np.ndarray, max_width: int = MAX_WIDTH) -> tuple[np.ndarray, float]:
    f = min(1.0, max_width / image.shape[1])
    if f < 1.0:
        image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    return image, f


def _text(img: np.ndarray, lines: list[str]) -> None:
    """White lines on a dark band at the top left (readable on any background)."""
    sizes = [cv2.getTextSize(line, FONT, 0.5, 1)[0] for line in lines]
    width = max(w for w, _ in sizes) + 16
    cv2.rectangle(img, (0, 0), (min(width, img.shape[1] - 1), 10 + 18 * len(lines)),
                  (32, 32, 32), -1)
    for k, line in enumerate(lines):
        cv2.putText(img, line, (8, 18 + 18 * k), FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def _bgr(gray: np.ndarray) -> np.ndarray:
    if gray.dtype != np.uint8:
        gray = cv2.normalize(gray, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def _write(path: Path, img: np.ndarray) -> Path:
    ok, data = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"could not encode {path}")
    atomic_write(path, data.tobytes())
    return path


def intrinsics_picture(res: IntrinsicsResult, first_view: np.ndarray, path: Path) -> Path:
    """Corners of every view on the first one, and the lens's displacement field."""
    w, h = res.image_size
    base, f = _fit(_bgr(first_view))
    base = (base * 0.5).astype(np.uint8)
    for c in res.corners:
        for x, y in c.image_points * f:
            cv2.circle(base, (int(round(x)), int(round(y))), 2, (0, 200, 255), -1)
    K, dist = res.intrinsics.K, res.intrinsics.dist
    gx, gy = np.meshgrid(np.linspace(0, w - 1, 17), np.linspace(0, h - 1, 13))
    raw = np.stack([gx.ravel(), gy.ravel()], axis=1)
    und = cv2.undistortPoints(raw.reshape(-1, 1, 2), K, dist, P=K).reshape(-1, 2)
    disp = np.linalg.norm(und - raw, axis=1)
    gain = 0.8 * (w / 16) / max(float(disp.max()), 1e-6)  # longest arrow: 0.8 grid cell
    for (x0, y0), (x1, y1) in zip(raw * f, raw * f + (und - raw) * f * gain, strict=True):
        cv2.arrowedLine(base, (int(x0), int(y0)), (int(x1), int(y1)), (80, 255, 80), 1,
                        cv2.LINE_AA, tipLength=0.25)
    i = res.intrinsics
    _text(base, [
        f"intrinsics: {len(res.views)} views, {i.corners} corners, coverage {i.coverage:.0%}",
        f"reprojection rms {i.rms_px:.3f} px (worst view {i.max_view_rms_px:.3f} px)",
        f"fx {K[0, 0]:.1f} fy {K[1, 1]:.1f} cx {K[0, 2]:.1f} cy {K[1, 2]:.1f} px",
        "k1 {:.4f} k2 {:.4f} p1 {:.5f} p2 {:.5f} k3 {:.4f}".format(*list(dist) + [0] * 5),
        f"green: undistortion shift x{gain:.1f} (max {disp.max():.1f} px)",
    ])
    return _write(path, base)


def flatfield_picture(res: FlatFieldResult, path: Path) -> Path:
    """Mean white frame, the gain map (colour) and the white frame corrected."""
    flat = FlatField.from_maps(res.dark, res.gain, np.uint8)
    white = np.clip(res.white_mean * (1 if res.info.dtype == "uint8" else 1 / 256), 0, 255)
    corrected = flat.apply(np.clip(np.rint(white), 0, 255).astype(np.uint8))
    g = res.gain
    lo, hi = float(np.percentile(g, 0.5)), float(np.percentile(g, 99.5))
    gmap = np.clip((g - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    panels = [_bgr(white.astype(np.uint8)), cv2.applyColorMap(gmap, cv2.COLORMAP_VIRIDIS),
              _bgr(corrected)]
    img = np.hstack([_fit(p, MAX_WIDTH // 3)[0] for p in panels])
    info = res.info
    after = ("n/a (one white frame)" if info.nonuniformity_after is None
             else f"{info.nonuniformity_after:.2%}")
    _text(img, [
        f"flat field: {len(info.dark_images)} dark, {len(info.white_images)} white frames",
        f"white level {info.white_level:.1f}, gain {info.gain_min:.3f}..{info.gain_max:.3f}"
        f" (map: {lo:.3f}..{hi:.3f}), bad pixels {info.bad_pixels}",
        f"non-uniformity {info.nonuniformity_before:.2%} -> {after} (held-out frame)",
        "left: mean white   middle: gain   right: white corrected",
    ])
    return _write(path, img)


def scale_picture(res: ScaleResult, first: np.ndarray, path: Path) -> Path:
    """The first target image with its corners and the scale written on it."""
    img, f = _fit(_bgr(first))
    for x, y in res.corners[0].image_points * f:
        cv2.circle(img, (int(round(x)), int(round(y))), 3, (0, 200, 255), 1, cv2.LINE_AA)
    s = res.info
    _text(img, [
        f"scale: {s.mm_per_px:.6f} mm/px +- {s.uncertainty_mm_per_px:.3g} (1 sigma, "
        f"{100 * s.uncertainty_mm_per_px / s.mm_per_px:.3g} %)",
        f"{len(s.images)} image(s), {s.corners} corners, fit rms {s.fit_rms_px:.3f} px, "
        f"anisotropy {s.anisotropy:+.3%}",
        f"{'through the intrinsics (undistorted)' if s.undistorted else 'raw (no intrinsics)'}",
    ])
    return _write(path, img)
