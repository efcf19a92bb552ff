"""Numpy geometry shared by training and the runtime of the visual-prompt detector.

The detector sees every image resized to a square `size` (a multiple of 16); its tokens
lie on a stride-8 grid. A prompt example becomes (a) pooling weights over that grid
(the share of each token cell covered by the example's mask, or its box when there is
no mask) and (b) the radial spectrum of its box from the spectral engine. Training
(`inspector.training.episodes`) and enrolment (`inspector.inference.detectors.prompt`) both call
these
functions, so the model sees the same inputs in both. No torch here.
"""

from __future__ import annotations

import cv2
import numpy as np

STRIDE = 8
RINGS = 16  # radial spectrum length fed to the frequency branch
SPECTRUM_SIZE = 32  # the RoI is resampled to this many pixels per side before the FFT
MIN_SPECTRUM_BOX = 8.0  # smaller boxes are grown around their centre to this side


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Mono uint8 image -> (size, size) uint8 (aspect not kept: parts fill the frame)."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    h, w = image.shape
    interp = cv2.INTER_AREA if (h > size or w > size) else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def to_input(image_sq: np.ndarray) -> np.ndarray:
    """(S, S) uint8 -> (1, 1, S, S) float32 in [0, 1], the encoder graph's input."""
    return (image_sq.astype(np.float32) / 255.0)[None, None]


def scale_box(bbox, src_hw: tuple[int, int], size: int) -> tuple[float, float, float, float]:
    """x, y, w, h from the source image to the (size, size) input."""
    sy, sx = size / src_hw[0], size / src_hw[1]
    x, y, w, h = bbox
    return x * sx, y * sy, w * sx, h * sy


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """bool (H, W) -> float32 (size, size) coverage in [0, 1]."""
    m = mask.astype(np.float32)
    interp = cv2.INTER_AREA if max(m.shape) > size else cv2.INTER_LINEAR
    return cv2.resize(m, (size, size), interpolation=interp)


def coverage(mask_sq: np.ndarray | None, box_sq, size: int, cell: int) -> np.ndarray:
    """Share of each (cell x cell) block of the input covered by the mask (or the box)."""
    n = size // cell
    if mask_sq is None:
        x, y, w, h = box_sq
        edges = np.arange(n + 1, dtype=np.float64) * cell
        cx = np.clip(np.minimum(edges[1:], x + w) - np.maximum(edges[:-1], x), 0, None) / cell
        cy = np.clip(np.minimum(edges[1:], y + h) - np.maximum(edges[:-1], y), 0, None) / cell
        return np.outer(cy, cx).astype(np.float32)
    return mask_sq.reshape(n, cell, n, cell).mean(axis=(1, 3)).astype(np.float32)


def token_weights(mask_sq: np.ndarray | None, box_sq, size: int) -> np.ndarray:
    """Pooling weights (size/8, size/8) for a prompt; never all zero (tiny defects get the
    token under their centre)."""
    w = coverage(mask_sq, box_sq, size, STRIDE)
    if w.sum() < 0.25:
        x, y, bw, bh = box_sq
        n = size // STRIDE
        j = int(np.clip((x + bw / 2) // STRIDE, 0, n - 1))
        i = int(np.clip((y + bh / 2) // STRIDE, 0, n - 1))
        w[i, j] = max(w[i, j], 1.0)
    return w


def prompt_spectrum(image_sq: np.ndarray, box_sq) -> np.ndarray:
    """(RINGS,) float32: log of the radial spectrum of the box (spectral engine, CPU path)."""
    from inspector.inference.spectral.launcher import radial_profiles

    x, y, w, h = (float(v) for v in box_sq)
    cx, cy = x + w / 2, y + h / 2
    w, h = max(w, MIN_SPECTRUM_BOX), max(h, MIN_SPECTRUM_BOX)
    box = np.array([[cx - w / 2, cy - h / 2, w, h]])
    prof = radial_profiles(image_sq, boxes=box, size=SPECTRUM_SIZE, rings=RINGS, backend="cpu")
    return np.log(prof[0] * RINGS + 1e-3).astype(np.float32)
