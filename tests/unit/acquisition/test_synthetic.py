"""The synthetic part generator and the `synthetic` frame source.

Ground truth is only useful if it is exactly where the defects were drawn, so the key
test renders the same part with and without a defect and checks that the image changed
inside the truth mask and nowhere else.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from inspector.acquisition import EndOfStream, build_source
from inspector.acquisition.synthetic_parts import (
    DEFECT_KINDS,
    frame_rng,
    good_part,
    iter_parts,
    render_part,
    write_coco,
)
from inspector.config.sources import SyntheticSourceConfig
from inspector.core.frames import FramePool

SEED = 31


def _source(**kw) -> tuple:
    pool = FramePool(kw.pop("pool_size", 4))
    src = build_source("cam0", SyntheticSourceConfig(kind="synthetic", seed=SEED, **kw))
    src.open(pool)
    return src, pool


def test_render_is_deterministic_per_seed():
    a, ta = render_part(frame_rng(SEED, 3), defect_rate=1.0, max_defects=3)
    b, tb = render_part(frame_rng(SEED, 3), defect_rate=1.0, max_defects=3)
    c, _ = render_part(frame_rng(SEED + 1, 3), defect_rate=1.0, max_defects=3)
    assert a.dtype == np.uint8 and a.shape == (512, 512)
    assert np.array_equal(a, b)
    assert [(t.kind, t.bbox) for t in ta] == [(t.kind, t.bbox) for t in tb]
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(ta, tb, strict=True))
    assert not np.array_equal(a, c)


def test_render_writes_into_given_buffer():
    buf = np.zeros((256, 320), np.uint8)
    img, _ = render_part(frame_rng(SEED, 0), 320, 256, out=buf)
    assert img is buf and buf.std() > 5
    with pytest.raises(ValueError, match="out must be uint8"):
        render_part(frame_rng(SEED, 0), 320, 256, out=np.zeros((256, 320), np.float32))
    with pytest.raises(ValueError, match="unknown defect kinds"):
        render_part(frame_rng(SEED, 0), kinds=["dent"])


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_truth_mask_is_where_the_defect_was_drawn(kind):
    """Same seed with and without the defect: only sensor noise (sigma 1.5) may differ
    outside the mask; inside it the defect must stand well above that."""
    for i in range(3):
        with_d, truths = render_part(frame_rng(SEED, 100 + i), defects=[kind])
        without, none = render_part(frame_rng(SEED, 100 + i), defects=[])
        assert none == [] and len(truths) == 1
        t = truths[0]
        assert t.kind == kind and t.mask.dtype == bool and t.mask.shape == (512, 512)
        ys, xs = np.nonzero(t.mask)
        assert t.bbox == (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
        diff = np.abs(with_d.astype(np.float32) - without.astype(np.float32))
        far = ~cv2.dilate(t.mask.astype(np.uint8), np.ones((41, 41), np.uint8)).astype(bool)
        assert diff[t.mask].mean() > 8.0, f"{kind}: defect hardly visible in its mask"
        assert diff[far].mean() < 2.5, f"{kind}: image changed away from the truth mask"


def test_every_kind_is_rendered_and_defect_rate_holds():
    kinds, defective = Counter(), 0
    for _img, truths in iter_parts(60, SEED, 256, 256, defect_rate=0.5, max_defects=2):
        defective += bool(truths)
        kinds.update(t.kind for t in truths)
        for t in truths:
            assert t.mask.any() and 0 < t.bbox[2] <= 256 and 0 < t.bbox[3] <= 256
        masks = [t.mask for t in truths]
        assert not any((a & b).any() for i, a in enumerate(masks) for b in masks[i + 1:])
    assert set(kinds) == set(DEFECT_KINDS)
    assert 18 <= defective <= 42  # binomial(60, 0.5): far outside only if the rate is wrong
    all_kinds = render_part(frame_rng(SEED, 7), defects=DEFECT_KINDS)[1]
    assert sorted(t.kind for t in all_kinds) == sorted(DEFECT_KINDS)
    assert render_part(frame_rng(SEED, 8), defect_rate=0.0)[1] == []
    assert good_part(frame_rng(SEED, 9)).shape == (512, 512)


def test_write_coco_round_trips_the_truth(tmp_path):
    path = write_coco(tmp_path / "ds", n_images=4, seed=SEED, width=256, height=192)
    coco = json.loads(path.read_text())
    assert {c["name"] for c in coco["categories"]} == set(DEFECT_KINDS)
    assert len(coco["images"]) == 4
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    parts = list(iter_parts(4, SEED, 256, 192, defect_rate=0.7, max_defects=2))
    assert len(coco["annotations"]) == sum(len(t) for _, t in parts) > 0
    for info, (img, truths) in zip(coco["images"], parts, strict=True):
        disk = cv2.imread(str(path.parent / "images" / info["file_name"]), cv2.IMREAD_GRAYSCALE)
        assert np.array_equal(disk, img)
        anns = [a for a in coco["annotations"] if a["image_id"] == info["id"]]
        for ann, t in zip(anns, truths, strict=True):
            assert cats[ann["category_id"]] == t.kind and ann["bbox"] == list(t.bbox)
            assert np.array_equal(mask_utils.decode(ann["segmentation"]).astype(bool), t.mask)


def test_source_is_deterministic_and_returns_buffers():
    a, pool_a = _source(count=3)
    b, _ = _source(count=3)
    for k in range(3):
        fa, fb = a.grab(1.0), b.grab(1.0)
        assert fa.frame_id == fb.frame_id == k
        assert fa.part_id == f"cam0-{SEED}-{k:06d}" and fa.camera == "cam0"
        assert np.array_equal(fa.image, fb.image)
        assert [t.kind for t in fa.truth] == [t.kind for t in fb.truth]
        assert np.array_equal(fa.image, render_part(frame_rng(SEED, k), defect_rate=0.5)[0])
        assert fa.t_arrival <= time.monotonic() and abs(fa.ts_capture - time.time()) < 5
        assert pool_a.in_use() == 1
        fa.done()
        fb.done()
        assert pool_a.in_use() == 0
    with pytest.raises(EndOfStream):
        a.grab(1.0)
    a.close()
    a.close()


def test_pool_exhaustion_drops_frame():
    src, pool = _source(pool_size=2, width=128, height=96)
    held = [src.grab(1.0), src.grab(1.0)]
    assert all(f is not None and f.image.shape == (96, 128) for f in held)
    assert src.grab(1.0) is None and pool.exhausted == 1
    held[0].done()
    f = src.grab(1.0)
    assert f is not None and f.frame_id == 3  # the dropped frame used up id 2
    assert f.image is held[0].image  # the released buffer is reused, not reallocated


def test_rate_is_honoured_and_timeout_respected():
    src, _ = _source(rate_hz=40.0, width=64, height=64, pool_size=8)
    t0 = time.monotonic()
    for _ in range(5):
        src.grab(1.0).done()
    elapsed = time.monotonic() - t0
    assert 4 / 40 - 0.01 <= elapsed < 1.0  # 4 periods between 5 frames
    t1 = time.monotonic()
    assert src.grab(0.001) is None  # next frame is 25 ms away
    assert time.monotonic() - t1 < 0.02
    assert src.grab(1.0) is not None
