"""ONNX export of the prompt detector: checker-clean graphs, dynamic axes, parity with torch."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.helpers.prompt_fixtures import DATA, SIZE

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from inspector.training.train import load_net
    from tests.helpers.prompt_fixtures import tiny_model

    folder = tiny_model(tmp_path_factory)
    return folder, load_net(folder)


def _images() -> list[np.ndarray]:
    from inspector.acquisition.synthetic_parts import frame_rng, render_part

    imgs = [render_part(frame_rng(3, 0), SIZE, SIZE)[0],
            render_part(frame_rng(3, 1), 2 * SIZE, SIZE)[0]]  # non-square: dynamic H, W
    for name in ("magtile", "neu-det"):  # real images when the shared data is present
        files = sorted((DATA / name / "images").glob("*.jpg"))[:1]
        for f in files:
            img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            imgs.append(cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    return imgs


def test_graphs_are_checker_clean_and_listed_in_the_manifest(exported):
    import onnx

    folder, _ = exported
    manifest = json.loads((folder / "manifest.json").read_text())
    for g in ("encoder", "prompt", "head"):
        onnx.checker.check_model(onnx.load(str(folder / f"{g}.onnx")), full_check=True)
        assert len(manifest["files"][f"{g}.onnx"]) == 64


def test_parity_torch_vs_onnxruntime_within_1e_3(exported):
    from inspector.training.export import parity

    folder, net = exported
    diff = parity(net, folder, _images())
    assert set(diff) == {"tokens", "embedding", "boxes", "scores", "masks"}
    assert max(diff.values()) < 1e-3, diff


def test_similarity_head_with_size_prior_exports_with_parity(tmp_path):
    """The similarity head (cosine and contrast maps only) with its size input is one ONNX
    graph like the other."""
    from inspector.training.export import parity
    from inspector.training.train import load_net
    from tests.helpers.prompt_fixtures import export_tiny

    folder = export_tiny(tmp_path, head_input="similarity", size_prior=True)
    net = load_net(folder)
    assert net.cfg.head_input == "similarity" and net.cfg.objectness and net.cfg.size_prior
    head = ort.InferenceSession(str(folder / "head.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in head.get_inputs()] == ["tokens", "prototypes", "sizes"]
    assert max(parity(net, folder, _images()[:2]).values()) < 1e-3


@pytest.mark.skipif(not (DATA / "magtile").is_dir(), reason="../shared/data is absent")
def test_parity_on_real_images(exported):
    from inspector.training.export import parity

    folder, net = exported
    files = sorted((DATA / "magtile" / "images").glob("*.jpg"))[:3]
    imgs = [cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (SIZE, SIZE)) for f in files]
    assert max(parity(net, folder, imgs).values()) < 1e-3


def test_dynamic_classes_and_prompts(exported):
    folder, net = exported
    d, n = net.cfg.dim, SIZE // 8
    sess = {g: ort.InferenceSession(str(folder / f"{g}.onnx"), providers=["CPUExecutionProvider"])
            for g in ("prompt", "head")}
    tok = np.random.default_rng(0).standard_normal((1, d, n, n)).astype(np.float32)
    for p in (1, 5):
        (emb,) = sess["prompt"].run(None, {"tokens": np.repeat(tok, p, 0),
                                           "weights": np.ones((p, n, n), np.float32),
                                           "spectrum": np.zeros((p, net.cfg.rings), np.float32)})
        assert emb.shape == (p, d)
    for c in (1, 2, 7):
        protos = np.eye(c, d, dtype=np.float32)
        boxes, scores, masks = sess["head"].run(None, {"tokens": tok, "prototypes": protos})
        assert boxes.shape == (c, net.cfg.top_k, 4)
        assert scores.shape == (c, net.cfg.top_k)
        assert masks.shape == (c, net.cfg.top_k, 2 * n, 2 * n)
