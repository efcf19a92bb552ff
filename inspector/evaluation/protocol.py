"""Prompt drawing for evaluation: per class, k instances from k distinct train images.

Seeded and independent of the order classes are listed in: class `c` with seed `s`
uses the generator `default_rng([s, c])`. Images and instances are sorted by id first,
so the same dataset and seed always give the same prompts.
"""

from __future__ import annotations

import numpy as np


def draw_prompts(train: dict, shots: int, seed: int) -> dict[int, list[dict]]:
    """category id -> up to `shots` annotations of the train split, one per image."""
    if not 1 <= shots <= 4:
        raise ValueError(f"shots must be 1..4 (the protocol allows k <= 4), got {shots}")
    by_cat: dict[int, dict[int, list[dict]]] = {}
    for a in sorted(train["annotations"], key=lambda a: a["id"]):
        by_cat.setdefault(a["category_id"], {}).setdefault(a["image_id"], []).append(a)
    out = {}
    for cat in sorted(c["id"] for c in train["categories"]):
        images = sorted(by_cat.get(cat, {}))
        if not images:
            continue
        rng = np.random.default_rng([seed, cat])
        picked = rng.choice(len(images), min(shots, len(images)), replace=False)
        out[cat] = []
        for i in sorted(int(p) for p in picked):
            anns = by_cat[cat][images[i]]
            out[cat].append(anns[int(rng.integers(len(anns)))])
    return out
