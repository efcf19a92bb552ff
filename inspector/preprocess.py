"""Preprocess: make the camera image what the detector expects.

Now: colour to mono uint8 (uint16 scaled down) and the recipe's ROI crop. Flat-field,
undistortion and pixel-to-mm calibration plug in here (issue 10); on NVIDIA hardware they
run on the GPU in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Preprocessed:
    image: np.ndarray  # mono uint8, ROI-cropped
    offset: tuple[int, int]  # (x, y) of the crop in the frame, to map detections back


def to_mono8(image: np.ndarray) -> np.ndarray:
    """Mono uint8 view or copy of a camera image (Mono8/Mono16, RGB, RGBA)."""
    if image.ndim == 3:
        code = cv2.COLOR_RGBA2GRAY if image.shape[2] == 4 else cv2.COLOR_RGB2GRAY
        image = cv2.cvtColor(image, code)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return image


def preprocess(image: np.ndarray, roi: tuple[int, int, int, int] | None) -> Preprocessed:
    mono = to_mono8(image)
    if roi is None:
        return Preprocessed(mono, (0, 0))
    x, y, w, h = roi
    H, W = mono.shape
    x0, y0 = min(max(x, 0), W - 1), min(max(y, 0), H - 1)
    x1, y1 = min(x0 + w, W), min(y0 + h, H)
    return Preprocessed(mono[y0:y1, x0:x1], (x0, y0))
