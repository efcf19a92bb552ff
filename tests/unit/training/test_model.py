"""The prompt detector's torch model: shapes, CPE loss, PQS top-K, a training smoke run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from inspector.training.cpe import cpe_loss  # noqa: E402
from inspector.training.pqs import gumbel_topk, hard_topk  # noqa: E402
from inspector.training.prompt_net import NetConfig, PromptDetectorNet, prototypes  # noqa: E402


@pytest.fixture(scope="module")
def net() -> PromptDetectorNet:
    torch.manual_seed(0)
    return PromptDetectorNet(NetConfig(top_k=10)).eval()


@pytest.mark.parametrize("hw", [(160, 160), (128, 192)])
def test_token_and_head_shapes(net, hw):
    h, w = hw
    with torch.no_grad():
        tok = net.encoder()(torch.rand(1, 1, h, w))
        assert tok.shape == (1, net.cfg.dim, h // 8, w // 8)
        for c in (1, 3):
            protos = F.normalize(torch.randn(c, net.cfg.dim), dim=1)
            boxes, scores, masks = net.head(tok, protos)
            assert boxes.shape == (c, 10, 4)
            assert scores.shape == (c, 10)
            assert masks.shape == (c, 10, h // 4, w // 4)
            assert bool(((scores >= 0) & (scores <= 1)).all())
            assert bool((boxes[..., 2] >= boxes[..., 0]).all())


def test_prompt_embeddings_are_unit_and_depend_on_the_region(net):
    with torch.no_grad():
        tok = net.encoder()(torch.rand(1, 1, 160, 160)).expand(2, -1, -1, -1)
        wts = torch.zeros(2, 20, 20)
        wts[0, 2:5, 2:5] = 1
        wts[1, 12:18, 10:14] = 1
        e = net.prompt(tok, wts, torch.randn(2, net.cfg.rings))
    assert torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    assert float(e[0] @ e[1]) < 0.9999


def test_prototypes_are_normalised_class_means():
    emb = F.normalize(torch.randn(5, 8), dim=1)
    cls = torch.tensor([0, 0, 1, 1, 1])
    p = prototypes(emb, cls, 2)
    assert torch.allclose(p[1], F.normalize(emb[2:].mean(0), dim=0), atol=1e-6)


def test_cpe_margin_raises_the_loss_and_gradients_flow():
    g = torch.Generator().manual_seed(0)
    emb = F.normalize(torch.randn(12, 16, generator=g), dim=1).requires_grad_(True)
    cls = torch.arange(12) % 3
    protos = prototypes(emb, cls, 3)
    plain = cpe_loss(emb, protos, cls, alpha=16, margin=0.0)
    with_margin = cpe_loss(emb, protos, cls, alpha=16, margin=0.4)
    assert with_margin.item() > plain.item()
    with_margin.backward()
    assert emb.grad is not None and float(emb.grad.abs().sum()) > 0


def test_cpe_training_separates_prototypes():
    """Optimising the CPE loss pushes the prototypes of different classes apart."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(1, 16, generator=g)
    raw = (base + 0.3 * torch.randn(12, 16, generator=g)).requires_grad_(True)  # collapsed
    cls = torch.arange(12) % 3
    opt = torch.optim.SGD([raw], lr=0.5)

    def max_proto_cos() -> float:
        p = prototypes(F.normalize(raw, dim=1), cls, 3)
        c = p @ p.t()
        return float((c - 2 * torch.eye(3)).max())

    before = max_proto_cos()
    for _ in range(50):
        emb = F.normalize(raw, dim=1)
        loss = cpe_loss(emb, prototypes(emb, cls, 3), cls, alpha=16, margin=0.3)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert max_proto_cos() < before - 0.3


def test_gumbel_topk_picks_distinct_one_hot_rows_with_gradient():
    logits = torch.randn(2, 3, 50, requires_grad=True)
    sel = gumbel_topk(logits, 5, generator=torch.Generator().manual_seed(0))
    assert sel.shape == (2, 3, 5, 50)
    hard = sel.detach()
    assert torch.allclose(hard.sum(-1), torch.ones(2, 3, 5), atol=1e-5)
    assert torch.allclose(hard.round(), hard, atol=1e-5)  # one-hot forward
    assert bool((hard.sum(-2) <= 1 + 1e-5).all())  # no token twice
    (sel * torch.randn(50)).sum().backward()
    assert float(logits.grad.abs().sum()) > 0  # straight-through: soft gradient


def test_gumbel_topk_without_noise_is_the_hard_topk():
    logits = torch.randn(4, 64)
    sel = gumbel_topk(logits, 6, noise=False)
    picked = sel.argmax(-1).sort(-1).values
    assert torch.equal(picked, hard_topk(logits, 6).sort(-1).values)


def test_training_smoke_run_improves_validation_loss(tmp_path: Path):
    """A short episodic run on cached synthetic features lowers the held-out loss."""
    from inspector.training.episodes import FeatureCache, Source
    from inspector.training.train import TrainConfig, train

    cache = FeatureCache.load_or_build([Source("synthetic", "synthetic", n=12, seed=3)], 160,
                                       tmp_path / "cache", progress=False)
    assert cache.a["f8"].shape[1:] == (40, 20, 20)
    again = FeatureCache.load_or_build([Source("synthetic", "synthetic", n=12, seed=3)], 160,
                                       tmp_path / "cache", progress=False)
    assert np.array_equal(again.a["inst_box"], cache.a["inst_box"])  # read back, same data
    cfg = TrainConfig(steps=15, warmup=1, val_episodes=8, threads=2, lr=3e-3, max_minutes=5)
    _, record = train(cache, cfg, NetConfig(top_k=10), progress=False)
    assert record["steps_done"] == 15
    assert record["val_after"]["loss"] < 0.8 * record["val_before"]["loss"]


def test_two_builds_of_one_cache_at_once_both_succeed(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    """Leave-one-out trainings side by side build the same cache (it holds every source):
    each must end with the cache, and no half-written file stays behind. The two writes
    are made to finish before either rename, the interleaving that lost a run its file."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from inspector.training import episodes
    from inspector.training.episodes import FeatureCache, Source

    both_written = threading.Barrier(2, timeout=60)
    savez = np.savez

    def savez_then_wait(*args, **kwargs) -> None:
        savez(*args, **kwargs)
        both_written.wait()

    monkeypatch.setattr(episodes.np, "savez", savez_then_wait)

    def build(_: int) -> FeatureCache:
        return FeatureCache.load_or_build([Source("synthetic", "synthetic", n=4, seed=5)], 96,
                                          tmp_path, progress=False)

    with ThreadPoolExecutor(2) as ex:
        a, b = ex.map(build, range(2))
    assert np.array_equal(a.a["inst_box"], b.a["inst_box"])
    assert [p.name for p in tmp_path.iterdir()] == [
        f"features-{FeatureCache.key([Source('synthetic', 'synthetic', n=4, seed=5)], 96)}.npz"]


def test_contrast_maps_light_up_the_odd_token_and_ignore_scale():
    from inspector.training.prompt_net import contrast_maps

    torch.manual_seed(1)
    base = torch.randn(1, 8, 1, 1).expand(1, 8, 12, 12).clone()  # one uniform surface
    flat = contrast_maps(base)
    assert flat.shape == (1, 4, 12, 12)
    assert float(flat[:, :3].abs().max()) < 1e-5  # nothing differs from its surroundings
    odd = base.clone()
    odd[0, :, 5, 7] = -base[0, :, 5, 7]  # one token unlike the rest
    maps = contrast_maps(odd)
    for ch in range(3):
        assert int(maps[0, ch].argmax()) == 5 * 12 + 7
    # a brighter or darker surface (tokens scaled) changes none of the cosine maps
    assert torch.allclose(contrast_maps(3.0 * odd)[:, :3], maps[:, :3], atol=1e-5)


def test_similarity_head_shapes_and_training_smoke(tmp_path: Path):
    """The similarity head gives the same outputs as the token head and trains."""
    from inspector.training.episodes import FeatureCache, Source
    from inspector.training.train import TrainConfig, train

    torch.manual_seed(0)
    net = PromptDetectorNet(NetConfig(top_k=10, head_input="similarity", objectness=True))
    with torch.no_grad():
        tok = net.eval().encoder()(torch.rand(1, 1, 128, 192))
        boxes, scores, masks = net.head(tok, F.normalize(torch.randn(3, net.cfg.dim), dim=1))
    assert boxes.shape == (3, 10, 4) and scores.shape == (3, 10)
    assert masks.shape == (3, 10, 32, 48)
    assert not hasattr(net.head, "tok_in")  # the head never sees the token features
    cache = FeatureCache.load_or_build([Source("synthetic", "synthetic", n=12, seed=3)], 160,
                                       tmp_path / "cache", progress=False)
    cfg = TrainConfig(steps=15, warmup=1, val_episodes=8, threads=2, lr=3e-3, max_minutes=5)
    _, record = train(cache, cfg, net.cfg, progress=False)
    assert record["val_after"]["loss"] < 0.8 * record["val_before"]["loss"]
    assert 0.0 <= record["val_after"]["box_hit"] <= 1.0


def test_a_left_out_source_is_measured_apart(tmp_path: Path):
    """Training without a source reports the left-out source's figures on their own."""
    from inspector.training.episodes import FeatureCache, Source
    from inspector.training.train import TrainConfig, train

    sources = [Source("synthetic", "synthetic", n=10, seed=3),
               Source("other", "synthetic", n=10, seed=4)]
    cache = FeatureCache.load_or_build(sources, 160, tmp_path / "cache", progress=False)
    cfg = TrainConfig(steps=4, warmup=1, val_episodes=4, threads=2, max_minutes=5,
                      source_weights={"other": 0.0})
    _, record = train(cache, cfg, NetConfig(top_k=10), progress=False)
    assert record["val_left_out_sources"] == ["other"]
    assert record["val_left_out"] != record["val_after"]
    cfg.source_weights = {}
    _, record = train(cache, cfg, NetConfig(top_k=10), progress=False)
    assert "val_left_out" not in record


def test_unknown_head_input_is_refused_by_name():
    with pytest.raises(ValueError, match="head_input"):
        PromptDetectorNet(NetConfig(head_input="pixels"))


def test_size_prior_scales_boxes_with_the_examples():
    """Twice as large examples give boxes twice as large, at the same queries."""
    from inspector.training.prompt_net import prompt_sizes

    torch.manual_seed(2)
    net = PromptDetectorNet(NetConfig(top_k=10, size_prior=True)).eval()
    wh = torch.tensor([[10.0, 40.0], [30.0, 20.0], [12.0, 4.0]])
    sizes = prompt_sizes(wh, torch.tensor([0, 0, 1]), 2)
    assert torch.allclose(sizes.exp(), torch.tensor([[(10 * 30) ** 0.5, (40 * 20) ** 0.5],
                                                     [12.0, 4.0]]), rtol=1e-5)
    with torch.no_grad():
        tok = net.encoder()(torch.rand(1, 1, 160, 160))
        protos = F.normalize(torch.randn(2, net.cfg.dim), dim=1)
        b1, s1, _ = net.head(tok, protos, sizes)
        b2, s2, _ = net.head(tok, protos, sizes + float(np.log(2.0)))
    assert torch.equal(s1, s2)  # selection and scores do not depend on the size
    w1, w2 = b1[..., 2] - b1[..., 0], b2[..., 2] - b2[..., 0]
    assert torch.allclose(w2, 2 * w1, rtol=1e-4)
    assert not torch.allclose(b1[0, :, 3] - b1[0, :, 1], b1[1, :, 3] - b1[1, :, 1])
