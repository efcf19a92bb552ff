"""Normalised cross-correlation through the frame's spectrum, against OpenCV's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspector.inference.detectors import ncc as ncc_module
from inspector.inference.detectors.ncc import FrameCorrelator, SpectrumCache


def textured(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A grey frame with texture, gradients and a flat patch (where both give 0)."""
    f = cv2.GaussianBlur(rng.normal(128, 40, (h, w)).astype(np.float32), (0, 0), 1.5)
    f += np.linspace(0, 60, w, dtype=np.float32)[None, :]
    f[:24, :32] = 77.0
    return f


@pytest.mark.parametrize("shape", [(5, 5), (13, 13), (30, 8), (8, 41), (80, 60)])
def test_the_map_is_opencvs_tm_ccoeff_normed(shape):
    rng = np.random.default_rng(sum(shape))
    frame = textured(rng, 151, 203)
    fc = FrameCorrelator(frame)
    th, tw = shape
    y, x = 40, 70
    t = frame[y:y + th, x:x + tw] + rng.normal(0, 3, shape).astype(np.float32)
    want = np.nan_to_num(cv2.matchTemplate(frame, t, cv2.TM_CCOEFF_NORMED), nan=0.0)
    got = fc.ncc(t.shape, fc.template_spectrum(t))
    assert got.shape == want.shape and got.dtype == np.float32
    assert np.abs(got - want).max() < 2e-3
    assert np.unravel_index(got.argmax(), got.shape) == np.unravel_index(want.argmax(),
                                                                         want.shape)
    assert np.all(got[:24 - th, :32 - tw] == 0) if th < 24 and tw < 32 else True


def test_flat_templates_and_templates_larger_than_the_frame():
    rng = np.random.default_rng(1)
    frame = textured(rng, 40, 50)
    fc = FrameCorrelator(frame)
    assert fc.template_spectrum(np.full((9, 9), 5, np.float32)) is None
    big = textured(rng, 60, 70)  # clipped to the frame: one window, the whole frame
    got = fc.ncc(big.shape, fc.template_spectrum(big))
    want = cv2.matchTemplate(frame, big[:40, :50].copy(), cv2.TM_CCOEFF_NORMED)
    assert got.shape == (1, 1) and abs(float(got[0, 0]) - float(want[0, 0])) < 2e-3
    with pytest.raises(ValueError, match="2-D frame"):
        FrameCorrelator(np.zeros((4, 4, 3), np.float32))


def test_cached_spectra_are_the_ones_computed_afresh(monkeypatch):
    rng = np.random.default_rng(2)
    templates = [textured(rng, 60, 60)[30:42, 40:49], textured(rng, 60, 60)[30:, 35:]]
    cache = SpectrumCache()
    a, b = FrameCorrelator(textured(rng, 64, 80)), FrameCorrelator(textured(rng, 64, 80))
    cache.begin([a], [2])
    first = [cache.get(a, k, t) for k, t in enumerate(templates)]
    cache.begin([b], [2])  # same shape: kept
    assert all(cache.get(b, k, t) is first[k] for k, t in enumerate(templates))
    other = FrameCorrelator(textured(rng, 50, 80))
    cache.begin([other], [2])  # a new shape: computed for it
    s = cache.get(other, 0, templates[0])
    assert s.shape != first[0].shape
    np.testing.assert_array_equal(s, other.template_spectrum(templates[0]))
    monkeypatch.setattr(ncc_module, "SPECTRA_BUDGET", 1)  # beyond the budget: not kept
    cache.begin([a], [2])
    assert cache.get(a, 0, templates[0]) is not cache.get(a, 0, templates[0])
