"""The visual-prompt detector (kind "prompt") on ONNX Runtime: enrol, detect, restore."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inspector.inference.detectors import build_detector
from inspector.inference.detectors.base import PromptExample
from inspector.inference.detectors.prompt import PromptDetector, nms, region_area
from inspector.recipes.recipe import DetectorSettings
from tests.helpers.prompt_fixtures import runtime_model, synthetic_prompts


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, int]:
    return runtime_model(tmp_path_factory)


def _prompts(size: int) -> list[PromptExample]:
    return synthetic_prompts(11, ("scratch", "pit", "stain"), size)


def test_enrol_detect_and_restore(model):
    folder, size = model
    det = build_detector(DetectorSettings(kind="prompt", params={
        "model": str(folder), "backend": "onnxruntime", "size": size, "min_score": 0.0,
        "threads": 1}))
    assert isinstance(det, PromptDetector)
    det.enroll(_prompts(size), [])
    assert det.classes == ["scratch", "pit", "stain"]
    assert np.allclose(np.linalg.norm(det.protos, axis=1), 1, atol=1e-4)
    from inspector.acquisition.synthetic_parts import frame_rng, render_part

    frame = render_part(frame_rng(12, 0), 2 * size, size)[0]  # another size than the input
    dets = det.detect(frame)
    assert dets, "min_score 0 keeps every query that survives NMS"
    for d in dets:
        x, y, w, h = d.bbox
        assert d.cls in det.classes and 0 <= d.score <= 1
        assert 0 <= x and 0 <= y and x + w <= frame.shape[1] + 1 and y + h <= frame.shape[0] + 1
        assert d.mask is not None and d.mask.dtype == bool
        assert d.mask.shape == (min(round(h), frame.shape[0] - round(y)),
                                min(round(w), frame.shape[1] - round(x)))
    ids = {p.prompt_id: p.cls for p in _prompts(size)}
    assert all(ids[d.prompt_id] == d.cls for d in dets)  # the nearest example of its class
    assert set(det.last_timing) == {"encode_ms", "head_ms"}
    state = det.enrolled_state()
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in state.values())
    other = PromptDetector({"model": str(folder), "backend": "onnxruntime", "size": size,
                            "min_score": 0.0})
    other.load_enrolled_state(state)
    again = other.detect(frame)
    assert [(d.cls, d.bbox, d.prompt_id) for d in again] == [(d.cls, d.bbox, d.prompt_id)
                                                               for d in dets]
    assert len(det.model_sha256) == 64 and det.model_sha256 == other.model_sha256


def test_bad_params_name_the_field(model):
    folder, _ = model
    with pytest.raises(ValueError, match="detector.params.size"):
        PromptDetector({"model": str(folder), "size": 100})
    with pytest.raises(ValueError, match="detector.params.colour"):
        PromptDetector({"model": str(folder), "colour": 1})


def test_a_bare_yaml_on_or_off_means_the_word():
    from inspector.core.validation import parse_yaml
    from inspector.inference.detectors.prompt import PromptParams

    doc, _ = parse_yaml(Path("recipe.yaml"), b"adapt: on\nbox_fit: off\n")
    assert doc == {"adapt": True, "box_fit": False}  # what YAML 1.1 makes of them
    p = PromptParams.parse(doc)
    assert (p.adapt, p.box_fit) == ("on", "off")
    with pytest.raises(ValueError, match="detector.params.adapt"):
        PromptParams.parse({"adapt": 1})


def test_missing_model_folder_is_named(tmp_path: Path):
    from inspector.inference.runtimes import BackendError

    with pytest.raises(BackendError, match=str(tmp_path)):
        PromptDetector({"model": str(tmp_path)})


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    scores = np.array([0.5, 0.9, 0.4])
    assert nms(boxes, scores, 0.5) == [1, 2]
    assert nms(boxes, scores, 0.9) == [1, 0, 2]


def test_nms_limit_keeps_the_same_first_boxes():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 200, (300, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (300, 2))], 1)
    scores = rng.uniform(0, 1, 300)
    full = nms(boxes, scores, 0.5)
    assert len(full) > 20
    assert nms(boxes, scores, 0.5, 20) == full[:20]
    assert nms(boxes, scores, 0.5, 1000) == full


def test_mask_of_a_faint_query_is_its_peak_not_one_pixel(model):
    """All mask logits below 0 inside the box: the pixels within one logit of the peak."""
    folder, size = model
    det = PromptDetector({"model": str(folder), "backend": "onnxruntime", "size": size})
    logits = np.full((size // 4, size // 4), -6.0, np.float32)
    logits[10:14, 20:26] = -2.0  # a faint blob, stride-4 cells
    box = np.array([0, 0, size, size], np.float32)  # the whole input = the whole frame
    mask = det._mask(logits, box, (0.0, 0.0, float(size), float(size)), (size, size))
    ys, xs = np.nonzero(mask)
    assert 30 < mask.sum() < 0.05 * size * size
    assert 36 <= ys.min() and ys.max() <= 58 and 76 <= xs.min() and xs.max() <= 106
    logits[11, 22] = 1.0  # one positive cell: the ordinary `> 0` mask
    sharp = det._mask(logits, box, (0.0, 0.0, float(size), float(size)), (size, size))
    assert 0 < sharp.sum() < mask.sum()
    # a peak just above 0 is no sharper than one just below it (no jump at 0: sampled
    # between the cells, these peaks give maxima of -0.05 and +0.07)
    sizes = []
    for peak in (0.55, 0.7):
        logits[11, 22] = peak
        sizes.append(det._mask(logits, box, (0.0, 0.0, float(size), float(size)),
                               (size, size)).sum())
    assert sizes[1] > 0.5 * sizes[0] > 0


def test_area_below_the_mask_resolution_is_the_box_ellipse():
    """A mask smaller than one logit cell says little of the defect's size: the minimum-area
    rule then judges the ellipse of the box; a resolved mask keeps its own area."""
    tiny = np.zeros((10, 12), bool)
    tiny[4:6, 5:8] = True  # 6 px
    assert region_area(tiny, 12, 10, cell_px=41.0) == pytest.approx(np.pi / 4 * 120)
    thin = np.zeros((40, 60), bool)
    thin[20, :] = True  # a scratch 60 px long: resolved, its own area
    assert region_area(thin, 60, 40, cell_px=41.0) == 60
    assert region_area(None, 12, 10, cell_px=41.0) == 120


def test_a_size_prior_model_takes_the_examples_sizes(tmp_path: Path):
    """A net with a size prior gets each class's example size at enrolment; the size
    travels in the enrolled state, and larger examples give larger boxes."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from inspector.acquisition.synthetic_parts import frame_rng, render_part
    from tests.helpers.prompt_fixtures import SIZE, export_tiny

    folder = export_tiny(tmp_path / "m", size_prior=True)
    params = {"model": str(folder), "backend": "onnxruntime", "size": SIZE, "min_score": 0.0,
              "threads": 1, "nms_iou": 1.0}
    det = PromptDetector(params)
    prompts = _prompts(SIZE)
    det.enroll(prompts, [])
    assert det.size_prior and det.sizes.shape == (3, 2)
    x, y, w, h = prompts[0].bbox
    assert np.allclose(np.exp(det.sizes[0]), (max(w, 1), max(h, 1)), rtol=1e-4)
    frame = render_part(frame_rng(12, 0), SIZE, SIZE)[0]
    tokens = det.encode(frame)
    small = det.detect_tokens(tokens, frame.shape[:2])
    big = det.detect_tokens(tokens, frame.shape[:2], sizes=det.sizes + np.log(1.5))
    area = {d.cls: max(b.bbox[2] * b.bbox[3] for b in small if b.cls == d.cls) for d in small}
    big_area = {d.cls: max(b.bbox[2] * b.bbox[3] for b in big if b.cls == d.cls) for d in big}
    assert all(big_area[c] > area[c] for c in area)
    other = PromptDetector(params)
    other.load_enrolled_state(det.enrolled_state())
    assert np.array_equal(other.sizes, det.sizes)
    assert [d.bbox for d in other.detect_tokens(tokens, frame.shape[:2])] == [
        d.bbox for d in small]
    state = det.enrolled_state()
    state["sizes"] = state["sizes"][:1]
    with pytest.raises(ValueError, match="sizes"):
        other.load_enrolled_state(state)


def test_box_fit_sizes_each_class_to_its_examples(model):
    """With box_fit on, enrolment measures on the prompt images how much too large or small
    the head's boxes come out and scales them: on a prompt image, the best query centred
    on the example then has the example's size (unless the factor hit its limit of 4).
    The factors travel in the enrolled state and change the cache key."""
    folder, size = model
    params = {"model": str(folder), "backend": "onnxruntime", "size": size, "min_score": 0.0,
              "threads": 1, "nms_iou": 1.0, "max_detections": 10_000}
    plain, fit = PromptDetector(params), PromptDetector({**params, "box_fit": "on"})
    # large examples, so that some of an untrained head's queries lie on each
    prompts = [PromptExample(f"{p.cls}-big", p.cls, p.image,
                             (0.2 * size, 0.25 * size, (0.35 + 0.1 * i) * size, 0.5 * size), None)
               for i, p in enumerate(_prompts(size))]
    plain.enroll(prompts, [])
    fit.enroll(prompts, [])
    assert not plain.box_gain.any() and fit.box_gain.shape == (3, 2)
    assert fit.box_gain.any() and np.all(np.abs(fit.box_gain) <= np.log(4) + 1e-6)
    assert plain.model_sha256 != fit.model_sha256
    checked = 0
    for c, p in enumerate(prompts):
        if np.any(np.abs(fit.box_gain[c]) >= np.log(4) - 1e-4):
            continue  # clipped: the box cannot reach the example's size
        tokens = fit.encode(p.image)
        x, y, w, h = p.bbox
        on = [d for d in fit.detect_tokens(tokens, p.image.shape[:2]) if d.cls == p.cls
              and x <= d.bbox[0] + d.bbox[2] / 2 <= x + w
              and y <= d.bbox[1] + d.bbox[3] / 2 <= y + h]
        if not on:
            continue  # its boxes were cut at the frame edge, which moved their centres
        best = max(on, key=lambda d: d.score)
        bx, by, bw, bh = best.bbox
        if bx <= 0 or by <= 0 or bx + bw >= size or by + bh >= size:
            continue  # cut at the frame edge
        assert np.allclose((bw, bh), (max(w, 1), max(h, 1)), rtol=0.02, atol=0.5)
        checked += 1
    assert checked, "no class to check: every factor clipped or every box at the edge"
    other = PromptDetector({**params, "box_fit": "on"})
    other.load_enrolled_state(fit.enrolled_state())
    assert np.array_equal(other.box_gain, fit.box_gain)
    state = fit.enrolled_state()
    state["box_gain"] = state["box_gain"][:2]
    with pytest.raises(ValueError, match="box_gain"):
        other.load_enrolled_state(state)
