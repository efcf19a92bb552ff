"""The enrolment cache: used only when model and recipe are unchanged, rebuilt otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inspector.acquisition.synthetic_parts import iter_parts
from inspector.core.validation import InvalidFile
from inspector.inference.detectors import build_detector
from inspector.inference.detectors import texture as texture_module
from inspector.recipes.cache import cache_paths, check, enroll_cached
from inspector.recipes.recipe import load_recipe
from tests.helpers.recipe_factory import make_recipe


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    return make_recipe(tmp_path / "cached", "cached")


def _enrol(folder: Path, **kw):
    recipe = load_recipe(folder)
    det = build_detector(recipe.detector)
    return recipe, det, enroll_cached(recipe, det, **kw)


def _signature(det, n: int = 4) -> list:
    """What the detector finds on a few fixed parts (classes, scores, boxes)."""
    return [[(d.cls, round(d.score, 6), d.bbox, d.prompt_id) for d in det.detect(img)]
            for img, _ in iter_parts(n, 31, 128, 128, defect_rate=1.0)]


def test_second_load_comes_from_cache_and_equals_enrolment(recipe_dir: Path) -> None:
    r1, fresh, first = _enrol(recipe_dir)
    assert not first.hit and first.reason == "no cache" and first.written
    state_file, meta_file = cache_paths(r1)
    assert state_file.is_file() and meta_file.is_file()
    assert load_recipe(recipe_dir).sha256 == r1.sha256  # cache/ is not part of the recipe
    _, cached, second = _enrol(recipe_dir)
    assert second.hit and second.reason == ""
    assert cached.model_sha256 == fresh.model_sha256
    found = _signature(fresh)
    assert sum(map(len, found)) > 0 and _signature(cached) == found
    meta = json.loads(meta_file.read_text())
    assert meta["recipe_sha256"] == r1.sha256 and meta["recipe"] == {"id": "cached", "rev": 1}
    with np.load(state_file, allow_pickle=False) as z:  # plain arrays, no pickle inside
        assert set(z.files) == set(meta["arrays"])


def test_recipe_change_makes_cache_stale(recipe_dir: Path) -> None:
    _enrol(recipe_dir)
    text = (recipe_dir / "recipe.yaml").read_text()
    (recipe_dir / "recipe.yaml").write_text(text.replace("threshold: 0.5", "threshold: 0.4", 1))
    recipe, det, got = _enrol(recipe_dir)
    assert not got.hit and got.reason == "stale: recipe_sha256 changed" and got.written
    assert check(recipe, build_detector(recipe.detector)) == ""  # rebuilt and fresh again


def test_new_good_part_makes_cache_stale(recipe_dir: Path) -> None:
    _enrol(recipe_dir)
    src = recipe_dir / "normal" / "good_00.png"
    (recipe_dir / "normal" / "good_99.png").write_bytes(src.read_bytes())
    assert _enrol(recipe_dir)[2].reason == "stale: recipe_sha256 changed"


def test_model_change_makes_cache_stale(recipe_dir: Path, monkeypatch) -> None:
    _enrol(recipe_dir)
    monkeypatch.setattr(texture_module, "VERSION", "texture/999")  # a new detector release
    recipe, det, got = _enrol(recipe_dir)
    assert not got.hit and got.reason == "stale: model_sha256 changed"
    monkeypatch.undo()
    assert check(recipe, build_detector(recipe.detector)) == "stale: model_sha256 changed"


def test_corrupt_state_is_rebuilt_never_used(recipe_dir: Path) -> None:
    r, fresh, _ = _enrol(recipe_dir)
    state_file, _ = cache_paths(r)
    data = bytearray(state_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    state_file.write_bytes(bytes(data))
    _, det, got = _enrol(recipe_dir)
    assert not got.hit and got.reason.startswith("corrupt:") and got.written
    assert det.model_sha256 == fresh.model_sha256
    assert _enrol(recipe_dir)[2].hit


def test_unreadable_meta_and_missing_state_are_rebuilt(recipe_dir: Path) -> None:
    r, _, _ = _enrol(recipe_dir)
    state_file, meta_file = cache_paths(r)
    meta_file.write_text("{not json")
    assert _enrol(recipe_dir)[2].reason.startswith("unreadable meta")
    state_file.unlink()
    assert _enrol(recipe_dir)[2].reason == f"missing {state_file.name}"
    assert _enrol(recipe_dir)[2].hit


def test_pickled_arrays_are_refused(recipe_dir: Path) -> None:
    """A cache whose npz holds Python objects is never unpickled, even with a right hash."""
    r, _, _ = _enrol(recipe_dir)
    state_file, meta_file = cache_paths(r)
    with np.load(state_file, allow_pickle=False) as z:
        state = {k: z[k] for k in z.files}
    state["proto_cls"] = np.array([object()] * len(state["proto_cls"]), dtype=object)
    np.savez(state_file, **state)  # np.savez pickles object arrays
    import hashlib

    meta = json.loads(meta_file.read_text())
    from inspector.recipes.cache_key import sign

    meta["state_sha256"] = hashlib.sha256(state_file.read_bytes()).hexdigest()
    meta["hmac"] = sign(meta)  # even one who holds this host's key cannot make us unpickle
    meta_file.write_text(json.dumps(meta))
    got = _enrol(recipe_dir)[2]
    assert not got.hit and got.reason.startswith("unusable:") and "pickle" in got.reason


def test_state_from_other_params_is_refused(recipe_dir: Path, tmp_path: Path) -> None:
    """load_enrolled_state checks shapes: a state for fewer bands does not fit."""
    r, det, _ = _enrol(recipe_dir)
    other = build_detector(r.detector.model_copy(update={"params": {"line_orients": 2}}))
    with pytest.raises(ValueError, match="does not fit these params: mean, std"):
        other.load_enrolled_state(det.enrolled_state())
    with pytest.raises(ValueError, match="lacks protos"):
        other.load_enrolled_state({k: v for k, v in det.enrolled_state().items()
                                   if k != "protos"})


def test_switch_enrolment_runs_in_a_child_process(recipe_dir: Path, tmp_path: Path) -> None:
    """enroll_isolated: the child writes the cache, this process loads the same state."""
    from inspector.recipes.cache import detector_for, enroll_isolated

    twin = make_recipe(tmp_path / "twin", "cached")  # same bytes: same recipe hash
    r = load_recipe(twin)
    here = detector_for(r)
    enroll_cached(r, here)
    recipe = load_recipe(recipe_dir)
    assert recipe.sha256 == r.sha256
    det = detector_for(recipe)
    got = enroll_isolated(recipe, det)
    assert not got.hit and got.reason == "no cache; enrolled in a child process"
    assert det.model_sha256 == here.model_sha256
    assert enroll_isolated(recipe, detector_for(recipe)).hit
    (recipe_dir / "normal" / "good_02.png").write_bytes(b"garbage")
    bad = load_recipe(recipe_dir)
    with pytest.raises(InvalidFile, match="good_02.png: not a readable image"):
        enroll_isolated(bad, detector_for(bad))


def test_an_enrolment_cut_short_is_cached_for_its_switch_only(recipe_dir: Path,
                                                              tmp_path_factory) -> None:
    """A prompt detector whose adaptation hits its time cap: the switch's child writes a
    provisional cache that this process loads; the next load enrols again."""
    import yaml

    from inspector.recipes.cache import detector_for, enroll_isolated
    from tests.helpers.prompt_fixtures import SIZE, tiny_model

    model = tiny_model(tmp_path_factory)
    doc = yaml.safe_load((recipe_dir / "recipe.yaml").read_text())
    doc["detector"] = {"kind": "prompt", "params": {
        "model": str(model), "size": SIZE, "adapt": "on", "adapt_steps": 3, "adapt_images": 4,
        "adapt_threads": 1, "adapt_max_seconds": 1e-9, "min_score": 0.0,
        "state_dir": str(recipe_dir.parent / "state")}}
    (recipe_dir / "recipe.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    recipe = load_recipe(recipe_dir)
    det = detector_for(recipe)
    got = enroll_isolated(recipe, det)
    assert got.reason == "no cache; enrolled in a child process"  # loaded, not enrolled here
    assert det.provisional and det.inner.adapt_record["steps_done"] == 1
    assert json.loads(cache_paths(recipe)[1].read_text())["provisional"] is True
    assert check(recipe, detector_for(recipe)) == (
        "provisional: its adaptation stopped at the time cap")
    again = detector_for(recipe)
    got = enroll_cached(recipe, again)
    assert not got.hit and got.reason.startswith("provisional") and got.written
    assert again.provisional  # capped again (the cap is tiny): still not kept
