"""Two detectors that agree (kind "consensus"): the rescoring rule, a real matcher confirmed
by real prompt heads, the enrolled state, and bad params named by field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector.acquisition.synthetic_parts import frame_rng, good_part, render_part
from inspector.inference.detectors import build_detector
from inspector.inference.detectors.base import Detection
from inspector.inference.detectors.consensus import ConsensusDetector, agree
from inspector.recipes.recipe import DetectorSettings
from tests.helpers.prompt_fixtures import runtime_model, synthetic_prompts


def _det(cls: str, score: float, x: float) -> Detection:
    return Detection(cls=cls, score=score, bbox=(x, 10.0, 20.0, 20.0))


def test_a_primary_box_the_support_confirms_outranks_one_it_does_not():
    primary = [_det("pit", 0.8, 0.0), _det("pit", 0.6, 100.0), _det("pit", 0.7, 200.0)]
    support = [_det("pit", 0.9, 102.0),  # on the second box (IoU 0.82)
               _det("scratch", 1.0, 0.0),  # on the first, but another class
               _det("pit", 1.0, 215.0)]  # near the third, IoU 0.14 < 0.3
    out = agree(primary, support, iou=0.3, gain=0.5)
    got = {d.bbox[0]: d.score for d in out}
    assert got[100.0] == pytest.approx(0.6 * (1 + 0.5 * 0.9) / 1.5)
    assert got[0.0] == pytest.approx(0.8 / 1.5) and got[200.0] == pytest.approx(0.7 / 1.5)
    assert [d.bbox[0] for d in out] == [100.0, 0.0, 200.0]  # best first
    assert [d.score for d in agree(primary, support, iou=0.3, gain=0.0)] == [0.8, 0.7, 0.6]
    assert agree(primary, [], 0.3, 0.5)[0].score == pytest.approx(0.8 / 1.5)


def test_bad_member_params_name_the_member_and_field():
    with pytest.raises(ValueError, match=r"detector\.params\.primary\.params.*min_ncc"):
        ConsensusDetector({"primary": {"kind": "match", "params": {"min_ncc": 2}}})
    with pytest.raises(ValueError, match=r"detector\.params\.support\.kind"):
        ConsensusDetector({"support": {"kind": "texture"}})
    with pytest.raises(ValueError, match=r"detector\.params\.gain"):
        ConsensusDetector({"gain": -1})


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, int]:
    return runtime_model(tmp_path_factory)


def test_the_matcher_confirmed_by_prompt_heads_enrols_detects_and_restores(model):
    folder, size = model
    support = {"model": str(folder), "backend": "onnxruntime", "size": size,
               "min_score": 0.0, "threads": 1}
    params = {"support": {"kind": "prompt", "params": support}, "gain": 2.0}
    det = build_detector(DetectorSettings(kind="consensus", params=params))
    assert isinstance(det, ConsensusDetector)
    det.enroll(synthetic_prompts(41, ("pit", "scratch"), size),
               [good_part(frame_rng(42, i), size, size) for i in range(3)])
    frame = render_part(frame_rng(43, 0), size, size, defects=["pit"])[0]
    dets = det.detect(frame)
    alone = det.primary.detect(frame)
    seen = det.support.detect(frame)
    assert dets and len(dets) == len(alone)  # the primary says where
    assert [d.bbox for d in dets] == [d.bbox for d in sorted(
        agree(alone, seen, 0.3, 2.0), key=lambda d: -d.score)]
    assert all(0 <= d.score <= 1 for d in dets)
    assert set(det.last_timing) == {"encode_ms", "head_ms", "primary_ms", "support_ms"}
    assert det.last_timing["head_ms"] >= det.last_timing["primary_ms"]

    state = det.enrolled_state()
    assert state is not None and det.cacheable
    other = ConsensusDetector(params)
    other.load_enrolled_state(state)
    assert [(d.cls, d.bbox, round(d.score, 6)) for d in other.detect(frame)] == [
        (d.cls, d.bbox, round(d.score, 6)) for d in dets]
    assert other.model_sha256 == det.model_sha256
    assert ConsensusDetector({**params, "gain": 1.0}).model_sha256 != det.model_sha256
    with pytest.raises(ValueError, match="support"):
        ConsensusDetector(params).load_enrolled_state(
            {k: v for k, v in state.items() if k.startswith("primary/")})
    assert np.isfinite([d.score for d in dets]).all()


def test_a_consensus_recipe_with_a_misspelt_member_param_is_named_by_file_and_line(tmp_path):
    import yaml

    from inspector.core.validation import InvalidFile
    from inspector.recipes.recipe import load_recipe
    from tests.helpers.recipe_factory import make_recipe

    folder = make_recipe(tmp_path / "c", "c", kinds=("pit", "scratch"))
    doc = yaml.safe_load((folder / "recipe.yaml").read_text())
    doc["detector"] = {"kind": "consensus", "params": {
        "primary": {"kind": "match", "params": {"min_nc": 0.3}}, "gain": 1.0}}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(InvalidFile) as exc:
        load_recipe(folder)
    text = str(exc.value)
    lines = (folder / "recipe.yaml").read_text().splitlines()
    line = next(i for i, s in enumerate(lines, 1) if "min_nc" in s)  # its `params:` is above
    assert f"recipe.yaml:{line - 1}: detector.params.primary.params:" in text, (line, text)
    assert "min_nc: Extra inputs are not permitted" in text, text
