"""The lens model in one place: OpenCV's Brown-Conrady distortion, forwards and inverted.

`distort` is what cv2.projectPoints applies; `undistort_normalised` inverts it by
fixed-point iteration to 1e-9 (normalised units) and checks that it converged:
cv2.undistortPoints stops after a handful of iterations and leaves a few hundredths
of a pixel at strongly distorted corners, which is the size of what the scale
calibration and the tests measure. `undistort_pixels` maps raw pixel positions to the
calibrated frame, whose camera matrix is the raw one (same size, same central scale).
"""

from __future__ import annotations

import numpy as np


def _coeffs(dist) -> tuple[float, float, float, float, float]:
    d = [float(v) for v in np.asarray(dist, dtype=np.float64).reshape(-1)]
    if len(d) > 5 and any(d[5:]):
        raise ValueError("only the k1, k2, p1, p2, k3 distortion model is supported here")
    k1, k2, p1, p2, k3 = (d + [0.0] * 5)[:5]
    return k1, k2, p1, p2, k3


def distort(xy: np.ndarray, dist) -> np.ndarray:
    """Brown-Conrady distortion of normalised coordinates (N, 2), as OpenCV applies it."""
    k1, k2, p1, p2, k3 = _coeffs(dist)
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.stack([xd, yd], axis=1)


def undistort_normalised(xy_d: np.ndarray, dist, iterations: int = 100) -> np.ndarray:
    """Invert `distort`; raises ValueError if the iteration does not converge."""
    k1, k2, p1, p2, k3 = _coeffs(dist)
    xy = np.array(xy_d, dtype=np.float64, copy=True)
    for _ in range(iterations):
        x, y = xy[:, 0], xy[:, 1]
        r2 = x * x + y * y
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        new = np.stack([(xy_d[:, 0] - dx) / radial, (xy_d[:, 1] - dy) / radial], axis=1)
        if np.abs(new - xy).max() < 1e-12:
            xy = new
            break
        xy = new
    err = float(np.abs(distort(xy, dist) - xy_d).max()) if len(xy) else 0.0
    if not err < 1e-9:
        raise ValueError(f"lens distortion inversion did not converge (error {err:.2e}): "
                         "points too far outside the calibrated field?")
    return xy


def to_normalised(px: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixel positions (N, 2) -> normalised coordinates through camera matrix K (skew too)."""
    y = (px[:, 1] - K[1, 2]) / K[1, 1]
    x = (px[:, 0] - K[0, 2] - K[0, 1] * y) / K[0, 0]
    return np.stack([x, y], axis=1)


def to_pixels(xy: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Normalised coordinates (N, 2) -> pixel positions through K; inverse of to_normalised."""
    u = K[0, 0] * xy[:, 0] + K[0, 1] * xy[:, 1] + K[0, 2]
    v = K[1, 1] * xy[:, 1] + K[1, 2]
    return np.stack([u, v], axis=1)


def undistort_pixels(px: np.ndarray, K: np.ndarray, dist) -> np.ndarray:
    """Raw pixel positions (N, 2) -> positions in the calibrated (undistorted) frame."""
    px = np.asarray(px, dtype=np.float64).reshape(-1, 2)
    return to_pixels(undistort_normalised(to_normalised(px, K), dist), K)
