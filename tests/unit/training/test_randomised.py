"""Domain-randomised training parts: made-up products with their own defect kinds."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.cli.main import main as cli_main
from inspector.cli.model import default_sources
from inspector.training.randomised import FAMILIES, domain, domain_images


def test_a_domain_is_the_same_for_its_seed_and_differs_between_seeds():
    a = list(domain_images(5, 4, 160))
    b = list(domain_images(5, 4, 160))
    c = list(domain_images(6, 4, 160))
    for (ia, fa), (ib, fb) in zip(a, b, strict=True):
        assert np.array_equal(ia, ib)
        assert [(k, box) for k, box, _ in fa] == [(k, box) for k, box, _ in fb]
    assert not np.array_equal(a[0][0], c[0][0])


def test_each_defect_box_is_its_mask_and_names_a_kind_of_the_domain():
    seen = set()
    for seed in range(12):
        kinds = {k.name for k in domain(seed).kinds}
        assert 2 <= len(kinds) <= 4
        for img, found in domain_images(seed, 6, 160):
            assert img.dtype == np.uint8 and img.shape == (160, 160)
            for name, (x, y, w, h), mask in found:
                assert name in kinds
                seen.add(name.split("-", 1)[1])
                ys, xs = np.nonzero(mask)
                assert mask.sum() >= 6
                assert (x, y, w, h) == (xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                        ys.max() - ys.min() + 1)
    assert seen <= set(FAMILIES) and len(seen) >= 4


def test_a_defect_stands_out_from_the_surface_around_it():
    """Labels are not empty: the pixels under a mask differ from a ring around it (in
    units of the image's spread) by half a spread or more in most cases, and by more
    than one at the median, as faint real defects do."""
    contrast = []
    for seed in range(12):
        for img, found in domain_images(seed, 6, 160):
            for _name, _box, mask in found:
                ring = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
                ring &= ~mask
                contrast.append(abs(img[mask].mean() - img[ring].mean()) / img.std())
    assert len(contrast) > 50
    assert np.median(contrast) > 1.0
    assert np.mean(np.array(contrast) > 0.5) > 0.85


def test_train_sources_add_the_made_up_products_only_when_asked(tmp_path):
    plain = default_sources(tmp_path)
    more = default_sources(tmp_path, randomised=3, randomised_images=5)
    assert [s.kind for s in plain] == ["synthetic"]
    rnd = [s for s in more if s.kind == "randomised"]
    assert [s.name for s in rnd] == ["rnd-0", "rnd-1", "rnd-2"]
    assert len({s.seed for s in rnd}) == 3
    samples = list(rnd[0].samples())
    assert len(samples) == rnd[0].count() == 5
    assert all(ins.cls.startswith("k") for _, smp in samples for ins in smp.instances)


@pytest.mark.parametrize("flags, named", [
    (["--randomised", "-1"], "--randomised -1"),
    (["--randomised", "3", "--randomised-images", "1"], "--randomised-images 1"),
    (["--randomised", "3", "--randomised-weight", "0"], "--randomised-weight 0"),
])
def test_train_refuses_bad_randomised_flags_by_name_and_writes_nothing(tmp_path, capsys, flags,
                                                                       named):
    out = tmp_path / "model"
    rc = cli_main(["train", "--data", str(tmp_path), "--out", str(out), "--cache",
                   str(tmp_path / "cache"), *flags])
    assert rc == 2
    assert named in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "cache").exists()
