"""COCO annotation helpers shared by recipes, replay, training and evaluation."""

from __future__ import annotations

import numpy as np


def decode_segmentation(seg: list | dict | None, h: int, w: int) -> np.ndarray | None:
    """Full-image bool mask of a COCO `segmentation` (polygons, uncompressed or compressed
    RLE), or None when the annotation has none. The one decoder of the project: recipes,
    replay, training and evaluation read masks through it. Raises ValueError for an RLE of
    another size than the image's."""
    if not seg:
        return None
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
    elif isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        if list(seg.get("size", [])) != [h, w]:
            raise ValueError(f"size {seg.get('size')} is not the image's [{h}, {w}]")
        rle = seg
    return mask_utils.decode(rle).astype(bool)


def iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (n, m) of COCO boxes x, y, w, h."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]),
                 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]),
                 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return inter / np.maximum(union, 1e-9)
