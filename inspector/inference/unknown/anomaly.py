"""From token distances to an anomaly map, regions and `unknown` detections.

Distance per token (stride 8 of the resized frame) -> bilinear upsampling to the frame
-> Gaussian blur (PatchCore's smoothing: one odd token does not make a defect) ->
hysteresis regions: connected components (cv2) of the map above `low_ratio` x the
threshold that contain a pixel above the threshold -> `Detection(cls="unknown",
unknown=True)`. The score maps the region's peak distance d to 0..1 so that d equal to
the calibrated threshold scores exactly the recipe's `unknown.threshold`, higher
distances score higher, and the decision's threshold test means "beyond the calibrated
false-alarm rate".
"""

from __future__ import annotations

import cv2
import numpy as np

from inspector.inference.detectors.base import Detection
from inspector.inference.unknown.features import STRIDE


def anomaly_map(dist: np.ndarray, frame_shape: tuple[int, int], scale: float,
                sigma: float) -> np.ndarray:
    """(h, w) token distances -> (H, W) float32 map of the original frame.

    `scale` is the resize factor applied before encoding; `sigma` is the blur in pixels
    of the resized frame (4 = half a token).
    """
    H, W = frame_shape[:2]
    h, w = dist.shape
    hr, wr = (max(16, round(v * scale)) for v in (H, W)) if scale != 1.0 else (H, W)
    m = cv2.resize(dist.astype(np.float32), (w * STRIDE, h * STRIDE),
                   interpolation=cv2.INTER_LINEAR)[:hr, :wr]
    if sigma > 0:
        m = cv2.GaussianBlur(m, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    if (hr, wr) != (H, W):
        m = cv2.resize(m, (W, H), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(m)


def border_classes(h: int, w: int, rings: int = 2) -> np.ndarray:
    """(h, w) int class of each token by where it lies against the frame's edge.

    0 .. rings-1: the ring it lies in (0 the outermost), `rings`: the interior,
    rings+1+r: a corner block (within `rings` tokens of two edges, r its ring); so
    2 * rings + 1 classes. Tokens near the frame's edge see the edge, the mirrored margin
    and fewer bank examples (4 corners per good part), so their distances run higher and
    the outermost rows most (MagTile: the two outer rings and the corners, measured on
    held-out good parts); the branch rescales each class to the interior's spread.
    """
    ri = np.minimum(np.arange(h), np.arange(h)[::-1])[:, None]
    rj = np.minimum(np.arange(w), np.arange(w)[::-1])[None, :]
    ring = np.minimum(np.minimum(ri, rj), rings)
    corner = (ri < rings) & (rj < rings)
    return np.where(corner, rings + 1 + ring, ring).astype(np.int8)


def border_class_count(rings: int) -> int:
    """How many classes `border_classes(.., rings)` uses."""
    return 2 * rings + 1


def topk_mean(dist: np.ndarray, k: int) -> float:
    """Mean of the `k` largest token distances (all of them in a smaller grid)."""
    flat = dist.ravel()
    k = min(k, flat.size)
    return float(np.partition(flat, flat.size - k)[-k:].mean())


def to_score(d: np.ndarray | float, threshold: float, at_threshold: float,
             gamma: float = 2.0) -> np.ndarray | float:
    """Monotone map of distances to 0..1 with `threshold` -> `at_threshold`."""
    r = np.maximum(np.asarray(d, np.float64), 0.0) / max(threshold, 1e-12)
    low = at_threshold * np.minimum(r, 1.0) ** gamma
    high = 1.0 - (1.0 - at_threshold) * np.minimum(1.0 / np.maximum(r, 1e-12), 1.0) ** gamma
    out = np.where(r >= 1.0, high, low)
    return float(out) if out.ndim == 0 else out


def regions(amap: np.ndarray, threshold: float, at_threshold: float, low_ratio: float = 0.8,
            min_area_px: int = 1, max_regions: int = 20) -> list[Detection]:
    """Unknown-defect detections of one map, highest score first."""
    seeds = amap >= threshold
    if not seeds.any():
        return []
    grown = (amap >= threshold * low_ratio).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    hit = np.unique(labels[seeds])
    out = []
    for lab in hit[hit > 0]:
        x, y, w, h, area = (int(v) for v in stats[lab])
        if area < min_area_px:
            continue
        mask = labels[y:y + h, x:x + w] == lab
        peak = float(amap[y:y + h, x:x + w][mask].max())
        out.append(Detection(
            cls="unknown", score=to_score(peak, threshold, at_threshold),
            bbox=(float(x), float(y), float(w), float(h)), mask=mask, area_px=float(area),
            unknown=True,
        ))
    out.sort(key=lambda d: -d.score)
    return out[:max_regions]
