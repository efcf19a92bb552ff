"""COCO AP at IoU 0.5 (box and mask) via pycocotools, per class, with PR curves.

A thin wrapper: the ground truth is the dataset's test json as is (defect-free images
included, so every detection on them is a false positive), detections are COCO result
dicts. AP50 is COCO's 101-point interpolated AP at IoU 0.5, all areas, 100 detections.
"""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np


def coco_ap50(gt: dict, dets: list[dict], iou_type: str = "bbox") -> dict:
    """{'ap50', 'per_class': {name: ap50 or None}, 'pr': {name: (recall, precision)}}.

    `iou_type` is 'bbox' or 'segm' (dets then need 'segmentation' RLEs). A class without
    test instances gets None and is left out of the mean, as COCO does.
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
