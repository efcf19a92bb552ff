"""COCO annotation helpers shared by recipes, replay, training and evaluation, and COCO
AP at IoU 0.5 (evaluation, and the detector choice at enrolment: detectors/select.py)."""

from __future__ import annotations

import contextlib
import copy
import io

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


def coco_ap50(gt: dict, dets: list[dict], iou_type: str = "bbox") -> dict:
    """COCO's AP at IoU 0.5 via pycocotools: {'ap50', 'per_class': {name: ap50 or None},
    'pr': {name: (recall, precision)}}.

    The ground truth is a COCO json as is (defect-free images included, so every detection
    on them is a false positive), detections are COCO result dicts; AP50 is COCO's
    101-point interpolated AP at IoU 0.5, all areas, 100 detections. `iou_type` is 'bbox'
    or 'segm' (dets then need 'segmentation' RLEs). A class without test instances gets
    None and is left out of the mean, as COCO does.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    names = {c["id"]: c["name"] for c in gt["categories"]}
    gt = copy.deepcopy(gt)
    gt.setdefault("info", {})
    for a in gt["annotations"]:
        a.setdefault("iscrowd", 0)
        a.setdefault("area", float(a["bbox"][2] * a["bbox"][3]))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        if not dets:
            return {"ap50": 0.0 if gt["annotations"] else None,
                    "per_class": {n: (0.0 if any(a["category_id"] == c for a in gt["annotations"])
                                      else None) for c, n in names.items()}, "pr": {}}
        coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.iouThrs = np.array([0.5])
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"]  # (T=1, R=101, K, A=4, M=3)
    rec = ev.params.recThrs
    per_class, pr = {}, {}
    for k, cat in enumerate(ev.params.catIds):
        p = prec[0, :, k, 0, -1]
        valid = p[p > -1]
        per_class[names[cat]] = float(valid.mean()) if len(valid) else None
        if len(valid):
            pr[names[cat]] = (rec.tolist(), np.where(p > -1, p, 0).tolist())
    vals = [v for v in per_class.values() if v is not None]
    return {"ap50": float(np.mean(vals)) if vals else None, "per_class": per_class, "pr": pr}
