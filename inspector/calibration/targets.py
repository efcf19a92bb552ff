"""Calibration targets: printed checkerboards and ChArUco boards, and finding their corners.

A target is described by its squares, as printed: `squares` (across, down) and the
square size in mm; a ChArUco board also has its marker size and ArUco dictionary.
`find_corners` returns the inner corners it found in one image with their position on
the board in mm, or the reason it could not use the image. A checkerboard must be seen
whole; a ChArUco board may be
partly hidden or cut by the image border, which is what lets corners reach the image
corners, where the lens distorts most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from inspector.core.strict import StrictModel

MIN_CHARUCO_CORNERS = 8  # fewer corners in a ChArUco view: the view is not used


class TargetSpec(StrictModel):
    """A calibration target as printed (sizes in mm)."""

    kind: Literal["checkerboard", "charuco"] = "checkerboard"
    squares: tuple[Annotated[int, Field(ge=3, le=200)], Annotated[int, Field(ge=3, le=200)]]
    square_mm: Annotated[float, Field(gt=0)]
    marker_mm: Annotated[float, Field(gt=0)] | None = None  # charuco only
    dictionary: str | None = None  # charuco only: cv2.aruco dictionary (DICT_5X5_100)

    @model_validator(mode="after")
    def _charuco_fields(self) -> TargetSpec:
        if self.kind == "charuco":
            self.dictionary = self.dictionary or "DICT_5X5_100"
            if self.marker_mm is None or self.marker_mm >= self.square_mm:
                raise ValueError("a charuco target needs marker_mm smaller than square_mm")
            if not self.dictionary.startswith("DICT_") or not hasattr(cv2.aruco,
                                                                       self.dictionary):
                raise ValueError(f"unknown ArUco dictionary {self.dictionary!r} "
                                 "(e.g. DICT_5X5_100)")
        return self

    @property
    def inner(self) -> tuple[int, int]:
        """Inner corners (across, down): what OpenCV calls the pattern size."""
        return self.squares[0] - 1, self.squares[1] - 1

    @property
    def corner_count(self) -> int:
        return self.inner[0] * self.inner[1]

    def describe(self) -> str:
        sx, sy = self.squares
        extra = (f", markers {self.marker_mm:g} mm {self.dictionary}"
                 if self.kind == "charuco" else "")
        return f"{self.kind} {sx}x{sy} squares of {self.square_mm:g} mm{extra}"

    def charuco_board(self) -> cv2.aruco.CharucoBoard:
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard(tuple(self.squares), float(self.square_mm),
                                      float(self.marker_mm), dictionary)


@dataclass
class Corners:
    """Corners found in one view: image points (N, 2) px, board points (N, 3) mm, z = 0."""

    image_points: np.ndarray
    board_points: np.ndarray
    ids: np.ndarray  # corner index on the board (row-major over the inner corners)


def board_points(spec: TargetSpec) -> np.ndarray:
    """All inner corners of the board in mm (N, 3), row-major: x across, then y down."""
    nx, ny = spec.inner
    grid = np.zeros((ny * nx, 3), np.float32)
    grid[:, 0] = np.tile(np.arange(1, nx + 1), ny) * spec.square_mm
    grid[:, 1] = np.repeat(np.arange(1, ny + 1), nx) * spec.square_mm
    return grid


def _as_u8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    return cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)


def _refine(gray: np.ndarray, pts: np.ndarray, frac: float = 0.4) -> np.ndarray:
    """cornerSubPix with a half window of `frac` of the smallest corner spacing: the
    window must hold the corner's own edges and nothing else (ChArUco: no marker)."""
    d = np.linalg.norm(pts[:, None, :] - pts[None, :, :], axis=2)
    np.fill_diagonal(d, np.inf)
    half = int(np.clip(frac * d.min(), 2, 11))
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-4)
    return cv2.cornerSubPix(gray, pts.astype(np.float32).reshape(-1, 1, 2), (half, half),
                            (-1, -1), criteria).reshape(-1, 2)


def find_corners(image: np.ndarray, spec: TargetSpec) -> Corners | str:
    """The target's corners in a mono image, or why none could be used (a sentence).

    Checkerboards: OpenCV's classic detector refined by cornerSubPix, and the sector-based
    detector (more robust to blur and clutter) when the classic one fails. The
    sector-based detector's own sub-pixel step was measured biased here (renders through
    a known camera: 0.09 px rms error, focal length 0.6 % long; classic + cornerSubPix:
    0.03 px, unbiased), so its corners go through cornerSubPix too, as do ChArUco's.
    """
    gray = _as_u8(image)
    if spec.kind == "checkerboard":
        nx, ny = spec.inner
        found, pts = cv2.findChessboardCorners(
            gray, spec.inner, flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
        if not found:
            flags = cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE
            found, pts = cv2.findChessboardCornersSB(gray, spec.inner, flags=flags)
        if not found or pts is None or len(pts) != spec.corner_count:
            return (f"checkerboard with {nx}x{ny} inner corners not found (the whole board "
                    "must be visible)")
        pts = _refine(gray, pts.reshape(-1, 2)).astype(np.float64)
        ids = np.arange(spec.corner_count)
        return Corners(pts, board_points(spec).astype(np.float64), ids)
    detector = cv2.aruco.CharucoDetector(spec.charuco_board())
    cc, ci, _mc, mi = detector.detectBoard(gray)
    n = 0 if ci is None else len(ci)
    if n < MIN_CHARUCO_CORNERS:
        markers = 0 if mi is None else len(mi)
        return (f"only {n} ChArUco corners found ({markers} markers), at least "
                f"{MIN_CHARUCO_CORNERS} needed")
    ids = ci.reshape(-1).astype(np.int64)
    # ChArUco corner k sits at inner-corner (k % nx, k // nx), same layout as board_points
    gap = (spec.square_mm - spec.marker_mm) / (2 * spec.square_mm)  # white around markers
    return Corners(_refine(gray, cc.reshape(-1, 2), 0.8 * gap).astype(np.float64),
                   board_points(spec)[ids].astype(np.float64), ids)
