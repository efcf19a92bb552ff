"""Reading calibration input images, and the error every bad input raises.

Calibration input is checked before anything is computed: every file must be readable,
and all frames of one calibration must have the same size (and the size of the camera's
existing calibration, when there is one). Each error names the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspector.core.errors import InspectorError


class CalibrationError(InspectorError, ValueError):
    """Calibration input that cannot be used; the message names the file(s) and why.

    Raised before anything is written: a failed calibration leaves the files as they were.
    """


def read_frame(path: Path) -> np.ndarray:
    """One reference image as mono uint8 or uint16 (colour is converted to grey)."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"{path}: file not found")
    image = cv2.imread(str(path), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if image is None:
        raise CalibrationError(f"{path}: not an image OpenCV can read")
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    if image.dtype not in (np.uint8, np.uint16):
        raise CalibrationError(f"{path}: pixel type {image.dtype} is not supported "
                               "(use 8- or 16-bit images)")
    return image


def read_frames(
    paths: Sequence[Path],
    expect_size: tuple[int, int] | None = None,
    what: str = "images",
    progress: bool = False,
) -> list[np.ndarray]:
    """Read `paths`; all must have one size and pixel type (and `expect_size`, w x h)."""
    if not paths:
        raise CalibrationError(f"no {what} given")
    frames: list[np.ndarray] = []
    first: Path | None = None
    for path in tqdm(paths, desc=f"reading {what}", disable=not progress, leave=False):
        image = read_frame(path)
        h, w = image.shape
        if expect_size is not None and (w, h) != tuple(expect_size):
            raise CalibrationError(
                f"{path}: image size {w}x{h} differs from the camera's calibrated size "
                f"{expect_size[0]}x{expect_size[1]}")
        if frames:
            ref = frames[0]
            if image.shape != ref.shape:
                raise CalibrationError(
                    f"{path}: image size {w}x{h} differs from {ref.shape[1]}x{ref.shape[0]} "
                    f"of {first}: all {what} must come from one camera setting")
            if image.dtype != ref.dtype:
                raise CalibrationError(f"{path}: pixel type {image.dtype} differs from "
                                       f"{ref.dtype} of {first}")
        else:
            first = Path(path)
        frames.append(image)
    return frames


def full_scale(dtype: np.dtype) -> int:
    """Largest pixel value of an integer image type (255, 65535)."""
    return int(np.iinfo(dtype).max)
