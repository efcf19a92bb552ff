"""Domain-randomised training parts: many made-up products, each with its own defect kinds.

Why: the prompt heads learn the textures of the few domains they are trained on and do not
transfer to a product they never saw (docs/prompt-matching.md). A customer's product is
always such a product. Here each seed makes one "micro-domain": a surface (a random mix of
shading, grain, streaks, blotches, a grating, and sometimes a part edge) and 2 to 4 defect
kinds drawn from shape families (blob, crack, scratch, region, cluster, edge chip), each
with its own size range, polarity, contrast and softness. Every image of the domain draws
its surface again with the same parameters and carries 0 to 3 defects of the domain's
kinds, so an episode that prompts with one image and queries another asks what a line
asks: "find more of this, on this surface". Contrast is set in units of the surface's own
spread, so some defects are barely above the texture, as real ones are.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

FAMILIES = ("blob", "crack", "scratch", "region", "cluster", "chip")


@dataclass
class Kind:
    """One defect kind of a micro-domain."""

    name: str
    family: str
    size: tuple[float, float]  # px: radius (blob, region, cluster), length (crack, scratch)
    width: float  # px: line width (crack, scratch), aspect (blob)
    polarity: float  # +1 brighter, -1 darker
    contrast: float  # in units of the surface's spread
    soft: float  # px: edge blur


@dataclass
class Domain:
    """A made-up product: its surface parameters and its defect kinds."""

    base: float
    parts: dict[str, tuple[float, ...]]  # surface component -> its parameters
    edge: tuple[float, float, float] | None  # (angle, offset, level step) of a part edge
    kinds: list[Kind]


def _unit(a: np.ndarray) -> np.ndarray:
    a = a - a.mean()
    return a / max(float(a.std()), 1e-6)


def _line_kernel(length: int, angle: float) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    c = (length - 1) / 2
    dx, dy = np.cos(angle) * c, np.sin(angle) * c
    cv2.line(k, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1)
    return k / max(float(k.sum()), 1.0)


def make_domain(rng: np.random.Generator) -> Domain:
    """Draw one micro-domain's surface and defect kinds."""
    parts: dict[str, tuple[float, ...]] = {}
    if rng.random() < 0.8:
        parts["shading"] = (rng.uniform(20, 90), rng.uniform(4, 30))
    if rng.random() < 0.8:
        parts["grain"] = (rng.uniform(0.6, 3.0), rng.uniform(3, 18))
    if rng.random() < 0.5:
        parts["streaks"] = (float(rng.integers(9, 61)), rng.uniform(0, np.pi), rng.uniform(3, 18))
    if rng.random() < 0.4:
        parts["blotch"] = (rng.uniform(3, 14), rng.uniform(3, 14))
    if rng.random() < 0.25:
        parts["grating"] = (rng.uniform(4, 40), rng.uniform(0, np.pi), rng.uniform(2, 12))
    if not parts:
        parts["grain"] = (1.0, 8.0)
    edge = None
    if rng.random() < 0.35:
        edge = (rng.uniform(0, np.pi), rng.uniform(-0.35, 0.35),
                float(rng.choice([-1, 1]) * rng.uniform(25, 80)))
    families = [f for f in FAMILIES if f != "chip" or edge is not None]
    n = int(rng.integers(2, 5))
    picked = list(rng.choice(families, size=min(n, len(families)), replace=False))
    kinds = []
    for i, fam in enumerate(picked):
        if fam in ("blob", "cluster"):
            lo = rng.uniform(2, 12) if fam == "blob" else rng.uniform(12, 40)
        elif fam == "region":
            lo = rng.uniform(20, 70)
        elif fam == "chip":
            lo = rng.uniform(6, 25)
        else:
            lo = rng.uniform(25, 110)
        kinds.append(Kind(
            name=f"k{i}-{fam}", family=str(fam), size=(lo, lo * rng.uniform(1.3, 2.5)),
            width=float(rng.uniform(1, 3.5) if fam in ("crack", "scratch")
                        else rng.uniform(1, 2.2)),
            polarity=float(rng.choice([-1, 1], p=[0.65, 0.35])),
            contrast=float(rng.uniform(1.2, 2.5) if fam == "region" else rng.uniform(1.5, 6)),
            soft=float(rng.uniform(0.3, 2.5))))
    return Domain(float(rng.uniform(50, 200)), parts, edge, kinds)


def surface(dom: Domain, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray,
                                                                       float]:
    """One image's surface (float32), the part mask of its edge (1 = part) and the spread
    of its texture (the unit of defect contrast)."""
    tex = np.zeros((size, size), np.float32)
    for name, p in dom.parts.items():
        noise = rng.standard_normal((size, size)).astype(np.float32)
        if name in ("shading", "grain", "blotch"):
            comp = _unit(cv2.GaussianBlur(noise, (0, 0), p[0]))
            tex += p[-1] * (np.abs(comp) if name == "blotch" else comp)
        elif name == "streaks":
            comp = cv2.filter2D(noise, -1, _line_kernel(int(p[0]), float(p[1])))
            tex += p[2] * _unit(comp)
        else:  # grating
            yy, xx = np.mgrid[:size, :size].astype(np.float32)
            phase = rng.uniform(0, 2 * np.pi)
            t = xx * np.cos(p[1]) + yy * np.sin(p[1])
            tex += p[2] * np.sin(2 * np.pi * t / p[0] + phase).astype(np.float32)
    spread = max(float(tex.std()), 2.0)
    part = np.ones((size, size), np.float32)
    img = dom.base + tex
    if dom.edge is not None:
        ang, off, step = dom.edge
        yy, xx = np.mgrid[:size, :size].astype(np.float32) / size - 0.5
        d = xx * np.cos(ang) + yy * np.sin(ang) - off - rng.uniform(-0.05, 0.05)
        part = cv2.GaussianBlur((d < 0).astype(np.float32), (0, 0), 1.0)
        img = img + step * (1 - part)
    gain, shift = rng.uniform(0.85, 1.15), rng.uniform(-15, 15)
    return img * gain + shift, part, spread * gain


def _walk(rng: np.random.Generator, size: int, length: float, wiggle: float) -> np.ndarray:
    x, y = rng.uniform(0.15, 0.85, 2) * size
    ang = rng.uniform(0, 2 * np.pi)
    pts = [(x, y)]
    step = max(3.0, length / 12)
    for _ in range(12):
        ang += rng.normal(0, wiggle)
        x, y = x + step * np.cos(ang), y + step * np.sin(ang)
        pts.append((x, y))
    return np.array(pts, np.float32)


def defect_mask(kind: Kind, rng: np.random.Generator, size: int,
                part: np.ndarray) -> np.ndarray:
    """A soft (0..1) mask of one defect of `kind` somewhere on the image."""
    m = np.zeros((size, size), np.float32)
    r = rng.uniform(*kind.size)
    cx, cy = rng.uniform(0.1, 0.9, 2) * size
    if kind.family == "blob":
        axes = (max(1, round(r)), max(1, round(r / kind.width)))
        cv2.ellipse(m, (round(cx), round(cy)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1,
                    cv2.LINE_AA)
    elif kind.family in ("crack", "scratch"):
        wiggle = 0.45 if kind.family == "crack" else 0.03
        pts = _walk(rng, size, r, wiggle)
        cv2.polylines(m, [np.round(pts).astype(np.int32)], False, 1.0,
                      max(1, round(kind.width)), cv2.LINE_AA)
    elif kind.family == "region":
        blob = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32),
                                (0, 0), r / 3)
        yy, xx = np.mgrid[:size, :size].astype(np.float32)
        bump = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        hard = (bump * (1 + 0.45 * _unit(blob)) > 0.5).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(hard, connectivity=8)
        if n > 1:  # one region: the largest piece
            m = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.float32)
    elif kind.family == "cluster":
        for _ in range(int(rng.integers(4, 14))):
            px, py = cx + rng.normal(0, r / 2), cy + rng.normal(0, r / 2)
            cv2.circle(m, (round(px), round(py)), int(rng.integers(1, 4)), 1.0, -1,
                       cv2.LINE_AA)
    else:  # chip: a notch into the part along its edge
        edge = np.argwhere((part > 0.3) & (part < 0.7))
        if len(edge):
            y, x = edge[rng.integers(len(edge))]
            cv2.ellipse(m, (int(x), int(y)), (max(2, round(r)), max(2, round(r * 0.6))),
                        rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
            m = m * (part > 0.5).astype(np.float32)
    if kind.soft > 0.4:
        m = cv2.GaussianBlur(m, (0, 0), kind.soft)
    return np.clip(m, 0, 1)


def render(dom: Domain, rng: np.random.Generator, size: int = 320
           ) -> tuple[np.ndarray, list[tuple[str, tuple[float, float, float, float],
                                             np.ndarray]]]:
    """One image of the domain: (mono uint8, [(kind name, xywh box, bool mask)])."""
    img, part, spread = surface(dom, rng, size)
    n = int(rng.choice(4, p=[0.1, 0.55, 0.25, 0.1]))
    out = []
    for _ in range(n):
        kind = dom.kinds[int(rng.integers(len(dom.kinds)))]
        m = defect_mask(kind, rng, size, part)
        hard = m > 0.5
        if hard.sum() < 6:
            continue
        if kind.family == "chip":  # the part is missing there: the background shows
            img = img * (1 - m) + (img - (dom.edge[2] if dom.edge else 0)) * m
        else:
            amp = kind.polarity * kind.contrast * spread
            if kind.family == "region" and rng.random() < 0.5:  # a texture change too
                mean = cv2.GaussianBlur(img, (0, 0), 6)
                img = img + (rng.uniform(0.2, 2.5) - 1) * (img - mean) * m
            img = img + amp * m
        ys, xs = np.nonzero(hard)
        box = (float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1),
               float(ys.max() - ys.min() + 1))
        out.append((kind.name, box, hard))
    return np.clip(img, 0, 255).astype(np.uint8), out


def domain(seed: int) -> Domain:
    """Micro-domain `seed`: its surface and defect kinds (its images draw their own
    generators, so the domain does not depend on how many images are rendered)."""
    return make_domain(np.random.default_rng([seed, 0x5EED]))


def domain_images(seed: int, n: int, size: int = 320
                  ) -> Iterator[tuple[np.ndarray, list[tuple[str, tuple, np.ndarray]]]]:
    """The `n` images of micro-domain `seed` (deterministic for the seed)."""
    dom = domain(seed)
    for i in range(n):
        yield render(dom, np.random.default_rng([seed, i]), size)


def randomised_samples(seed: int, n: int, size: int = 320):
    """Yield (name, Sample) of micro-domain `seed`'s `n` images (episodes.Source)."""
    from inspector.training.episodes import Instance, Sample

    for i, (img, found) in enumerate(domain_images(seed, n, size)):
        yield f"rnd-{seed}-{i}", Sample(img, [Instance(k, box, m) for k, box, m in found])
