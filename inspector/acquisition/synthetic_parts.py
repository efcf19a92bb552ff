"""Seeded procedural parts with injected defects and exact ground truth.

The synthetic part is a brushed-metal plate seen close up: low-frequency shading, fine
directional grain, a machined hole and a printed label (text, logo, 2D code) at a fixed
layout with a few pixels of placement jitter, as a fixture on a line would give. Defects
(scratch, pit, crack, stain, missing print) are drawn on top with contrast a little above
the grain, and each comes back as a DefectTruth with its box and full-frame mask. The
same generator serves the `synthetic` frame source, the demo recipe and COCO datasets
for replay tests, so every stage can be tested against known truth.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from inspector.config.sources import DEFECT_KINDS
from inspector.core.frames import DefectTruth
from inspector.core.label_font import draw_text

__all__ = [
    "DEFECT_KINDS", "good_part", "iter_parts", "match_truth", "render_part", "save_coco",
    "write_coco", "write_png",
]
_SUB = 4  # cv2 fixed-point shift for sub-pixel drawing (1/16 px)


def _scale(width: int, height: int) -> float:
    """Geometry is designed for 512 x 512 and scales with the shorter side."""
    return min(width, height) / 512.0


@lru_cache(maxsize=8)
def _layout(width: int, height: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Ink coverage of the print (0..1), hole shading map, and the print's bounding box.

    Drawn once per frame size at a margin so that per-part jitter can shift it.
    """
    s = _scale(width, height)
    ink = np.zeros((height, width), np.uint8)
    x0, y0 = int(0.10 * width), int(0.20 * height)
    # Text in the project's own stroke font (OpenCV's text renderer changes between
    # releases), in the boxes and stroke widths that cv2.putText's Hershey Simplex had.
    draw_text(ink, "INSPECTOR", (x0 + 3 * s, y0 - 31 * s, x0 + 245 * s, y0), 7.15 * s)
    y1 = y0 + int(40 * s)
    draw_text(ink, "PN 4711-0815  LOT 23", (x0 + 2 * s, y1 - 15 * s, x0 + 237 * s, y1),
              3.8 * s)
    cx, cy, r = int(0.80 * width), int(0.17 * height), int(34 * s)
    cv2.circle(ink, (cx, cy), r, 255, max(1, round(6 * s)), cv2.LINE_AA)
    tri = np.array([[cx, cy - r // 2], [cx - r // 2, cy + r // 3], [cx + r // 2, cy + r // 3]])
    cv2.fillPoly(ink, [tri.astype(np.int32)], 255, cv2.LINE_AA)
    # A fixed 12 x 12 "data matrix": L-shaped finder plus a seeded bit pattern.
    bits = np.random.default_rng(4711).random((12, 12)) < 0.5
    bits[:, 0] = True
    bits[-1, :] = True
    bits[0, ::2] = True
    bits[::2, -1] = True
    cell = max(1, int(6 * s))
    mx, my = int(0.12 * width), int(0.70 * height)
    for (i, j) in zip(*np.nonzero(bits), strict=True):
        cv2.rectangle(
            ink, (mx + j * cell, my + i * cell), (mx + (j + 1) * cell - 1, my + (i + 1) * cell - 1),
            255, -1,
        )
    cov = ink.astype(np.float32) / 255.0
    ys, xs = np.nonzero(ink)
    box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    # Machined hole: dark bore with a bright chamfer ring.
    hole = np.zeros((height, width), np.float32)
    hx, hy, hr = int(0.74 * width), int(0.72 * height), int(40 * s)
    cv2.circle(hole, (hx, hy), hr + max(1, int(6 * s)), 0.35, -1, cv2.LINE_AA)
    cv2.circle(hole, (hx, hy), hr, -0.75, -1, cv2.LINE_AA)
    hole = cv2.GaussianBlur(hole, (0, 0), 1.2)
    for a in (cov, hole):
        a.setflags(write=False)
    return cov, hole, box


def hole_circle(width: int, height: int) -> tuple[float, float, float]:
    """Centre and radius (with chamfer) of the machined hole, where no defect is placed."""
    s = _scale(width, height)
    return 0.74 * width, 0.72 * height, 46 * s


def _shift_axis(a: np.ndarray, d: float, axis: int) -> np.ndarray:
    """Bilinear shift by `d` pixels along `axis`, zeros shifted in: out[i] = a[i - d]."""
    i = int(np.floor(d))
    f = np.float32(d - i)
    n = a.shape[axis]
    pad = [(0, 0), (0, 0)]
    pad[axis] = (abs(i) + 1, abs(i) + 1)
    p = np.pad(a, pad)
    lo = abs(i) + 1 - i  # p[lo + k] == a[k - i]
    take = np.take(p, range(lo, lo + n), axis=axis)
    prev = np.take(p, range(lo - 1, lo - 1 + n), axis=axis)  # a[k - i - 1]
    return (np.float32(1) - f) * take + f * prev


def _shifted(a: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Sub-pixel translation in NumPy: cv2.warpAffine's rounding changed between OpenCV
    4.12, 5.0 and 5.1, and the committed demo recipe must match the generator's bits."""
    return _shift_axis(_shift_axis(a, dx, 1), dy, 0).astype(np.float32, copy=False)


def _surface(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Brushed metal: base level, smooth shading and horizontal grain, varying per part."""
    s = _scale(w, h)
    base = rng.uniform(125, 155)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = rng.uniform(-12, 12, 2)
    img = base + gx * (xx / w - 0.5) + gy * (yy / h - 0.5)
    bx, by = rng.uniform(0, 1, 2)
    amp, sig = rng.uniform(-10, 10), rng.uniform(0.35, 0.6) * max(w, h)
    img += amp * np.exp(-((xx - bx * w) ** 2 + (yy - by * h) ** 2) / (2 * sig * sig))
    streak = rng.standard_normal((h, w), dtype=np.float32)
    streak = cv2.GaussianBlur(streak, (0, 0), sigmaX=6 * s + 0.5, sigmaY=0.6)
    streak *= rng.uniform(3.0, 4.5) / max(float(streak.std()), 1e-6)
    img += streak
    img += rng.standard_normal((h, w), dtype=np.float32) * rng.uniform(2.0, 3.0)
    return img.astype(np.float32)


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def _fp(pts: np.ndarray) -> np.ndarray:
    """Float points to cv2 fixed-point int32 for sub-pixel drawing."""
    return np.round(pts * (1 << _SUB)).astype(np.int32)


def _scratch(rng: np.random.Generator, w: int, h: int, s: float) -> np.ndarray:
    """A thin smooth curve (quadratic Bezier) of alpha 1."""
    length = rng.uniform(60, 180) * s
    p0 = rng.uniform([0.08 * w, 0.08 * h], [0.92 * w, 0.92 * h])
    ang = rng.uniform(0, np.pi)
    d = np.array([np.cos(ang), np.sin(ang)]) * length
    bend = np.array([-d[1], d[0]]) * rng.uniform(-0.25, 0.25)
    t = np.linspace(0, 1, 40)[:, None]
    p2, p1 = p0 + d, p0 + d / 2 + bend
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t * t * p2
    a = np.zeros((h, w), np.uint8)
    cv2.polylines(a, [_fp(pts)], False, 255, int(rng.integers(1, 3)), cv2.LINE_AA, _SUB)
    return cv2.GaussianBlur(a.astype(np.float32) / 255.0, (0, 0), 0.6)


def _pit(rng: np.random.Generator, w: int, h: int, s: float) -> np.ndarray:
    c = rng.uniform([0.05 * w, 0.05 * h], [0.95 * w, 0.95 * h])
    r = rng.uniform(2.5, 5.5) * s
    a = np.zeros((h, w), np.uint8)
    cv2.circle(a, tuple(int(v) for v in _fp(c)), int(r * (1 << _SUB)), 255, -1, cv2.LINE_AA, _SUB)
    return cv2.GaussianBlur(a.astype(np.float32) / 255.0, (0, 0), 0.8)


def _crack(rng: np.random.Generator, w: int, h: int, s: float) -> np.ndarray:
    """A jagged random walk with one or two branches."""
    a = np.zeros((h, w), np.uint8)
    start = rng.uniform([0.1 * w, 0.1 * h], [0.9 * w, 0.9 * h])
    heading = rng.uniform(0, 2 * np.pi)

    def walk(p: np.ndarray, ang: float, n: int) -> np.ndarray:
        pts = [p]
        for _ in range(n):
            ang += rng.uniform(-0.7, 0.7)
            step = rng.uniform(3, 6) * s
            pts.append(pts[-1] + step * np.array([np.cos(ang), np.sin(ang)]))
        return np.array(pts)

    trunk = walk(start, heading, int(rng.integers(12, 24)))
    lines = [trunk]
    for _ in range(int(rng.integers(1, 3))):
        k = int(rng.integers(2, len(trunk) - 2))
        side = rng.choice([-1.0, 1.0])
        branch = heading + side * rng.uniform(0.5, 1.1)
        lines.append(walk(trunk[k], branch, int(rng.integers(4, 10))))
    cv2.polylines(a, [_fp(p) for p in lines], False, 255, 1, cv2.LINE_AA, _SUB)
    return cv2.GaussianBlur(a.astype(np.float32) / 255.0, (0, 0), 0.5)


def _stain(rng: np.random.Generator, w: int, h: int, s: float) -> np.ndarray:
    """A soft irregular blotch: a few overlapping blurred ellipses."""
    c = rng.uniform([0.12 * w, 0.12 * h], [0.88 * w, 0.88 * h])
    r = rng.uniform(16, 38) * s
    a = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(2, 4))):
        o = c + rng.uniform(-0.5, 0.5, 2) * r
        axes = (max(2, int(r * rng.uniform(0.5, 0.9))), max(2, int(r * rng.uniform(0.35, 0.7))))
        cv2.ellipse(a, (int(o[0]), int(o[1])), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    a = cv2.GaussianBlur(a, (0, 0), max(1.0, r / 4))
    return a / max(float(a.max()), 1e-6)


def _erase(rng: np.random.Generator, cov: np.ndarray, w: int, h: int, s: float) -> np.ndarray:
    """Where ink is scraped off: a blob centred on an inked pixel (alpha 1 = fully removed)."""
    ys, xs = np.nonzero(cov > 0.5)
    i = int(rng.integers(len(xs)))
    a = np.zeros((h, w), np.float32)
    axes = (int(rng.uniform(10, 26) * s) + 1, int(rng.uniform(7, 18) * s) + 1)
    cv2.ellipse(a, (int(xs[i]), int(ys[i])), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
    return cv2.GaussianBlur(a, (0, 0), 1.0)


_SHAPES = {"scratch": _scratch, "pit": _pit, "crack": _crack, "stain": _stain}
_TRUTH_LEVEL = {"scratch": 0.3, "pit": 0.3, "crack": 0.3, "stain": 0.35, "missing_print": 0.3}


def render_part(
    rng: np.random.Generator,
    width: int = 512,
    height: int = 512,
    kinds: Sequence[str] = DEFECT_KINDS,
    defect_rate: float = 0.5,
    max_defects: int = 2,
    out: np.ndarray | None = None,
    *,
    defects: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[DefectTruth]]:
    """Render one mono uint8 part; with probability `defect_rate` it carries 1..max defects.

    Writes into `out` (H x W uint8) when given, so a source can fill a pool buffer.
    `defects` asks for exactly these kinds instead (a prompt bank wants one of each).
    Defects never touch each other or the hole, so every truth mask is one defect; one
    that finds no free place in 20 tries is left out.
    """
    unknown = set(defects if defects is not None else kinds) - set(DEFECT_KINDS)
    if unknown:
        raise ValueError(f"unknown defect kinds: {sorted(unknown)}")
    w, h, s = width, height, _scale(width, height)
    cov0, hole, _ = _layout(w, h)
    dx, dy = rng.uniform(-6, 6, 2) * s
    cov = _shifted(cov0, dx, dy)
    img = _surface(rng, w, h)
    img *= 1.0 + _shifted(hole, dx, dy)
    hx, hy, hr = hole_circle(w, h)
    yy, xx = np.ogrid[0:h, 0:w]
    taken = ((xx - hx - dx) ** 2 + (yy - hy - dy) ** 2) <= (hr + 4 * s) ** 2

    if defects is None:
        n = int(rng.integers(1, max_defects + 1)) if kinds and rng.random() < defect_rate else 0
        defects = [str(rng.choice(list(kinds))) for _ in range(n)]
    truths: list[DefectTruth] = []
    effects: list[tuple[str, np.ndarray, float]] = []
    for kind in defects:
        for _attempt in range(20):
            alpha = _erase(rng, cov, w, h, s) * cov if kind == "missing_print" else (
                _SHAPES[kind](rng, w, h, s))
            mask = alpha > _TRUTH_LEVEL[kind]
            if mask.sum() < 6 or (kind == "missing_print" and mask.sum() < 40 * s * s):
                continue
            grown = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
            if (grown & taken).any():
                continue
            taken |= grown
            truths.append(DefectTruth(kind, _bbox(mask), mask))
            effects.append((kind, alpha, _amplitude(rng, kind)))
            break

    for kind, alpha, amp in effects:
        if kind == "stain":
            img *= 1.0 + amp * alpha
        elif kind == "missing_print":
            cov = cov - alpha
    img *= 1.0 - 0.62 * cov
    for kind, alpha, amp in effects:
        if kind in ("scratch", "pit", "crack"):
            img += amp * alpha
    img += rng.standard_normal((h, w), dtype=np.float32) * 1.5
    np.clip(img, 0, 255, out=img)
    if out is None:
        out = np.empty((h, w), np.uint8)
    elif out.shape != (h, w) or out.dtype != np.uint8:
        raise ValueError(f"out must be uint8 {(h, w)}, got {out.dtype} {out.shape}")
    np.rint(img, out=img)
    np.copyto(out, img, casting="unsafe")
    return out, truths


def _amplitude(rng: np.random.Generator, kind: str) -> float:
    """Contrast of each kind: a little above the grain (std ~5 grey levels)."""
    if kind == "scratch":
        return float(rng.uniform(22, 38))  # burnished: brighter than the surface
    if kind == "pit":
        return float(-rng.uniform(30, 55))
    if kind == "crack":
        return float(-rng.uniform(28, 48))
    if kind == "stain":
        return float(rng.choice([-1.0, 1.0]) * rng.uniform(0.11, 0.18))  # relative
    return 1.0


def good_part(rng: np.random.Generator, width: int = 512, height: int = 512) -> np.ndarray:
    """A defect-free part (for a recipe's normal/ folder)."""
    return render_part(rng, width, height, defect_rate=0.0)[0]


def frame_rng(seed: int, index: int) -> np.random.Generator:
    """Independent generator for frame `index` of stream `seed`, so any frame is reproducible."""
    return np.random.default_rng([seed, index])


def iter_parts(
    n: int, seed: int, width: int = 512, height: int = 512,
    kinds: Sequence[str] = DEFECT_KINDS, defect_rate: float = 0.5, max_defects: int = 2,
) -> Iterator[tuple[np.ndarray, list[DefectTruth]]]:
    """The first `n` parts of stream `seed`: the same parts SyntheticSource delivers."""
    for i in range(n):
        yield render_part(frame_rng(seed, i), width, height, kinds, defect_rate, max_defects)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def match_truth(truths: Sequence[DefectTruth], dets: Sequence, min_iou: float = 0.1
                ) -> list[tuple[int, int]]:
    """Pair truths with detections (anything with a `bbox`) one-to-one, greedily by highest
    box IoU >= `min_iou`; returns (truth index, detection index) pairs."""
    pairs = sorted(
        ((box_iou(t.bbox, d.bbox), i, j) for i, t in enumerate(truths) for j, d in enumerate(dets)),
        reverse=True,
    )
    used_t, used_d, out = set(), set(), []
    for iou, i, j in pairs:
        if iou < min_iou:
            break
        if i not in used_t and j not in used_d:
            used_t.add(i)
            used_d.add(j)
            out.append((i, j))
    return out


def coco_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a bool mask, JSON-ready."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def write_png(path: Path, image: np.ndarray) -> None:
    """PNG with the zlib "filtered" strategy: ~10 % smaller on grainy images."""
    png = [cv2.IMWRITE_PNG_COMPRESSION, 9, cv2.IMWRITE_PNG_STRATEGY,
           cv2.IMWRITE_PNG_STRATEGY_FILTERED]
    if not cv2.imwrite(str(path), image, png):
        raise OSError(f"cannot write {path}")


def save_coco(
    folder: Path,
    samples: Sequence[tuple[np.ndarray, list[DefectTruth]]],
    json_name: str = "annotations.json",
    images_dir: str = "images",
    names: Sequence[str] | None = None,
    prompt_ids: bool = False,
) -> Path:
    """Write images as PNG and one COCO json (RLE masks; file_name relative to images_dir).

    With `prompt_ids`, each annotation gets a stable `prompt_id` (`<kind>-<n>`), as a
    recipe prompt bank wants.
    """
    folder = Path(folder)
    img_folder = folder / images_dir
    img_folder.mkdir(parents=True, exist_ok=True)
    cats = [{"id": i + 1, "name": k, "supercategory": "defect"} for i, k in enumerate(DEFECT_KINDS)]
    cat_id = {c["name"]: c["id"] for c in cats}
    images, anns, per_kind = [], [], dict.fromkeys(DEFECT_KINDS, 0)
    for i, (img, truths) in enumerate(samples):
        name = names[i] if names else f"part_{i:05d}.png"
        write_png(img_folder / name, img)
        images.append(
            {"id": i + 1, "file_name": name, "width": img.shape[1], "height": img.shape[0]}
        )
        for t in truths:
            ann = {
                "id": len(anns) + 1, "image_id": i + 1, "category_id": cat_id[t.kind],
                "bbox": [int(v) for v in t.bbox], "area": int(t.mask.sum()),
                "segmentation": coco_rle(t.mask), "iscrowd": 0,
            }
            if prompt_ids:
                per_kind[t.kind] += 1
                ann["prompt_id"] = f"{t.kind}-{per_kind[t.kind]}"
            anns.append(ann)
    path = folder / json_name
    coco = {"info": {"description": "Inspector synthetic parts"}, "images": images,
            "annotations": anns, "categories": cats}
    path.write_text(json.dumps(coco, indent=1), encoding="utf-8")
    return path


def write_coco(
    folder: Path, n_images: int, seed: int, width: int = 512, height: int = 512,
    kinds: Sequence[str] = DEFECT_KINDS, defect_rate: float = 0.7, max_defects: int = 2,
) -> Path:
    """A small COCO dataset of synthetic parts (folder/annotations.json + folder/images/)."""
    samples = list(iter_parts(n_images, seed, width, height, kinds, defect_rate, max_defects))
    return save_coco(folder, samples)
