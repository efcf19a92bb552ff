"""Preprocess: make the camera image what the detector expects.

Colour to mono uint8 (uint16 scaled down) and the recipe's ROI crop. A camera with a
calibration file (`calibration:` in the station config) gets flat-field correction and
undistortion before the crop, and its calibrated mm per pixel (inspector.calibration;
on the GPU in place when CUDA is present). `Preprocessor` is the per-camera object the
pipeline keeps, built once at start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


@dataclass(frozen=True)
class Preprocessed:
    """The detector's input: the cropped mono image, where it lies and its scale."""

    image: np.ndarray  # mono uint8, ROI-cropped
    offset: tuple[int, int]  # (x, y) of the crop in the frame, to map detections back
    mm_per_px: float | None = None  # the camera calibration's scale; None: the recipe's
    scale_source: str | None = None  # the calibration file mm_per_px comes from


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
    """Mono uint8 of `image`, cropped to `roi` (clamped to the frame); no calibration."""
    mono = to_mono8(image)
    if roi is None:
        return Preprocessed(mono, (0, 0))
    x, y, w, h = roi
    H, W = mono.shape
    x0, y0 = min(max(x, 0), W - 1), min(max(y, 0), H - 1)
    x1, y1 = min(x0 + w, W), min(y0 + h, H)
    return Preprocessed(mono[y0:y1, x0:x1], (x0, y0))


class Preprocessor:
    """One camera's preprocessing, built once at start (calibration maps computed once).

    Without a calibration file it is `preprocess`; with one, inspector.calibration's
    Corrector: flat field, undistortion, ROI crop, and the calibrated mm per pixel.
    """

    def __init__(self, calibration: Path | None = None) -> None:
        self.calibration = calibration
        self.corrector = None
        if calibration is not None:
            from inspector.preprocess.corrector import Corrector

            self.corrector = Corrector.from_file(calibration)

    def __call__(self, image: np.ndarray, roi: tuple[int, int, int, int] | None
                 ) -> Preprocessed:
        if self.corrector is None:
            return preprocess(image, roi)
        return self.corrector(image, roi)

    def display(self, image: np.ndarray) -> np.ndarray:
        """The whole frame in the coordinates of the results (for overlays)."""
        return image if self.corrector is None else self.corrector.full_frame(image)
