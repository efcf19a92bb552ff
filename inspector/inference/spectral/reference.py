"""Plain NumPy reference: THE DEFINITION of a radial FFT profile.

Every other backend (numba CPU path, CUDA kernel) is tested against
`radial_profiles_reference`; where they disagree, this module is right. It is written
for clarity, in float64, one stage per function, and vectorised over RoIs only as
far as NumPy makes that plain. The choices (units, sampling, window, DC, rings,
normalisation) are spelled out in `inspector.inference.spectral.spec`.
"""

from __future__ import annotations

import numpy as np

from inspector.inference.spectral.spec import (
    TINY,
    Tables,
    check_frame,
    check_rings,
    check_size,
    full_scale,
    hann,
    resolve_boxes,
    tables,
)


def sample_coords(origin: np.ndarray, extent: np.ndarray, size: int, limit: int):
    """Bilinear taps along one axis: (lo, hi, frac) arrays of shape (N, S), clamped."""
    j = np.arange(size, dtype=np.float64)
    c = origin[:, None] + (j[None, :] + 0.5) * (extent[:, None] / size) - 0.5
    c0 = np.floor(c)
    frac = c - c0
    lo = np.clip(c0, 0, limit - 1).astype(np.intp)
    hi = np.clip(c0 + 1, 0, limit - 1).astype(np.intp)
    return lo, hi, frac


def extract_patches(frame: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Resample each box to S x S with bilinear interpolation; (N, S, S) float64."""
    img = frame.astype(np.float64) / full_scale(frame.dtype)
    h, w = img.shape
    x0, x1, fx = sample_coords(boxes[:, 0], boxes[:, 2], size, w)
    y0, y1, fy = sample_coords(boxes[:, 1], boxes[:, 3], size, h)
    ya, yb = y0[:, :, None], y1[:, :, None]
    xa, xb = x0[:, None, :], x1[:, None, :]
    fx, fy = fx[:, None, :], fy[:, :, None]
    top = img[ya, xa] * (1 - fx) + img[ya, xb] * fx
    bottom = img[yb, xa] * (1 - fx) + img[yb, xb] * fx
    return top * (1 - fy) + bottom * fy


def spectrum(patches: np.ndarray, window: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """2-D DFT of w * (p - m) per patch, and the DC m (window-weighted mean)."""
    size = patches.shape[-1]
    w1 = hann(size) if window else np.ones(size)
    w2 = np.outer(w1, w1)
    dc = (patches * w2).sum(axis=(1, 2)) / w2.sum()
    return np.fft.fft2(w2 * (patches - dc[:, None, None])), dc


def ring_means(values: np.ndarray, tab: Tables) -> np.ndarray:
    """Mean of values (N, S, S, FFT order) over each ring's members; (N, R)."""
    n = values.shape[0]
    member = np.zeros((tab.size * tab.size, tab.rings))
    flat = tab.ring_of.ravel()
    inside = flat >= 0
    member[np.flatnonzero(inside), flat[inside]] = 1.0
    return (values.reshape(n, -1) @ member) / tab.counts


def normalise(h: np.ndarray) -> np.ndarray:
    """L1 normalisation; flat patches (sum below TINY) give an all-zero profile."""
    total = h.sum(axis=1, keepdims=True)
    return np.where(total > TINY, h / np.where(total > TINY, total, 1.0), 0.0)


def radial_profiles_reference(
    frame: np.ndarray,
    boxes: object = None,
    grid: tuple[int, int] | None = None,
    size: int = 32,
    rings: int | None = None,
    log: bool = True,
    window: bool = True,
    return_dc: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Radial profiles (N, R) float32 of the RoIs; the definition of the result.

    `boxes` (N, 4) x, y, w, h or `grid` (window, stride); `size` S in (32, 64);
    `rings` R (default S/2); `log` applies log1p to |F| before ring averaging;
    `window=False` skips the Hann window (used to test shift invariance);
    `return_dc` also returns the (N,) window-weighted mean intensities.
    """
    frame = check_frame(frame)
    size = check_size(size)
    rings = check_rings(rings, size)
    bx = resolve_boxes(frame.shape, boxes, grid)
    tab = tables(size, rings)
    spec, dc = spectrum(extract_patches(frame, bx, size), window)
    mag = np.abs(spec)
    prof = normalise(ring_means(np.log1p(mag) if log else mag, tab)).astype(np.float32)
    return (prof, dc.astype(np.float32)) if return_dc else prof
