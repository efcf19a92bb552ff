"""The committed demo assets are what the generator draws, and git holds no build products.

The demo recipe's images are compared with a fresh rendering pixel by pixel. A drift such
as OpenCV 5.1's new text anti-aliasing (2.4 % of pixels, up to 97 grey levels) fails here.
A tolerance of one grey level on at most 0.01 % of the pixels is left for float rounding
that NumPy's CPU-specific SIMD paths (AVX2, AVX-512) may put on a .5 boundary.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core.label_font import draw_text
from inspector.demo.recipe import write_demo_recipe
from inspector.recipes.recipe import load_recipe

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "recipes" / "demo"


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and "cache" not in p.relative_to(folder).parts)


def pixel_drift(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """Largest grey-level difference and the share of pixels that differ at all."""
    if a.shape != b.shape:
        return 255, 1.0
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()), float((d > 0).mean())


def test_generator_reproduces_the_committed_demo_recipe(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    write_demo_recipe(out)
    assert _files(out) == _files(DEMO)
    for rel in _files(DEMO):
        if rel.endswith(".png"):
            mine = cv2.imread(str(out / rel), cv2.IMREAD_UNCHANGED)
            committed = cv2.imread(str(DEMO / rel), cv2.IMREAD_UNCHANGED)
            worst, share = pixel_drift(mine, committed)
            assert worst <= 1 and share <= 1e-4, (
                f"{rel}: the generator drifted from recipes/demo (max {worst} grey levels, "
                f"{share:.2%} of pixels); run scripts/make_demo_recipe.py on purpose")
        elif rel.endswith(".json"):
            assert json.loads((out / rel).read_text()) == json.loads((DEMO / rel).read_text())
        else:
            assert (out / rel).read_bytes() == (DEMO / rel).read_bytes(), rel


def test_drift_check_sees_a_small_change(tmp_path: Path) -> None:
    """The comparison above is not blind: one changed label pixel is caught."""
    img = cv2.imread(str(DEMO / "normal" / "good_000.png"), cv2.IMREAD_UNCHANGED)
    changed = img.copy()
    changed[100, 100] = np.uint8((int(img[100, 100]) + 5) % 256)
    worst, share = pixel_drift(changed, img)
    assert worst == 5 and share == pytest.approx(1 / img.size)
    assert pixel_drift(img, img) == (0, 0.0)


def test_demo_recipe_loads_with_a_stable_hash(tmp_path: Path) -> None:
    copy = tmp_path / "demo"
    shutil.copytree(DEMO, copy, ignore=shutil.ignore_patterns("cache"))
    assert load_recipe(copy).sha256 == load_recipe(DEMO).sha256


def test_label_font_fills_its_box_and_refuses_unknown_characters() -> None:
    ink = np.zeros((60, 200), np.uint8)
    draw_text(ink, "LOT 23", (10.0, 12.0, 150.0, 40.0), 3.5)
    ys, xs = np.nonzero(ink >= 128)  # half coverage reaches the box's edges
    assert (xs.min(), ys.min(), xs.max(), ys.max()) in [
        (x0, y0, x1, y1) for x0 in (10, 11) for y0 in (12, 13) for x1 in (149, 150)
        for y1 in (39, 40)]
    assert ink[:, :9].max() == 0 and ink[:11].max() == 0 and ink[42:].max() == 0
    assert len(np.unique(ink)) > 10  # anti-aliased edges
    before = ink.copy()
    with pytest.raises(KeyError, match="'Z'"):
        draw_text(ink, "ZIP", (0.0, 0.0, 50.0, 20.0), 2.0)
    assert (ink == before).all()


def test_git_holds_no_build_products() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    bad = [f for f in files if "__pycache__" in f.split("/")
           or f.endswith((".pyc", ".nbi", ".nbc", ".egg-info"))]
    assert bad == []
