"""Anomaly-detection metrics: image AUROC, pixel AUROC and AUPRO.

Written with NumPy here (a few lines each) rather than pulling in scikit-learn or
anomalib for the runtime install. Definitions:

* AUROC: area under the ROC curve, computed as the Mann-Whitney U statistic with ties
  counted half (equal to the trapezoidal ROC area).
* AUPRO (Bergmann et al., MVTec AD): per-region overlap. At each threshold, PRO is the
  mean over ground-truth connected components of the share of the component's pixels
  above the threshold; FPR is the share of defect-free pixels above it. The PRO-vs-FPR
  curve is integrated up to `fpr_limit` (0.3) and divided by it, so 1.0 is perfect.
  All pixels are sorted once and both curves are cumulative sums, as in the MVTec AD
  evaluation code, so the curve is exact at every distinct score.
"""

from __future__ import annotations

import cv2
import numpy as np


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of `scores` for binary `labels` (1 = defect)."""
    s = np.asarray(scores, np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes, got {n_pos} positive, {n_neg} negative")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # average ranks of ties (1-based)
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def pro_curve(maps: list[np.ndarray], masks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, pro) at every distinct score, thresholds descending; masks are bool."""
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps but {len(masks)} masks")
    scores, d_fpr, d_pro = [], [], []
    n_ok = sum(int((~m).sum()) for m in masks)
    n_regions = 0
    labelled = []
    for m in masks:
        n, lab = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
        labelled.append((n - 1, lab))
        n_regions += n - 1
    if n_ok == 0 or n_regions == 0:
        raise ValueError(f"AUPRO needs defect-free pixels and defects, got {n_ok} and "
                         f"{n_regions} regions")
    for amap, m, (n, lab) in zip(maps, masks, labelled, strict=True):
        if amap.shape != m.shape:
            raise ValueError(f"map {amap.shape} and mask {m.shape} differ")
        scores.append(amap.ravel().astype(np.float32))
        d_fpr.append(np.where(m.ravel(), 0.0, 1.0 / n_ok).astype(np.float64))
        pro = np.zeros(m.size, np.float64)
        if n:
            sizes = np.bincount(lab.ravel(), minlength=n + 1).astype(np.float64)
            w = np.zeros(n + 1)
            w[1:] = 1.0 / (sizes[1:] * n_regions)
            pro = w[lab.ravel()]
        d_pro.append(pro)
    s = np.concatenate(scores)
    order = np.argsort(-s, kind="mergesort")
    s = s[order]
    fpr = np.cumsum(np.concatenate(d_fpr)[order])
    pro = np.cumsum(np.concatenate(d_pro)[order])
    last = np.r_[s[1:] != s[:-1], True]  # one point per distinct score (ties together)
    return np.r_[0.0, fpr[last]], np.r_[0.0, pro[last]]


def aupro(maps: list[np.ndarray], masks: list[np.ndarray], fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve for FPR in [0, fpr_limit]."""
    fpr, pro = pro_curve(maps, masks)
    fpr = np.clip(fpr, 0.0, 1.0)
    keep = fpr <= fpr_limit
    x, y = fpr[keep], pro[keep]
    if x[-1] < fpr_limit:  # interpolate the curve at the limit
        i = int(np.searchsorted(fpr, fpr_limit))
        if i < len(fpr):
            t = (fpr_limit - fpr[i - 1]) / max(fpr[i] - fpr[i - 1], 1e-12)
            x = np.r_[x, fpr_limit]
            y = np.r_[y, pro[i - 1] + t * (pro[i] - pro[i - 1])]
    return float(np.trapezoid(y, x) / fpr_limit)
