"""Defect sizes in millimetres: area and length of a detection, and the line results carry.

Area is the detection's pixel area times (mm per px)²; length is its longest extent:
the long side of the minimum-area rectangle around the mask's pixels (one pixel added
for the pixels' own extent), or the long side of the box when there is no mask. Both
are in the calibrated frame, so with a calibration file they are free of lens
distortion. `size_reason` is the one line a NG result gets in `reasons` (an existing
field of inspector.result/1) saying how big the counted defects are and where the
scale came from: the camera's calibration file, or the recipe's mm_per_px.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from inspector.inference.detectors.base import Detection

MAX_LISTED = 6  # defects named in the line; more are counted


def length_px(det: Detection) -> float:
    """Longest extent of a detection in pixels."""
    if det.mask is not None and det.mask.any():
        ys, xs = np.nonzero(det.mask)
        if len(xs) == 1:
            return 1.0
        (_, _), (w, h), _ = cv2.minAreaRect(np.column_stack([xs, ys]).astype(np.float32))
        return float(max(w, h)) + 1.0
    return float(max(det.bbox[2], det.bbox[3]))


def area_mm2(det: Detection, mm_per_px: float) -> float:
    """Area of a detection in mm²."""
    return float(det.area_px) * mm_per_px * mm_per_px


def length_mm(det: Detection, mm_per_px: float) -> float:
    """Longest extent of a detection in mm."""
    return length_px(det) * mm_per_px


def size_reason(detections: Sequence[Detection], accepted: Sequence[bool], mm_per_px: float,
                source: str | None) -> str | None:
    """`sizes at 0.0500 mm/px (recipe): scratch 0.82 mm2 3.10 mm; ...`, or None if no
    detection counted."""
    counted = [d for d, a in zip(detections, accepted, strict=True) if a]
    if not counted:
        return None
    where = f"calibration {source}" if source else "recipe"
    parts = [f"{d.cls} {area_mm2(d, mm_per_px):.3g} mm2 {length_mm(d, mm_per_px):.3g} mm"
             for d in counted[:MAX_LISTED]]
    more = f"; +{len(counted) - MAX_LISTED} more" if len(counted) > MAX_LISTED else ""
    return f"sizes at {mm_per_px:.5g} mm/px ({where}): " + "; ".join(parts) + more
