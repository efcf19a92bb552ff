"""Enrolment-time adaptation (inspector.training.adapt) and the eval's error split."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from inspector.acquisition.synthetic_parts import frame_rng, render_part
from inspector.evaluation.errors import OUTCOMES, add_splits, error_split, ranking
from inspector.inference.detectors.base import PromptExample
from inspector.training.adapt import AdaptConfig, synthesize

CATS = [{"id": 1, "name": "crack"}, {"id": 2, "name": "pit"}]


def _gt() -> dict:
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in (1, 2, 3)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},  # found
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20]},  # below clean
        {"id": 3, "image_id": 2, "category_id": 2, "bbox": [10, 10, 10, 10]},  # misclassified
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [50, 50, 10, 10]},  # never
    ]
    return {"images": images, "annotations": anns, "categories": CATS}


def test_error_split_sorts_every_instance_into_one_outcome():
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [11, 11, 20, 20], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 19], "score": 0.3},
        {"image_id": 2, "category_id": 1, "bbox": [10, 10, 10, 10], "score": 0.8},
        {"image_id": 2, "category_id": 2, "bbox": [80, 80, 10, 10], "score": 0.8},  # no overlap
        {"image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5},  # clean FP
    ]
    split = error_split(_gt(), dets)
    assert split["crack"] == {"found": 1, "below_clean_fp": 1, "misclassified": 0,
                              "never_localised": 0}
    assert split["pit"] == {"found": 0, "below_clean_fp": 0, "misclassified": 1,
                            "never_localised": 1}
    total = add_splits([split, split])
    assert sum(total["crack"].values()) == 4 and set(total["pit"]) == set(OUTCOMES)


def test_ranking_tells_ranked_scores_from_chance():
    """True positives above every false positive: AUC 1; below: 0; interleaved: 0.5."""
    tp = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
          {"image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20]}]
    fp = [{"image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10]},
          {"image_id": 1, "category_id": 2, "bbox": [10, 10, 20, 20]},  # right place, wrong class
          {"image_id": 2, "category_id": 2, "bbox": [80, 80, 10, 10]}]

    def scored(tp_scores, fp_scores):
        return ([{**d, "score": s} for d, s in zip(tp, tp_scores, strict=True)]
                + [{**d, "score": s} for d, s in zip(fp, fp_scores, strict=True)])

    good = ranking(_gt(), scored([0.9, 0.8], [0.1, 0.2, 0.3]))
    assert good["score_auc"] == 1.0 and good["true_positives"] == 2
    assert good["false_positives"] == 3
    assert ranking(_gt(), scored([0.1, 0.2], [0.9, 0.8, 0.7]))["score_auc"] == 0.0
    # class 1: tp 0.9 and 0.2 against fp 0.5 -> one win of two; class 2 has no true positive
    assert ranking(_gt(), scored([0.9, 0.2], [0.5, 0.99, 0.99]))["score_auc"] == 0.5
    # defects 1 and 2 boxed (the wrong-class box counts), 3 and 4 not: half localised
    assert good["localised"] == 0.5


def _prompts(n_images: int = 3, size: int = 160) -> tuple[list[PromptExample], list]:
    prompts, normals = [], []
    for i in range(n_images):
        img, truths = render_part(frame_rng(77, i), size, size, defect_rate=1.0, max_defects=2)
        for j, t in enumerate(truths):
            prompts.append(PromptExample(f"p{i}-{j}", t.kind, img,
                                         tuple(float(v) for v in t.bbox), t.mask))
    for i in range(2):
        normals.append(render_part(frame_rng(78, i), size, size, defect_rate=0.0)[0])
    return prompts, normals


@pytest.mark.parametrize("with_normals", [True, False])
def test_synthesize_pastes_every_example_and_is_seeded(with_normals):
    prompts, normals = _prompts()
    normals = normals if with_normals else []
    cfg = AdaptConfig(size=160, images=12, seed=3)
    a, b = synthesize(prompts, normals, cfg), synthesize(prompts, normals, cfg)
    c = synthesize(prompts, normals, AdaptConfig(size=160, images=12, seed=4))
    assert all(np.array_equal(x.image, y.image) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x.image, y.image) for x, y in zip(a, c, strict=True))
    pasted = a[len({id(p.image) for p in prompts}):][:12]
    assert all(s.instances for s in pasted if not with_normals)
    # each class shows up in at least two images (the episode sampler needs that)
    for cls in {p.cls for p in prompts}:
        assert sum(any(i.cls == cls for i in s.instances) for s in a) >= 2
    if with_normals:  # a pasted defect changes the good part under its box
        bg = [s for s in pasted if s.instances][0]
        x, y, w, h = (int(v) for v in bg.instances[0].bbox)
        ref = normals[pasted.index(bg) % len(normals)]
        diff = np.abs(bg.image[y:y + h, x:x + w].astype(int) - ref[y:y + h, x:x + w].astype(int))
        assert diff.max() > 0
        assert len(a) == len({id(p.image) for p in prompts}) + 12 + len(normals)


def test_enrolment_adapts_restores_from_state_and_reuses_its_folder(tmp_path, tmp_path_factory):
    from inspector.inference.detectors.prompt import PromptDetector
    from tests.helpers.prompt_fixtures import SIZE, tiny_model

    model = tiny_model(tmp_path_factory)
    prompts, normals = _prompts()
    params = {"model": str(model), "size": SIZE, "adapt": "on", "adapt_steps": 2,
              "adapt_images": 5, "state_dir": str(tmp_path / "state"), "min_score": 0.0}
    plain = PromptDetector({**params, "adapt": "off"})
    det = PromptDetector(params)
    assert det.model_sha256 != plain.model_sha256  # the adaptation is part of the key
    assert det.model_sha256 != PromptDetector({**params, "adapt_images": 6}).model_sha256
    before = det.model_sha256
    det.enroll(prompts, normals)
    rec = det.adapt_record
    assert rec is not None and rec["steps_done"] == 2 and rec["instances"] > len(prompts)
    assert rec["config"]["images"] == 5
    assert det.paths["head"].read_bytes() != (model / "head.onnx").read_bytes()
    assert det.paths["encoder"].read_bytes() == (model / "encoder.onnx").read_bytes()
    assert det.model_sha256 != before
    plain.enroll(prompts, normals)
    assert not np.allclose(plain.protos, det.protos)  # adapted prompt graph
    assert not plain.box_gain.any()  # box_fit "auto": boxes are fitted after adaptation only
    assert det.box_gain.shape == (len(det.classes), 2)
    state = det.enrolled_state()
    other = PromptDetector({**params, "state_dir": str(tmp_path / "state2")})
    other.load_enrolled_state(state)
    assert other.model_sha256 == det.model_sha256
    a, b = det.detect(normals[0]), other.detect(normals[0])
    assert [(d.cls, d.bbox) for d in a] == [(d.cls, d.bbox) for d in b]
    folder = det.paths["head"].parent
    det.enroll(prompts, normals)  # same recipe content: the adapted folder is reused
    assert det.paths["head"].parent == folder
    assert json.loads((folder / "adapt.json").read_text())["steps_done"] == 2


def test_adaptation_is_deterministic_for_a_seed(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from inspector.training.adapt import adapt_net, encoder_tokens
    from inspector.training.train import load_net
    from tests.helpers.prompt_fixtures import tiny_model

    model = tiny_model(tmp_path_factory)
    prompts, normals = _prompts()
    cfg = AdaptConfig(size=160, images=4, steps=2, seed=1, threads=1)
    samples = synthesize(prompts, normals, cfg)
    states = []
    for _ in range(2):
        net = load_net(model)
        adapt_net(net, samples, cfg, encoder_tokens(model, 1))
        states.append(net.trainable_state())
    base = load_net(model).trainable_state()
    assert all(torch.equal(states[0][k], states[1][k]) for k in base)
    assert any(not torch.equal(states[0][k], base[k]) for k in base if k.startswith("head."))
    assert all(torch.equal(states[0][k], base[k]) for k in base if k.startswith("fusion."))


def test_eval_reports_enrolment_time_good_parts_and_error_split(tmp_path: Path,
                                                                tmp_path_factory):
    from inspector.acquisition.synthetic_parts import iter_parts, save_coco
    from inspector.evaluation.run import EvalSettings, run_eval
    from tests.helpers.prompt_fixtures import runtime_model

    folder, size = runtime_model(tmp_path_factory)
    data = tmp_path / "tiny"
    train = list(iter_parts(4, 21, size, size, defect_rate=1.0))
    train += list(iter_parts(2, 23, size, size, defect_rate=0.0))
    test = list(iter_parts(3, 22, size, size, defect_rate=0.7))
    save_coco(data, train, "annotations_train.json", names=[f"tr{i}.png" for i in range(6)])
    save_coco(data, test, "annotations_test.json", names=[f"te{i}.png" for i in range(3)])
    out = tmp_path / "report"
    md = run_eval(EvalSettings(data=data, model=folder, shots=2, seeds=[0, 1], size=size,
                               out=out, threads=1, normals=2))
    r = json.loads((out / "report.json").read_text())
    n_test = len(json.loads((data / "annotations_test.json").read_text())["annotations"])
    assert sum(sum(c.values()) for c in r["errors"].values()) == 2 * n_test
    assert r["normals"] == 2 and r["enrol_s"]["max"] >= r["enrol_s"]["mean"] > 0
    assert "never_localised" in md and "Enrolment" in md
    assert "Ranking" in md and 0.0 <= r["per_seed"][0]["ranking"]["localised"] <= 1.0


def test_tokens_from_the_encoder_graph_match_the_torch_fusion(tmp_path_factory):
    """Adaptation takes its frozen tokens from the exported encoder (ONNX Runtime, many
    times faster than the torch backbone); they are the tokens the torch fusion gives."""
    torch = pytest.importorskip("torch")
    from inspector.training.adapt import _Memory, encoder_tokens
    from inspector.training.episodes import FeatureCache
    from inspector.training.train import load_net
    from tests.helpers.prompt_fixtures import SIZE, tiny_model

    model = tiny_model(tmp_path_factory)
    prompts, normals = _prompts()
    samples = synthesize(prompts, normals, AdaptConfig(size=SIZE, images=3, seed=2))
    src = [_Memory("recipe", samples)]
    onnx = FeatureCache.build(src, SIZE, progress=False, batch=4,
                              encode=encoder_tokens(model, 1))
    ref = FeatureCache.build(src, SIZE, progress=False, batch=4)
    net = load_net(model)
    with torch.no_grad():
        tokens = net.fusion(torch.from_numpy(ref.a["f8"].astype(np.float32)),
                            torch.from_numpy(ref.a["f16"].astype(np.float32))).numpy()
    assert onnx.a["f8"].shape == tokens.shape and onnx.a["f8"].dtype == np.float32
    # the torch path stores the backbone features as float16, hence the tolerance
    assert np.abs(onnx.a["f8"] - tokens).max() < 1e-3 * np.abs(tokens).max()
    for k in ("inst_box", "inst_w8", "inst_cls", "img_source"):
        assert np.array_equal(onnx.a[k], ref.a[k])


def test_an_adaptation_cut_short_by_its_time_cap_is_done_again_not_reused(tmp_path,
                                                                          tmp_path_factory):
    from inspector.training.adapt import adapt_model
    from tests.helpers.prompt_fixtures import SIZE, tiny_model

    model = tiny_model(tmp_path_factory)
    prompts, normals = _prompts()
    busy = AdaptConfig(size=SIZE, images=4, steps=3, seed=0, threads=1, max_seconds=1e-9)
    folder, rec = adapt_model(model, prompts, normals, busy, tmp_path)
    assert rec["capped_by_time"] and rec["steps_done"] == 1
    idle = replace(busy, max_seconds=150.0)
    again, rec = adapt_model(model, prompts, normals, idle, tmp_path)
    assert again == folder  # the same recipe's folder, adapted anew
    assert not rec["capped_by_time"] and rec["steps_done"] == 3
    assert json.loads((folder / "adapt.json").read_text()) == rec
    stamp = (folder / "head.onnx").stat().st_mtime_ns
    assert adapt_model(model, prompts, normals, busy, tmp_path) == (folder, rec)  # kept now
    assert (folder / "head.onnx").stat().st_mtime_ns == stamp
