"""The training-free prompt matcher (kind "match"): enrol, detect, restore, bad input."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from inspector.acquisition.synthetic_parts import box_iou, frame_rng, good_part, render_part
from inspector.inference.detectors import build_detector
from inspector.inference.detectors.base import PromptExample
from inspector.inference.detectors.match import (
    MAX_LEVEL,
    MatchDetector,
    box_tokens,
    coarse_level,
    pyramid,
)
from inspector.recipes.recipe import DetectorSettings
from tests.helpers.prompt_fixtures import synthetic_prompts

SIZE = 256


@pytest.fixture(scope="module")
def enrolled() -> MatchDetector:
    det = build_detector(DetectorSettings(kind="match", params={"orientations": 8}))
    assert isinstance(det, MatchDetector)
    normals = [good_part(frame_rng(32, i), SIZE, SIZE) for i in range(3)]
    det.enroll(synthetic_prompts(31, ("pit", "scratch"), SIZE), normals)
    return det


def test_finds_a_pit_where_it_is_and_names_it(enrolled: MatchDetector):
    found = 0
    for i in range(4):
        frame, truths = render_part(frame_rng(33, i), SIZE, SIZE, defects=["pit"])
        dets = enrolled.detect(frame)
        assert dets, "min_ncc 0.2 leaves some peak on a part with a pit"
        best = dets[0]
        assert 0 <= best.score <= 1 and best.cls in ("pit", "scratch")
        if best.cls == "pit" and box_iou(best.bbox, truths[0].bbox) >= 0.3:
            found += 1
    assert found >= 3, f"the best detection was the pit on {found} of 4 parts"
    assert set(enrolled.last_timing) == {"encode_ms", "head_ms"}


def test_a_good_part_scores_below_a_defective_one(enrolled: MatchDetector):
    clean = [max((d.score for d in enrolled.detect(good_part(frame_rng(34, i), SIZE, SIZE))
                  if d.cls == "pit"), default=0.0) for i in range(4)]
    bad = [max((d.score for d in enrolled.detect(
        render_part(frame_rng(33, i), SIZE, SIZE, defects=["pit"])[0]) if d.cls == "pit"),
        default=0.0) for i in range(4)]
    assert np.median(bad) > np.median(clean), (bad, clean)


def twice(image: np.ndarray) -> np.ndarray:
    """The image at twice its size: a camera with twice the resolution."""
    return cv2.resize(image, (image.shape[1] * 2, image.shape[0] * 2),
                      interpolation=cv2.INTER_LINEAR)


def test_large_frames_are_matched_shrunk_and_answered_in_their_own_pixels(
        enrolled: MatchDetector):
    """Frames above `max_side` (a camera with twice the resolution) are correlated shrunk
    to it, and the detections come back in the frame's own pixels, masks the size of
    their boxes."""
    prompts = [replace(ex, image=twice(ex.image), bbox=tuple(2 * v for v in ex.bbox),
                       mask=None if ex.mask is None else twice(ex.mask.astype(np.uint8)) > 0)
               for ex in synthetic_prompts(31, ("pit", "scratch"), SIZE)]
    shrunk = MatchDetector({"orientations": 8, "max_side": SIZE})
    shrunk.enroll(prompts, [twice(good_part(frame_rng(32, i), SIZE, SIZE)) for i in range(3)])
    # the templates are about the size of those of the same parts at SIZE
    assert sorted(t.shape for t in shrunk.templates) == sorted(t.shape
                                                                for t in enrolled.templates)
    assert shrunk.model_sha256 != enrolled.model_sha256
    found = 0
    for i in range(4):
        frame, truths = render_part(frame_rng(33, i), SIZE, SIZE, defects=["pit"])
        dets = shrunk.detect(twice(frame))
        assert dets
        for d in dets:
            x, y, w, h = d.bbox
            assert 0 <= x and 0 <= y and x + w <= 2 * SIZE + 1e-6 and y + h <= 2 * SIZE + 1e-6
            assert d.mask is not None and d.mask.shape == (round(h), round(w))
            assert d.area_px == d.mask.sum()
        truth = tuple(2 * v for v in truths[0].bbox)
        pits = [d for d in dets if d.cls == "pit"][:3]  # dets are sorted by score
        found += any(box_iou(d.bbox, truth) >= 0.3 for d in pits)
    assert found >= 3, f"one of the 3 best pit detections was the pit on {found} of 4 parts"
    # a frame within max_side is matched as it is: the same detections as without a cap
    frame = render_part(frame_rng(35, 1), SIZE, SIZE, defects=["scratch"])[0]
    uncapped = MatchDetector({"orientations": 8, "max_side": None})
    uncapped.load_enrolled_state(enrolled.enrolled_state())
    assert [(d.cls, d.bbox, round(d.score, 6)) for d in uncapped.detect(frame)] == [
        (d.cls, d.bbox, round(d.score, 6)) for d in enrolled.detect(frame)]


def test_enrolled_state_restores_the_same_detections(enrolled: MatchDetector):
    state = enrolled.enrolled_state()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in state.values())
    other = MatchDetector({"orientations": 8})
    other.load_enrolled_state(state)
    frame = render_part(frame_rng(35, 0), SIZE, SIZE, defects=["scratch"])[0]
    a, b = enrolled.detect(frame), other.detect(frame)
    assert [(d.cls, d.bbox, d.prompt_id, round(d.score, 6)) for d in a] == [
        (d.cls, d.bbox, d.prompt_id, round(d.score, 6)) for d in b]
    assert other.model_sha256 == enrolled.model_sha256
    assert MatchDetector({"orientations": 1}).model_sha256 != enrolled.model_sha256
    assert state["class_protos"].shape[0] == len(state["class_proto_classes"]) > 0
    older = {k: v for k, v in state.items() if k != "class_protos"}
    with pytest.raises(ValueError, match="class_protos"):
        MatchDetector({"orientations": 8}).load_enrolled_state(older)
    state["template_pixels"] = state["template_pixels"][:-1]
    with pytest.raises(ValueError, match="template shapes"):
        MatchDetector().load_enrolled_state(state)


def test_the_class_check_only_lowers_scores_and_can_be_turned_off(enrolled: MatchDetector):
    off = MatchDetector({"orientations": 8, "class_power": 0})
    off.load_enrolled_state(enrolled.enrolled_state())
    frame = render_part(frame_rng(38, 0), SIZE, SIZE, defects=["pit", "scratch"])[0]
    on_scores = {(d.cls, d.bbox): d.score for d in enrolled.detect(frame)}
    off_scores = {(d.cls, d.bbox): d.score for d in off.detect(frame)}
    assert on_scores.keys() == off_scores.keys()
    assert all(on_scores[k] <= off_scores[k] + 1e-12 for k in on_scores)
    assert any(on_scores[k] < 0.9 * off_scores[k] for k in on_scores)


def test_enrols_without_good_parts_from_the_prompt_images_alone():
    det = MatchDetector({"anomaly_power": 1.0})
    det.enroll(synthetic_prompts(31, ("pit", "scratch"), SIZE), [])
    assert det.classes == ["pit", "scratch"] and len(det.bank) > 0 and det.ref > 0


def test_bad_params_and_unusable_prompts_are_named():
    with pytest.raises(ValueError, match="detector.params.orientations"):
        MatchDetector({"orientations": 3})
    with pytest.raises(ValueError, match="detector.params.min_ncc"):
        MatchDetector({"min_ncc": 2})
    flat = np.full((64, 64), 100, np.uint8)
    with pytest.raises(ValueError, match="no usable prompt example"):
        MatchDetector().enroll([PromptExample("p", "pit", flat, (10, 10, 8, 8))], [])


def test_box_tokens_cover_the_box_and_its_margin():
    m = box_tokens((10, 10), [(8.0, 8.0, 8.0, 8.0)], 0)
    assert m.sum() == 1 and m[1, 1]
    assert box_tokens((10, 10), [(8.0, 8.0, 8.0, 8.0)], 1).sum() == 9


def test_a_match_recipe_enrols_once_then_restores_from_the_cache(tmp_path):
    from inspector.recipes.cache import enroll_cached
    from inspector.recipes.recipe import load_recipe
    from tests.helpers.recipe_factory import make_recipe

    folder = make_recipe(tmp_path / "m", "m", kinds=("pit", "scratch"))
    doc = (folder / "recipe.yaml").read_text()
    (folder / "recipe.yaml").write_text(doc.replace("kind: texture", "kind: match", 1))
    outcomes, found = [], []
    for _ in range(2):
        recipe = load_recipe(folder)
        assert recipe.detector.kind == "match"
        det = build_detector(recipe.detector)
        outcomes.append(enroll_cached(recipe, det))
        frame = render_part(frame_rng(36, 0), 128, 128, defects=["pit"])[0]
        found.append([(d.cls, d.bbox, round(d.score, 6)) for d in det.detect(frame)])
    assert not outcomes[0].hit and outcomes[0].written and outcomes[1].hit
    assert found[0] and found[1] == found[0]


def test_threads_change_the_time_not_the_detections(enrolled: MatchDetector):
    one = MatchDetector({"orientations": 8, "threads": 1})
    one.load_enrolled_state(enrolled.enrolled_state())
    assert enrolled.params.threads == 2 and one.model_sha256 == enrolled.model_sha256
    for i in range(2):
        frame = render_part(frame_rng(37, i), SIZE, SIZE, defects=["pit", "scratch"])[0]
        a, b = enrolled.detect(frame), one.detect(frame)
        assert a and [(d.cls, d.bbox, d.prompt_id, d.score) for d in a] == [
            (d.cls, d.bbox, d.prompt_id, d.score) for d in b]


def test_coarse_levels_follow_the_templates_shorter_side():
    assert coarse_level((23, 100), 12) == 0  # halved it would keep 11 px
    assert coarse_level((24, 30), 12) == 1
    assert coarse_level((48, 100), 12) == 2
    assert coarse_level((400, 400), 12) == MAX_LEVEL
    assert coarse_level((400, 400), 0) == 0
    f = np.arange(7 * 9, dtype=np.float32).reshape(7, 9)
    levels = pyramid(f, 2)
    assert [lv.shape for lv in levels] == [(7, 9), (3, 4)]  # 1 x 2 would be under 3 px
    assert levels[1][0, 0] == f[:2, :2].mean()


def ring_frame(rng: np.random.Generator, at: tuple[int, int]) -> np.ndarray:
    """Textured surface with a dark 40 x 40 ring whose top-left corner is `at` (x, y)."""
    f = np.clip(rng.normal(140, 12, (200, 240)), 0, 255).astype(np.float32)
    yy, xx = np.mgrid[0:40, 0:40]
    r = np.hypot(yy - 19.5, xx - 19.5)
    x, y = at
    f[y:y + 40, x:x + 40] -= 70 * ((r > 11) & (r < 17))
    return np.clip(f, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("coarse_side", [0, 12])
def test_a_large_template_found_at_half_resolution_is_boxed_where_it_is(coarse_side):
    rng = np.random.default_rng(5)
    det = MatchDetector({"coarse_side": coarse_side, "scales": [1.0]})
    det.enroll([PromptExample("r1", "ring", ring_frame(rng, (30, 30)), (30, 30, 40, 40))], [])
    assert [len(ladder) for ladder in det._ladders] == [1 if coarse_side == 0 else 2]
    dets = det.detect(ring_frame(rng, (151, 97)))  # odd: between two coarse pixels
    x, y, w, h = dets[0].bbox
    assert (w, h) == (40, 40) and dets[0].score > 0.5
    tol = 0 if coarse_side == 0 else 1  # one coarse pixel is two of the frame's
    assert abs(x - 151) <= tol and abs(y - 97) <= tol, dets[0].bbox
