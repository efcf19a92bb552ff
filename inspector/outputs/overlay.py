"""Overlay images of NG parts: boxes, masks, class and score drawn on the frame."""

from __future__ import annotations

import cv2
import numpy as np

from inspector.core.result import Result

PALETTE = [(0, 0, 255), (0, 200, 255), (255, 0, 255), (255, 128, 0), (0, 255, 0),
           (255, 255, 0), (128, 0, 255)]


def _colour(name: str) -> tuple[int, int, int]:
    return PALETTE[sum(name.encode()) % len(PALETTE)]


def draw(image: np.ndarray, result: Result) -> np.ndarray:
    """BGR overlay of every defect in `result` (counted ones solid, others thin)."""
    mono = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if mono.dtype != np.uint8:
        mono = (mono >> 8).astype(np.uint8) if mono.dtype == np.uint16 else mono.astype(np.uint8)
    out = cv2.cvtColor(mono, cv2.COLOR_GRAY2BGR)
    from pycocotools import mask as mask_utils  # on use: importing the runtime stays light

    for d in result.defects:
        colour = _colour(d.cls)
        if d.mask is not None:
            rle = {"size": d.mask.size, "counts": d.mask.counts.encode()}
            m = mask_utils.decode(rle).astype(bool)
            out[m] = (0.5 * out[m] + 0.5 * np.array(colour)).astype(np.uint8)
        x, y, w, h = (int(round(v)) for v in d.bbox)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2 if d.accepted else 1)
        # sizes in mm (the camera's calibration or the recipe's scale)
        label = f"{d.cls} {d.score:.2f} {d.area_mm2:.3g}mm2"
        cv2.putText(out, label, (x, max(y - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1,
                    cv2.LINE_AA)
    head = f"{result.verdict} code {result.code} {result.part_id}"
    cv2.putText(out, head, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                (0, 0, 255) if result.verdict == "NG" else (0, 200, 0), 1, cv2.LINE_AA)
    return out
