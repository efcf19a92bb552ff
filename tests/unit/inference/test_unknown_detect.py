"""Unknown defects end to end: a defect kind no prompt covers is rejected as `unknown`.

The synthetic parts know scratch, pit, crack, stain and missing print; the test injects
a kind none of them is, a mesh imprint (a small grid of dark lines), so no prompt class
can explain it. Detection goes through the recipe, build_detector, the wrapper and the
decision, as in the pipeline.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from inspector.acquisition.synthetic_parts import (
    frame_rng,
    good_part,
    hole_circle,
    render_part,
    save_coco,
)
from inspector.acquisition.synthetic_parts import write_png as save_png
from inspector.core.validation import InvalidFile
from inspector.decision.verdict import decide
from inspector.inference.detectors import build_detector
from inspector.inference.detectors.base import Detection, Detector
from inspector.inference.detectors.with_unknown import WithUnknown, overlaps
from inspector.inference.unknown.branch import UnknownBranch, UnknownParams
from inspector.recipes.recipe import load_normals, load_recipe
from inspector.runtime.service import load_active

SIZE = 192
CLASSES = ["scratch", "pit", "crack", "stain", "missing_print"]


def mesh_imprint(image: np.ndarray, rng: np.random.Generator, size: int = 26
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A defect kind the synthetic generator does not know: a grid of dark lines, placed
    on plain surface (away from the print and the hole). Returns (image, truth mask)."""
    h, w = image.shape
    hx, hy, hr = hole_circle(w, h)
    while True:
        x, y = (int(v) for v in rng.integers(8, [w - size - 8, h - size - 8]))
        if y > 0.45 * h and np.hypot(x + size / 2 - hx, y + size / 2 - hy) > hr + size:
            break
    out = image.astype(np.float32)
    patch = out[y:y + size, x:x + size]
    yy, xx = np.mgrid[0:size, 0:size]
    lines = (yy % 5 == 0) | (xx % 5 == 0)
    patch[lines] -= 45
    mask = np.zeros((h, w), bool)
    mask[y:y + size, x:x + size] = True
    return np.clip(out, 0, 255).astype(np.uint8), mask


def write_recipe(folder: Path, unknown: dict | None = None, n_normal: int = 16) -> Path:
    """A texture-detector recipe of SIZE x SIZE synthetic parts, prompts for every kind."""
    folder.mkdir(parents=True, exist_ok=True)
    prompts = [render_part(frame_rng(501, i), SIZE, SIZE, defects=CLASSES) for i in range(2)]
    save_coco(folder / "prompts", prompts, "prompts.json", images_dir=".", prompt_ids=True)
    (folder / "normal").mkdir(exist_ok=True)
    for i in range(n_normal):
        save_png(folder / "normal" / f"good_{i:03d}.png", good_part(frame_rng(500, i), SIZE,
                                                                     SIZE))
    recipe = {
        "id": "unknown-test", "rev": 1, "product": "test plate", "mm_per_px": 0.1,
        "detector": {"kind": "texture", "params": {}},
        "classes": [{"name": c, "threshold": 0.5, "plc_code": 11 + i}
                    for i, c in enumerate(CLASSES)],
        "unknown": {"enabled": True, "threshold": 0.6, "min_area_mm2": 0.5, "plc_code": 90,
                    "target_false_alarm_rate": 0.01, **(unknown or {})},
    }
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    return folder


class NamesNothing(Detector):
    """A prompt detector whose prompts cover none of the defects on the test parts."""

    kind = "names-nothing"

    def __init__(self, dets: list[Detection] | None = None) -> None:
        self.dets = dets or []

    def enroll(self, prompts, normals, progress=False) -> None:
        pass

    def detect(self, image):
        return list(self.dets)

    def enrolled_state(self):
        return {"dummy": np.zeros(1)}

    def load_enrolled_state(self, state) -> None:
        pass


@pytest.fixture(scope="module")
def recipe_dir(tmp_path_factory) -> Path:
    return write_recipe(tmp_path_factory.mktemp("recipes") / "unknown-test")


@pytest.fixture(scope="module")
def branch_only(recipe_dir):
    """The recipe's unknown branch behind a detector that names nothing."""
    recipe = load_recipe(recipe_dir)
    det = build_detector(recipe.detector, recipe.unknown)
    assert isinstance(det, WithUnknown)
    wrapped = WithUnknown(NamesNothing(), det.branch)
    wrapped.enroll([], load_normals(recipe))
    return recipe, wrapped


def test_novel_defect_kind_is_rejected_as_unknown(branch_only):
    recipe, det = branch_only
    for i in range(3):
        rng = frame_rng(502, i)
        img, truth = mesh_imprint(good_part(rng, SIZE, SIZE), rng)
        dets = det.detect(img)
        verdict = decide(dets, recipe, recipe.mm_per_px)
        assert not verdict.ok and verdict.code == recipe.unknown.plc_code, verdict.reasons
        hits = [d for d, a in zip(dets, verdict.accepted, strict=True)
                if a and d.unknown and d.cls == "unknown"]
        x, y, w, h = (int(v) for v in hits[0].bbox)
        assert truth[y:y + h, x:x + w][hits[0].mask].any()  # on the imprint, not elsewhere


def test_good_parts_are_not_rejected(branch_only):
    recipe, det = branch_only
    for i in range(6):
        img = good_part(frame_rng(503, i), SIZE, SIZE)
        verdict = decide(det.detect(img), recipe, recipe.mm_per_px)
        assert verdict.ok, verdict.reasons
    cal = det.branch.calibration
    assert cal.n_heldout == 16 and cal.achieved_rate <= cal.target_rate


def _imprint_named_as(det, cls: str, score: float) -> tuple[np.ndarray, Detection]:
    """A part with a mesh imprint, and a class detection covering the unknown region the
    branch finds there (what a prompt detector naming that defect would report)."""
    rng = frame_rng(504, 0)
    img, _ = mesh_imprint(good_part(rng, SIZE, SIZE), rng)
    found = [d for d in det.detect(img) if d.unknown]
    assert found
    return img, Detection(cls=cls, score=score, bbox=found[0].bbox, mask=found[0].mask,
                          area_px=found[0].area_px)


def test_unknown_region_explained_by_a_class_is_dropped(branch_only):
    recipe, det = branch_only
    img, named = _imprint_named_as(det, "stain", 0.9)
    both = WithUnknown(NamesNothing([named]), det.branch)
    both.active = True
    out = both.detect(img)
    assert named in out
    assert not any(d.unknown and overlaps(d, named) for d in out)


def test_a_class_detection_below_its_threshold_explains_nothing(branch_only):
    """The prompt detector reports faint candidates (down to min_score); one the recipe
    would not count must not hide the defect the good-part bank sees."""
    recipe, det = branch_only
    img, faint = _imprint_named_as(det, "stain", 0.3)
    counted = {"stain": 0.5}
    both = WithUnknown(NamesNothing([faint]), det.branch, thresholds=counted)
    both.active = True
    out = both.detect(img)
    assert faint in out and any(d.unknown and overlaps(d, faint) for d in out)
    verdict = decide(out, recipe, recipe.mm_per_px)
    assert not verdict.ok and verdict.code == recipe.unknown.plc_code
    faint.score = 0.6  # now counted: it names the defect, the unknown region goes
    assert not any(d.unknown and overlaps(d, faint) for d in both.detect(img))


def test_confirm_drops_a_class_detection_where_the_part_looks_good(branch_only, monkeypatch):
    """With `confirm`, a class detection on an ordinary stretch of a good part (a prompt
    detector's false alarm) is dropped, one on the imprint the branch sees is kept; off,
    both count."""
    recipe, det = branch_only
    img, named = _imprint_named_as(det, "stain", 0.9)
    good = good_part(frame_rng(503, 0), SIZE, SIZE)
    false = Detection(cls="stain", score=0.9, bbox=named.bbox, mask=named.mask,
                      area_px=named.area_px)
    on_defect = WithUnknown(NamesNothing([named]), det.branch)
    on_good = WithUnknown(NamesNothing([false]), det.branch)
    on_defect.active = on_good.active = True
    assert false in on_good.detect(good)  # off by default: every class detection counts
    params = det.branch.params
    monkeypatch.setattr(det.branch, "params", params.model_copy(update={"confirm": 0.8}))
    assert on_good.detect(good) == []
    assert named in on_defect.detect(img)
    assert decide(on_good.detect(good), recipe, recipe.mm_per_px).ok
    with pytest.raises(ValueError, match="confirm"):
        UnknownParams.model_validate({"confirm": -1})


def test_branch_runs_beside_the_inner_detector(branch_only, monkeypatch):
    """The inner detector and the branch overlap in time within one detect(): the inner
    one waits here until the branch has started, which a sequential detect never allows."""
    import threading

    recipe, det = branch_only
    started = threading.Event()
    real = det.branch.detect_with_map

    def branch_detect(image):
        started.set()
        return real(image)

    class WaitsForBranch(NamesNothing):
        def detect(self, image):
            assert started.wait(10), "the branch did not start while the inner one ran"
            return []

    monkeypatch.setattr(det.branch, "detect_with_map", branch_detect)
    both = WithUnknown(WaitsForBranch(), det.branch)
    both.active = True
    rng = frame_rng(504, 0)
    img, _ = mesh_imprint(good_part(rng, SIZE, SIZE), rng)
    out = both.detect(img)
    assert any(d.unknown for d in out) and both.last_timing["unknown_ms"] > 0


def test_pipeline_wraps_every_recipe_with_good_parts(recipe_dir, tmp_path):
    active = load_active(recipe_dir)
    det = active.detector
    assert isinstance(det, WithUnknown) and det.active
    assert det.kind == "texture+unknown"
    rng = frame_rng(505, 0)
    img, _ = mesh_imprint(good_part(rng, SIZE, SIZE), rng)
    assert not decide(det.detect(img), active.recipe, active.recipe.mm_per_px).ok
    # the enrolment was cached (arrays only) and comes back identical
    again = load_active(recipe_dir)
    assert again.detector.model_sha256 == det.model_sha256
    np.testing.assert_array_equal(again.detector.branch.bank, det.branch.bank)
    # unknown rule disabled: the recipe's detector alone
    off = shutil.copytree(recipe_dir, tmp_path / "off")
    data = yaml.safe_load((off / "recipe.yaml").read_text())
    data["unknown"]["enabled"] = False
    (off / "recipe.yaml").write_text(yaml.safe_dump(data))
    shutil.rmtree(off / "cache", ignore_errors=True)
    assert not isinstance(load_active(off).detector, WithUnknown)


def test_too_few_good_parts_leaves_the_branch_off(caplog):
    named = Detection(cls="stain", score=0.9, bbox=(4.0, 4.0, 8.0, 8.0), area_px=64.0)
    det = WithUnknown(NamesNothing([named]),
                      UnknownBranch({"min_normals": 3, "confirm": 0.85}))
    with caplog.at_level("WARNING"):
        det.enroll([], [good_part(frame_rng(506, i), 64, 64) for i in range(2)])
    assert "confirm is off with it" in caplog.text  # the operator learns the check is off
    assert not det.active and det.detect(np.zeros((64, 64), np.uint8)) == [named]
    assert det.enrolled_state()["unknown_active"] == np.array(False)


def test_bad_unknown_params_name_the_field(tmp_path):
    folder = write_recipe(tmp_path / "bad", {"params": {"coreset_ratio": 2.0}}, n_normal=3)
    # rejected when the recipe is loaded (inspector validate, a switch), with file and line
    with pytest.raises(InvalidFile, match=r"recipe\.yaml:\d+: unknown\.params\.coreset_ratio"):
        load_recipe(folder)
    # settings built in code, not from a recipe file, are still checked when built
    good = load_recipe(write_recipe(tmp_path / "good", n_normal=3))
    rule = good.unknown.model_copy(update={"params": {"coreset_ratio": 2.0}})
    with pytest.raises(ValueError, match=r"unknown\.params\.coreset_ratio"):
        build_detector(good.detector, rule)


def test_top_k_image_score_judges_the_part_and_points_at_the_peak(recipe_dir):
    """`image_score: topk_mean` (opt-in): the threshold is calibrated on the mean of the
    k most distant tokens, a part beyond it gets one region at the map's peak scored by
    the part, good parts stay quiet."""
    recipe = load_recipe(recipe_dir)
    branch = UnknownBranch({"image_score": "topk_mean", "topk": 5}, target_rate=0.01,
                           at_threshold=0.6)
    cal = branch.enroll(load_normals(recipe))
    assert cal.threshold > 0 and branch.params.image_score == "topk_mean"
    for i in range(3):
        rng = frame_rng(502, i)
        img, truth = mesh_imprint(good_part(rng, SIZE, SIZE), rng)
        (hit,) = branch.detect(img)
        assert hit.unknown and hit.score >= 0.6
        x, y, w, h = (int(v) for v in hit.bbox)
        assert truth[y:y + h, x:x + w][hit.mask].any()
    alarms = [branch.detect(good_part(frame_rng(503, i), SIZE, SIZE)) for i in range(20)]
    assert sum(bool(a) for a in alarms) <= 1


def faint_stain(image: np.ndarray, rng: np.random.Generator, amplitude: float = 40.0
                ) -> np.ndarray:
    """A large, soft brightening (a Gaussian of 28 px sigma): the kind of defect that is
    faint at any 8 px token but plain at a glance, like MagTile's unevenness."""
    h, w = image.shape
    cx, cy = (int(v) for v in rng.integers(60, [w - 60, h - 60]))
    yy, xx = np.mgrid[0:h, 0:w]
    blob = amplitude * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 28.0 ** 2))
    return np.clip(image + blob, 0, 255).astype(np.uint8)


def test_the_coarse_scale_finds_large_faint_stains_the_native_scale_misses():
    normals = [good_part(frame_rng(500, i), SIZE, SIZE) for i in range(16)]
    stained = [faint_stain(good_part(frame_rng(700, i), SIZE, SIZE), np.random.default_rng(i))
               for i in range(8)]
    good = [good_part(frame_rng(701, i), SIZE, SIZE) for i in range(8)]
    flagged = {}
    for name, coarse in (("native only", None), ("with coarse", {})):
        branch = UnknownBranch({"coarse": coarse}, target_rate=0.01)
        branch.enroll(normals)
        flagged[name] = [[branch.part_score(branch.distances(branch.grids(im)), im.shape)[0]
                          >= branch.threshold for im in ims] for ims in (stained, good)]
    assert all(flagged["with coarse"][0]) and not any(flagged["with coarse"][1]), flagged
    assert not all(flagged["native only"][0]), flagged
