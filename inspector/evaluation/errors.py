"""Where the misses are: every ground-truth defect sorted into one outcome, per class.

AP says how much is lost, not why. For each test instance of class c (boxes, IoU 0.5):

* `never_localised`: no detection of any class overlaps it at IoU >= 0.5 (the queries
  never landed on it: a localisation failure);
* `misclassified`: only detections of other classes overlap it (found, wrong prototype);
* `below_clean_fp`: a class-c detection overlaps it, but scores below the best class-c
  detection on a defect-free test image (ranked after a false positive on a clean part);
* `found`: a class-c detection overlaps it and outscores every clean-image false positive.

The detections are the evaluation's (after NMS, min_score, max_detections), so the split
explains the same run that AP50 scores.

The split cannot show a model whose boxes land but whose scores do not rank: on a dataset
without defect-free test images nothing is "below a clean false positive", yet AP50 is
low when false positives outscore true ones. `ranking` measures that: how often a true
positive outscores a false positive (0.5 is chance).
"""

from __future__ import annotations

import numpy as np

from inspector.core.coco import iou_xywh

OUTCOMES = ("found", "below_clean_fp", "misclassified", "never_localised")


def error_split(gt: dict, dets: list[dict], iou: float = 0.5) -> dict[str, dict[str, int]]:
    """class name -> {outcome: count} over the instances of `gt` (a COCO test split);
    `dets` are COCO result dicts (image_id, category_id, bbox, score)."""
    names = {c["id"]: c["name"] for c in gt["categories"]}
    defect_images = {a["image_id"] for a in gt["annotations"]}
    clean_best: dict[int, float] = {}
    by_image: dict[int, list[dict]] = {}
    for d in dets:
        by_image.setdefault(d["image_id"], []).append(d)
        if d["image_id"] not in defect_images:
            c = d["category_id"]
            clean_best[c] = max(clean_best.get(c, 0.0), float(d["score"]))
    out = {names[c]: dict.fromkeys(OUTCOMES, 0) for c in sorted(names)}
    for a in gt["annotations"]:
        c = a["category_id"]
        found = by_image.get(a["image_id"], [])
        if found:
            ov = iou_xywh(np.array([a["bbox"]]), np.array([d["bbox"] for d in found]))[0]
            hit = [d for d, o in zip(found, ov, strict=True) if o >= iou]
        else:
            hit = []
        same = [float(d["score"]) for d in hit if d["category_id"] == c]
        if not hit:
            k = "never_localised"
        elif not same:
            k = "misclassified"
        elif max(same) < clean_best.get(c, 0.0):
            k = "below_clean_fp"
        else:
            k = "found"
        out[names[c]][k] += 1
    return out


def ranking(gt: dict, dets: list[dict], iou: float = 0.5,
            split: dict[str, dict[str, int]] | None = None) -> dict[str, float | int]:
    """How well scores rank: `score_auc`, the chance that a true-positive detection (its
    class, IoU >= `iou` with a defect of that class) outscores a false positive (ties
    count half; 0.5 = no better than chance), per-class pairs only (AP is per class);
    `localised`, the share of defects any detection of any class boxes at `iou` (from
    `split`, the `error_split` of the same detections, when the caller has it)."""
    from scipy.stats import rankdata

    gt_boxes: dict[tuple[int, int], list] = {}
    for a in gt["annotations"]:
        gt_boxes.setdefault((a["image_id"], a["category_id"]), []).append(a["bbox"])
    by_class: dict[int, tuple[list[float], list[float]]] = {}
    for d in dets:
        g = gt_boxes.get((d["image_id"], d["category_id"]), [])
        tp = bool(g) and float(iou_xywh(np.array([d["bbox"]]), np.array(g)).max()) >= iou
        by_class.setdefault(d["category_id"], ([], []))[0 if tp else 1].append(float(d["score"]))
    wins, pairs = 0.0, 0
    for tps, fps in by_class.values():
        if tps and fps:
            r = rankdata(np.array(tps + fps))
            wins += float(r[: len(tps)].sum()) - len(tps) * (len(tps) + 1) / 2
            pairs += len(tps) * len(fps)
    split = error_split(gt, dets, iou) if split is None else split
    never = sum(c["never_localised"] for c in split.values())
    n_tp = sum(len(v[0]) for v in by_class.values())
    return {"score_auc": round(wins / pairs, 4) if pairs else float("nan"),
            "true_positives": n_tp, "false_positives": len(dets) - n_tp,
            "localised": round(1 - never / max(len(gt["annotations"]), 1), 4)}


def mean_ranking(per_seed: list[dict]) -> dict[str, float] | None:
    """Mean over seeds of `ranking` (the seeds' "ranking" entries): `score_auc` over the
    seeds where it is defined (nan when none is: no true or no false positive), and
    `localised`; None when no seed has a ranking."""
    ranks = [s["ranking"] for s in per_seed if s.get("ranking")]
    if not ranks:
        return None
    aucs = [r["score_auc"] for r in ranks if not np.isnan(r["score_auc"])]
    return {"score_auc": float(np.mean(aucs)) if aucs else float("nan"),
            "localised": float(np.mean([r["localised"] for r in ranks]))}


def add_splits(splits: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Sum of per-seed splits (same classes)."""
    total: dict[str, dict[str, int]] = {}
    for s in splits:
        for name, counts in s.items():
            t = total.setdefault(name, dict.fromkeys(OUTCOMES, 0))
            for k, v in counts.items():
                t[k] += v
    return total
