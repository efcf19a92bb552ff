"""Small recipes and station configs written to tmp folders, for any test."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]  # the checkout

RECIPE = {
    "id": "test-part",
    "rev": 3,
    "product": "Test part",
    "mm_per_px": 0.1,
    "classes": [
        {"name": "scratch", "threshold": 0.5, "min_area_mm2": 1.0, "max_count": 0,
         "severity": "major", "plc_code": 11},
        {"name": "pit", "threshold": 0.6, "min_area_mm2": 0.0, "max_count": 2,
         "severity": "minor", "plc_code": 12},
        {"name": "crack", "threshold": 0.4, "severity": "critical", "plc_code": 13},
    ],
    "unknown": {"enabled": True, "threshold": 0.7, "plc_code": 90},
}


def write_recipe(folder: Path, recipe: dict | None = None, n_normal: int = 3) -> Path:
    """A valid recipe folder with one prompt per class on noise images."""
    recipe = json.loads(json.dumps(recipe or RECIPE))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prompts").mkdir(exist_ok=True)
    (folder / "normal").mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    cats = [{"id": i + 1, "name": c["name"]} for i, c in enumerate(recipe["classes"])]
    images, anns = [], []
    for i, cat in enumerate(cats):
        img = rng.integers(90, 110, (64, 64), dtype=np.uint8)
        cv2.imwrite(str(folder / "prompts" / f"p{i}.png"), img)
        images.append({"id": i + 1, "file_name": f"p{i}.png", "width": 64, "height": 64})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": cat["id"],
                     "bbox": [10, 10, 20, 8], "prompt_id": f"{cat['name']}-1"})
    (folder / "prompts" / "prompts.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    for i in range(n_normal):
        cv2.imwrite(str(folder / "normal" / f"good{i}.png"),
                    rng.integers(90, 110, (64, 64), dtype=np.uint8))
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return folder


def write_config(path: Path, recipe: Path, **overrides) -> Path:
    cfg = {
        "station": {"site": "plant1", "line": "line3", "station": "st2"},
        "cameras": [{"name": "cam0", "source": {"kind": "synthetic", "seed": 1, "count": 5,
                                                 "width": 128, "height": 128}}],
        "recipe": str(recipe),
        "storage": {"state_dir": str(path.parent / "state")},
    }
    cfg.update(overrides)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
