"""The detector chosen at enrolment (kind "select"): the folds over the prompt images, the
choice following what real candidates find on held-out examples, the enrolled state, and
bad params named by field."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from inspector.acquisition.synthetic_parts import frame_rng, good_part, render_part
from inspector.inference.detectors import build_detector
from inspector.inference.detectors.base import PromptExample
from inspector.inference.detectors.select import SelectDetector, choose, fold_of_images
from inspector.recipes.recipe import DetectorSettings
from tests.helpers.prompt_fixtures import synthetic_prompts

SIZE = 256
BLIND = {"kind": "match", "params": {"min_ncc": 0.99}}  # a real matcher that finds nothing
MATCH = {"kind": "match", "params": {}}


def _examples(n_per_class: int, kinds=("pit", "scratch")) -> list[PromptExample]:
    out = []
    for k in range(n_per_class):
        out += [replace(ex, prompt_id=f"{ex.cls}-{k}")
                for ex in synthetic_prompts(61 + k, kinds, SIZE)]
    return out


def _ex(cls: str, image: np.ndarray) -> PromptExample:
    return PromptExample(f"{cls}-{id(image)}", cls, image, (1.0, 1.0, 4.0, 4.0))


def test_folds_hold_out_images_but_never_a_class_s_last_example():
    imgs = [np.zeros((8, 8), np.uint8) for _ in range(6)]
    prompts = [_ex("a", imgs[0]), _ex("a", imgs[1]), _ex("a", imgs[2]),
               _ex("b", imgs[2]), _ex("b", imgs[3]),  # image 2 holds both classes
               _ex("c", imgs[4])]  # a class with a single image
    folds = fold_of_images(prompts, 2)
    assert id(imgs[4]) not in folds  # c would be left without an example
    assert folds[id(imgs[0])] == 0 and folds[id(imgs[1])] == 1
    assert folds[id(imgs[2])] == 0  # the fold of its first example (a's third image)
    for f in set(folds.values()):
        kept = {ex.cls for ex in prompts if folds.get(id(ex.image)) != f}
        assert kept == {"a", "b", "c"}  # every class keeps an example in every fold
    assert fold_of_images([_ex("a", imgs[0]), _ex("b", imgs[1])], 4) == {}


def test_a_later_candidate_is_kept_only_when_clearly_better():
    assert choose([0.20, 0.29], 1.5) == 0  # 1.45x: within the noise of a few examples
    assert choose([0.20, 0.31], 1.5) == 1
    assert choose([0.0, 0.01], 1.5) == 1  # anything beats nothing found
    assert choose([0.10, 0.30, 0.40], 1.5) == 1  # 0.40 is not 1.5x the 0.30 kept
    assert choose([0.5, None], 1.5) == 0 and choose([None, 0.2], 1.5) == 1
    assert choose([None, None], 1.5) == 0


def test_the_choice_follows_what_each_candidate_finds_on_held_out_examples():
    prompts = _examples(3)
    normals = [good_part(frame_rng(62, i), SIZE, SIZE) for i in range(2)]
    for order in ([BLIND, MATCH], [MATCH, BLIND]):
        det = build_detector(DetectorSettings(kind="select",
                                              params={"candidates": order, "folds": 3}))
        assert isinstance(det, SelectDetector)
        det.enroll(prompts, normals)
        rec = det.selection
        assert rec is not None and rec["held_out_images"] == 6
        blind, working = (0, 1) if order[0] is BLIND else (1, 0)
        assert rec["held_out_ap50"][working] > 0.1  # the matcher finds held-out examples
        assert rec["held_out_ap50"][blind] == 0.0
        assert det.chosen == working and rec["kind"] == "match"
        frame = render_part(frame_rng(63, 0), SIZE, SIZE, defects=["pit"])[0]
        assert [d.bbox for d in det.detect(frame)] == [
            d.bbox for d in det.candidates[working].detect(frame)]


def test_without_a_fold_the_first_candidate_is_kept_and_the_record_says_why():
    det = SelectDetector({"candidates": [BLIND, MATCH]})
    det.enroll(_examples(1), [])
    assert det.chosen == 0 and det.selection is not None
    assert det.selection["held_out_ap50"] == [None, None]
    assert "no example image could be held out" in det.selection["why"]


def test_enrolled_state_restores_the_choice_and_its_detections():
    params = {"candidates": [BLIND, MATCH], "folds": 2}
    det = SelectDetector(params)
    det.enroll(_examples(2), [])
    assert det.chosen == 1 and det.cacheable
    state = det.enrolled_state()
    assert state is not None
    other = SelectDetector(params)
    other.load_enrolled_state(state)
    assert other.chosen == 1 and other.selection == det.selection
    frame = render_part(frame_rng(64, 0), SIZE, SIZE, defects=["scratch"])[0]
    assert [(d.cls, d.bbox, round(d.score, 6)) for d in other.detect(frame)] == [
        (d.cls, d.bbox, round(d.score, 6)) for d in det.detect(frame)]
    assert other.model_sha256 == det.model_sha256
    assert SelectDetector({**params, "folds": 3}).model_sha256 != det.model_sha256
    assert SelectDetector({**params, "fold_normals": 0}).model_sha256 != det.model_sha256
    assert SelectDetector({"candidates": [MATCH, BLIND]}).model_sha256 != det.model_sha256
    with pytest.raises(ValueError, match="select/chosen"):
        SelectDetector(params).load_enrolled_state(
            {k: v for k, v in state.items() if k != "select/chosen"})
    with pytest.raises(ValueError, match="candidate 5"):
        SelectDetector(params).load_enrolled_state({**state, "select/chosen": np.array([5])})


def test_bad_params_name_the_candidate_and_field():
    with pytest.raises(ValueError, match=r"detector\.params\.candidates\.0\.kind"):
        SelectDetector({"candidates": [{"kind": "texture"}]})
    with pytest.raises(ValueError, match=r"detector\.params\.candidates\.1\.params.*min_ncc"):
        SelectDetector({"candidates": [MATCH, {"kind": "match", "params": {"min_ncc": 2}}]})
    with pytest.raises(ValueError, match=r"detector\.params\.folds"):
        SelectDetector({"folds": 1})
    with pytest.raises(ValueError, match=r"detector\.params\.candidates"):
        SelectDetector({"candidates": []})


def test_candidates_are_named_by_kind_and_the_model_whose_heads_they_run():
    """Two candidates of one kind differ by their model: the operator's line and the
    reports name it, or 'prompt kept' would not say which heads run."""
    from inspector.inference.detectors.select import Candidate, SelectParams, label

    assert label(Candidate(kind="match")) == "match"
    assert label(Candidate(kind="prompt", params={"model": "/x/my-model"})) == "my-model heads"
    assert [label(c) for c in SelectParams().candidates] == [
        "match confirmed by prompt-v3", "prompt-v2 heads", "prompt-v3 heads"]
    assert label(Candidate(kind="consensus")) == "match confirmed by prompt-v2"
