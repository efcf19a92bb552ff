"""Class probabilities of detected regions from prompt-region prototypes."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.inference.detectors.region_class import RegionClasses, box_sums
from inspector.inference.unknown.features import STRIDE


def test_box_sums_are_the_sums_of_the_overlapped_tokens():
    rng = np.random.default_rng(0)
    grid = rng.normal(size=(9, 11, 3)).astype(np.float32)
    boxes = np.array([[0, 0, 8, 8], [5, 9, 20, 3], [70, 60, 30, 30], [13, 17, 1, 1]], float)
    got = box_sums(grid, boxes, 1.0)
    for b, row in zip(boxes, got, strict=True):
        x0, y0 = int(b[0] // STRIDE), int(b[1] // STRIDE)
        x1 = max(x0 + 1, min(11, int(np.ceil((b[0] + b[2]) / STRIDE))))
        y1 = max(y0 + 1, min(9, int(np.ceil((b[1] + b[3]) / STRIDE))))
        np.testing.assert_allclose(row, grid[y0:y1, x0:x1].sum((0, 1)), rtol=1e-5, atol=1e-5)
    # a grid of the frame halved: boxes are scaled into it
    np.testing.assert_allclose(box_sums(grid, np.array([[16, 16, 16, 16]]), 0.5)[0],
                               grid[1, 1], rtol=1e-6)


def two_textures() -> np.ndarray:
    """8 x 16 token grid: left half one texture (tokens near e0), right half another."""
    rng = np.random.default_rng(1)
    grid = rng.normal(0, 0.1, (8, 16, 4)).astype(np.float32)
    grid[:, :8, 0] += 1.0
    grid[:, 8:, 1] += 1.0
    return grid


def test_a_region_is_given_the_class_whose_prompts_it_resembles():
    grid = two_textures()
    rc = RegionClasses(tau=0.05)
    rc.fit([(grid, 1.0, (0, 0, 32, 32), "pit"), (grid, 1.0, (80, 8, 32, 32), "scratch")])
    boxes = np.array([[8, 24, 24, 24], [8, 24, 24, 24], [96, 32, 16, 16]], float)
    p = rc.probabilities(grid, 1.0, boxes, ["pit", "scratch", "pit"])
    assert p[0] > 0.9 and p[1] < 0.1 and p[2] < 0.1
    assert np.isclose(p[0] + p[1], 1.0)
    one = RegionClasses(tau=0.05)  # one class: nothing to choose between
    one.fit([(grid, 1.0, (0, 0, 32, 32), "pit")])
    assert np.all(one.probabilities(grid, 1.0, boxes, ["pit"] * 3) == 1.0)
    with pytest.raises(ValueError, match="2 prototypes for 1 class"):
        RegionClasses(0.05).set(rc.protos, ["pit"])
