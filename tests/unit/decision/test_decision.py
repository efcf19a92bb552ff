"""Decision rules: thresholds, minimum area in mm², max count, severity order, unknown."""

from __future__ import annotations

from pathlib import Path

from inspector.decision.verdict import decide
from inspector.inference.detectors.base import Detection
from inspector.recipes.recipe import load_recipe


def det(cls: str, score: float, area_px: float, unknown: bool = False) -> Detection:
    return Detection(cls=cls, score=score, bbox=(0, 0, 10, 10), area_px=area_px,
                     unknown=unknown)


def test_no_detections_is_ok(recipe_dir: Path) -> None:
    v = decide([], load_recipe(recipe_dir), 0.1)
    assert (v.ok, v.code, v.reasons, v.score) == (True, 0, [], 0.0)


def test_threshold_and_min_area(recipe_dir: Path) -> None:
    r = load_recipe(recipe_dir)  # scratch: threshold 0.5, min 1.0 mm2 at 0.1 mm/px = 100 px
    v = decide([det("scratch", 0.49, 500), det("scratch", 0.9, 99)], r, 0.1)
    assert v.ok and v.accepted == [False, False]
    assert v.score == 0.9  # no counted defect: the part score is the highest seen
    v = decide([det("scratch", 0.5, 100)], r, 0.1)
    assert not v.ok and v.code == 11 and v.accepted == [True]
    assert v.reasons == ["scratch: 1 found, at most 0 allowed (score >= 0.5, area >= 1.0 mm2)"]


def test_max_count(recipe_dir: Path) -> None:
    r = load_recipe(recipe_dir)  # pit: max_count 2
    assert decide([det("pit", 0.9, 5)] * 2, r, 0.1).ok
    v = decide([det("pit", 0.9, 5)] * 3, r, 0.1)
    assert not v.ok and v.code == 12


def test_most_severe_rule_gives_the_code(recipe_dir: Path) -> None:
    r = load_recipe(recipe_dir)
    v = decide([det("pit", 0.9, 5)] * 3 + [det("crack", 0.45, 1), det("scratch", 0.9, 200)],
               r, 0.1)
    assert not v.ok and v.code == 13  # crack is critical
    assert [s.split(":")[0] for s in v.reasons] == ["crack", "scratch", "pit"]


def test_unknown_defects(recipe_dir: Path) -> None:
    r = load_recipe(recipe_dir)  # unknown threshold 0.7, code 90
    assert decide([det("unknown", 0.69, 50, unknown=True)], r, 0.1).ok
    v = decide([det("unknown", 0.8, 50, unknown=True)], r, 0.1)
    assert not v.ok and v.code == 90 and "no prompt class explains" in v.reasons[0]
    r.unknown.enabled = False
    assert decide([det("unknown", 0.99, 50, unknown=True)], r, 0.1).ok


def test_class_not_in_recipe_is_not_counted(recipe_dir: Path) -> None:
    v = decide([det("dent", 0.99, 500)], load_recipe(recipe_dir), 0.1)
    assert v.ok and v.accepted == [False]
