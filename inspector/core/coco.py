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
