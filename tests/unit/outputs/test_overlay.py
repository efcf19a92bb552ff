"""Overlays for people: counted defects bold in class colour, candidates hidden, labels
inside the image and apart, a banner with the failing rule and a legend."""

from __future__ import annotations

import numpy as np

from inspector.core.result import Result
from inspector.outputs.overlay import CANDIDATE, NG_RED, UNKNOWN, _place, class_colour, draw
from tests.helpers.mqtt_fixtures import make_result


def _result(defects: list[dict]) -> Result:
    doc = make_result("s", 4, ok=False).payload()
    doc["defects"] = [{"class": "scratch", "score": 0.9, "bbox": [10.0, 10.0, 20.0, 8.0],
                       "area_px": 160.0, "area_mm2": 0.4, "prompt_id": None, "unknown": False,
                       "accepted": True, "mask": None, **d} for d in defects]
    doc["reasons"] = ["scratch: 1 found, at most 0 allowed (score >= 0.5, area >= 0.1 mm2)"]
    return Result.model_validate(doc)


def test_candidates_are_hidden_unless_asked_for() -> None:
    img = np.full((120, 160), 128, np.uint8)
    res = _result([{"bbox": [100.0, 60.0, 30.0, 30.0], "accepted": False, "score": 0.2}])
    hidden, shown = draw(img, res), draw(img, res, candidates=True)
    assert hidden.shape == shown.shape and hidden.shape[1] == 160
    grey = np.all(shown == CANDIDATE, axis=2).sum()
    assert grey > 0 and np.all(hidden == CANDIDATE, axis=2).sum() < grey


def test_counted_defects_are_drawn_in_their_class_colour_and_ng_is_red() -> None:
    img = np.full((120, 160), 128, np.uint8)
    res = _result([{"class": "pit"}, {"class": "blob", "unknown": True,
                                    "bbox": [80.0, 70.0, 20.0, 20.0]}])
    out = draw(img, res)
    assert np.all(out == class_colour("pit"), axis=2).sum() > 20
    assert np.all(out == UNKNOWN, axis=2).sum() > 20
    assert np.all(out[2] == NG_RED, axis=1).mean() > 0.5  # the banner
    assert class_colour("unknown") == UNKNOWN and NG_RED not in [class_colour(n) for n in
                                                                 ("a", "b", "c", "pit")]


def test_labels_stay_inside_the_image_and_apart() -> None:
    taken: list[tuple[int, int, int, int]] = []
    for _ in range(6):  # six defects in one corner (seven labels fit in 120 px)
        x, y = _place((2, 2, 10, 10), (90, 14), (120, 160), taken)
        assert 0 <= x <= 160 - 90 and 0 <= y <= 120 - 14
        rect = (x, y, 90, 14)
        assert not any(rect[0] < r[0] + r[2] and r[0] < rect[0] + rect[2]
                       and rect[1] < r[1] + r[3] and r[1] < rect[1] + rect[3] for r in taken)
        taken.append(rect)
