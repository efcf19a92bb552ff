"""Spectral engine: the reference against first principles, the CPU path against the reference.

Tolerances (profiles sum to 1; intensities in full-scale units):
* CPU path vs reference: |diff| <= 1e-5 per ring, dc |diff| <= 1e-6 (float32 vs float64);
* exact properties (90-degree rotation, circular shift with the window off): 1e-6;
* arbitrary rotation of a broadband texture: L1 distance <= 0.2, while a texture
  scaled by 0.6 lies >= 0.4 away (checked in the same test, so the bound means
  something).
The simulated CUDA kernel is checked in test_spectral_cuda.py.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import scipy.fft
from hypothesis import given, settings
from hypothesis import strategies as st

from inspector.inference.spectral import (
    SpectralInputError,
    cuda_available,
    grid_boxes,
    pick_backend,
    radial_profiles,
    radial_profiles_reference,
    tables,
)
from inspector.inference.spectral.reference import extract_patches, spectrum

CPU_TOL = 1e-5
EXACT_TOL = 1e-6
PROPS = settings(max_examples=25, deadline=None)


def cpu(frame, boxes=None, **kw):
    """The CPU fast path with the dc, through the public entry point."""
    return radial_profiles(frame, boxes, backend="cpu", return_dc=True, **kw)


def ref(frame, boxes=None, **kw):
    return radial_profiles_reference(frame, boxes, return_dc=True, **kw)


def random_frame(rng: np.random.Generator, shape: tuple[int, int], dtype: str) -> np.ndarray:
    if dtype == "uint8":
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if dtype == "uint16":
        return rng.integers(0, 65536, shape, dtype=np.uint16)
    return rng.random(shape, dtype=np.float32)


def brute_force_profile(patch: np.ndarray, rings: int, log: bool) -> np.ndarray:
    """Ring means written out loop by loop from the spec's words, for one S x S patch."""
    size = patch.shape[0]
    w1 = [math.sin(math.pi * (i + 0.5) / size) ** 2 for i in range(size)]
    wsum = sum(w1) ** 2
    mean = sum(w1[i] * w1[j] * patch[i, j] for i in range(size) for j in range(size)) / wsum
    x = np.array([[w1[i] * w1[j] * (patch[i, j] - mean) for j in range(size)]
                  for i in range(size)])
    spec = np.fft.fft2(x)
    delta = (size / 2) / rings
    sums = [0.0] * rings
    counts = [0] * rings
    for a in range(size):
        for b in range(size):
            u = a if a < size // 2 else a - size
            v = b if b < size // 2 else b - size
            rho = math.hypot(u, v)
            for k in range(rings):
                if 0.5 + k * delta <= rho < 0.5 + (k + 1) * delta:
                    mag = abs(spec[a, b])
                    sums[k] += math.log1p(mag) if log else mag
                    counts[k] += 1
    means = np.array(sums) / np.array(counts)
    return means / means.sum()


@pytest.mark.parametrize("size,rings,log", [(32, 16, True), (32, 5, False), (64, 32, True)])
def test_reference_matches_brute_force_rings(size: int, rings: int, log: bool) -> None:
    rng = np.random.default_rng(size + rings)
    frame = rng.random((size, size), dtype=np.float32)  # box = frame: resampling is identity
    got = radial_profiles_reference(frame, [[0, 0, size, size]], size=size, rings=rings, log=log)
    want = brute_force_profile(frame.astype(np.float64), rings, log)
    np.testing.assert_allclose(got[0], want, atol=1e-6)


def test_ring_tables_cover_the_disc_once() -> None:
    for size in (32, 64):
        tab = tables(size, size // 2)
        assert tab.ring_of[0, 0] == -1  # DC is in no ring
        assert (tab.counts > 0).all()
        assert tab.counts.sum() == len(tab.ring_idx)
        # radius r rounds to ring r-1: the axis frequency (0, r) is in ring r-1
        assert [tab.ring_of[0, r] for r in range(1, size // 2)] == list(range(size // 2 - 1))
        assert tab.ring_of[size // 2, 0] == size // 2 - 1  # Nyquist on the axis is kept
        corner = size // 2  # (S/2, S/2) has rho = S/sqrt(2) > S/2 + 0.5: left out
        assert tab.ring_of[corner, corner] == -1


def test_extraction_matches_opencv_bilinear() -> None:
    rng = np.random.default_rng(3)
    for shape in ((48, 48), (20, 27), (90, 70)):
        frame = rng.random(shape, dtype=np.float32)
        for size in (32, 64):
            h, w = shape
            got = extract_patches(frame, np.array([[0.0, 0.0, w, h]]), size)[0]
            want = cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR)
            np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("size", [32, 64])
def test_cpu_matches_reference(dtype: str, size: int) -> None:
    rng = np.random.default_rng(size + {"uint8": 1, "uint16": 2, "float32": 3}[dtype])
    frame = random_frame(rng, (120, 150), dtype)
    n = 40
    boxes = np.column_stack([
        rng.uniform(-30, 160, n), rng.uniform(-30, 130, n),
        rng.uniform(0.5, 90, n), rng.uniform(0.5, 90, n),
    ])
    boxes[:5] = [[0, 0, size, size], [7, 9, size, size], [150 - size, 120 - size, size, size],
                 [-3, 100, size, size], [12.5, 3.25, 2 * size, size / 2]]
    for kw in ({}, {"log": False}, {"rings": 7}, {"window": False}):
        got, got_dc = cpu(frame, boxes, size=size, **kw)
        want, want_dc = ref(frame, boxes, size=size, **kw)
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=CPU_TOL)
        np.testing.assert_allclose(got_dc, want_dc, atol=1e-6)


def test_nearly_flat_patches_keep_their_precision() -> None:
    # boxes almost entirely beyond a corner: a few sample rows see real pixels, the rest
    # the replicated edge; float32 rounding of the raw samples would swamp that signal
    rng = np.random.default_rng(12)
    frame = rng.integers(0, 256, (120, 150), dtype=np.uint8)
    boxes = [[-20.4, 118.2, 7.65, 40.0], [-22.43, -11.27, 24.0, 0.89],
             [148.3, 118.4, 40.0, 40.0]]
    for size in (32, 64):
        got, _ = cpu(frame, boxes, size=size)
        want, _ = ref(frame, boxes, size=size)
        assert (want.sum(axis=1) > 0.99).all()  # not flat: the profiles are defined
        np.testing.assert_allclose(got, want, atol=CPU_TOL)


def test_cpu_is_deterministic_across_thread_counts() -> None:
    rng = np.random.default_rng(5)
    frame = random_frame(rng, (256, 256), "uint8")
    boxes = grid_boxes(frame.shape, 32, 16)
    from inspector.inference.spectral.cpu import radial_profiles_cpu

    one, _ = radial_profiles_cpu(frame, boxes, 32, 16, threads=1)
    two, _ = radial_profiles_cpu(frame, boxes, 32, 16, threads=2)
    np.testing.assert_array_equal(one, two)


@PROPS
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(4, 70), w=st.integers(4, 70),
       dtype=st.sampled_from(["uint8", "uint16", "float32"]), size=st.sampled_from([32, 64]))
def test_rotation_by_90_degrees_is_exact(seed: int, h: int, w: int, dtype: str, size: int) -> None:
    rng = np.random.default_rng(seed)
    frame = random_frame(rng, (h, w), dtype)
    x, y = rng.uniform(-10, w), rng.uniform(-10, h)
    bw, bh = rng.uniform(0.5, 60, 2)
    rotated = np.ascontiguousarray(np.rot90(frame))  # (X, Y) -> (Y, W - X)
    box_r = [[y, w - x - bw, bh, bw]]
    for fn in (ref, cpu):
        a, dc_a = fn(frame, [[x, y, bw, bh]], size=size)
        b, dc_b = fn(rotated, box_r, size=size)
        np.testing.assert_allclose(a, b, atol=EXACT_TOL)
        np.testing.assert_allclose(dc_a, dc_b, atol=EXACT_TOL)


def render(size: int, freqs, angles, phases, rot: float) -> np.ndarray:
    """A sum of sinusoids sampled on the S x S grid, rotated by `rot` about the centre."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) - (size / 2 - 0.5)
    img = np.zeros((size, size))
    for f, a, p in zip(freqs, angles, phases, strict=True):
        img += np.cos(2 * np.pi * f / size * (xx * np.cos(a + rot) + yy * np.sin(a + rot)) + p)
    return (0.5 + 0.1 * img).astype(np.float32)


@PROPS
@given(seed=st.integers(0, 2**32 - 1), rot=st.floats(0, 2 * np.pi), log=st.booleans())
def test_arbitrary_rotation_within_tolerance(seed: int, rot: float, log: bool) -> None:
    rng = np.random.default_rng(seed)
    size = 64
    freqs, angles, phases = rng.uniform(4, 24, 32), rng.uniform(0, np.pi, 32), rng.uniform(
        0, 2 * np.pi, 32)
    box = [[0, 0, size, size]]
    base, _ = cpu(render(size, freqs, angles, phases, 0.0), box, size=size, log=log)
    turned, _ = cpu(render(size, freqs, angles, phases, rot), box, size=size, log=log)
    other, _ = cpu(render(size, 0.6 * freqs, angles, phases, 0.0), box, size=size, log=log)
    assert np.abs(base - turned).sum() <= 0.2
    assert np.abs(base - other).sum() >= 0.4


@PROPS
@given(freq=st.floats(2, 14), angle=st.floats(0, 2 * np.pi), phase=st.floats(0, 2 * np.pi))
def test_single_sinusoid_peaks_at_its_radius_in_any_direction(freq, angle, phase) -> None:
    patch = render(32, [freq], [angle], [phase], 0.0)
    prof, _ = cpu(patch, [[0, 0, 32, 32]], size=32, log=False)
    assert abs(int(prof[0].argmax()) - (freq - 1)) <= 1.0  # ring k holds radius ~ k + 1


@PROPS
@given(seed=st.integers(0, 2**32 - 1), dy=st.integers(-40, 40), dx=st.integers(-40, 40),
       size=st.sampled_from([32, 64]), log=st.booleans())
def test_circular_shift_invariance_without_window(seed, dy, dx, size, log) -> None:
    rng = np.random.default_rng(seed)
    frame = random_frame(rng, (size, size), "uint8")
    rolled = np.roll(frame, (dy, dx), axis=(0, 1))
    box = [[0, 0, size, size]]
    for fn in (ref, cpu):
        a, dc_a = fn(frame, box, size=size, window=False, log=log)
        b, dc_b = fn(rolled, box, size=size, window=False, log=log)
        np.testing.assert_allclose(a, b, atol=EXACT_TOL)
        np.testing.assert_allclose(dc_a, dc_b, atol=EXACT_TOL)


@PROPS
@given(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([32, 64]), window=st.booleans())
def test_parseval_and_half_plane_weights(seed: int, size: int, window: bool) -> None:
    rng = np.random.default_rng(seed)
    patches = rng.random((3, size, size))
    spec, dc = spectrum(patches, window=window)
    w1 = tables(size, size // 2).window if window else np.ones(size)
    x = np.outer(w1, w1) * (patches - dc[:, None, None])
    power = np.abs(spec) ** 2
    np.testing.assert_allclose(power.sum(axis=(1, 2)), size * size * (x**2).sum(axis=(1, 2)),
                               rtol=1e-10)
    assert np.abs(spec[:, 0, 0]).max() < 1e-9  # DC removed
    # the CPU path bins the rfft half plane: its weights must give the full-plane means
    tab = tables(size, size // 2)
    half_power = np.abs(scipy.fft.rfft2(x)) ** 2
    via_half = np.einsum("nab,ab->n", half_power, tab.half_weight.astype(np.float64))
    full = np.zeros(3)
    for k in range(tab.rings):
        members = tab.ring_of == k
        full += power[:, members].mean(axis=1)
    np.testing.assert_allclose(via_half, full, rtol=1e-6)


@PROPS
@given(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([32, 64]))
def test_boxes_crossing_the_border_see_replicated_edges(seed: int, size: int) -> None:
    rng = np.random.default_rng(seed)
    frame = random_frame(rng, (50, 60), "uint8")
    pad = 40
    padded = np.pad(frame, pad, mode="edge")
    boxes = np.column_stack([rng.uniform(-35, 90, 6), rng.uniform(-35, 80, 6),
                             rng.uniform(1, 45, 6), rng.uniform(1, 45, 6)])
    shifted = boxes + [pad, pad, 0, 0]
    for fn in (ref, cpu):
        a, dc_a = fn(frame, boxes, size=size)
        b, dc_b = fn(padded, shifted, size=size)
        np.testing.assert_allclose(a, b, atol=EXACT_TOL)
        np.testing.assert_allclose(dc_a, dc_b, atol=EXACT_TOL)
    got, _ = cpu(frame, boxes, size=size)
    want, _ = ref(frame, boxes, size=size)
    np.testing.assert_allclose(got, want, atol=CPU_TOL)


def test_box_outside_a_flat_border_is_flat_and_zero() -> None:
    frame = np.full((40, 40), 10, dtype=np.uint8)
    frame[:, 20:] = 200
    boxes = [[-50, -50, 20, 20], [100, 5, 30, 30], [5, 5, 10, 10]]
    for fn in (ref, cpu):
        prof, dc = fn(frame, boxes, size=32)
        np.testing.assert_array_equal(prof, 0.0)
        np.testing.assert_allclose(dc, [10 / 255, 200 / 255, 10 / 255], atol=1e-7)


@PROPS
@given(seed=st.integers(0, 2**32 - 1), size=st.sampled_from([32, 64]))
def test_tiny_rois(seed: int, size: int) -> None:
    rng = np.random.default_rng(seed)
    frame = random_frame(rng, (30, 30), "uint8")
    boxes = np.column_stack([rng.uniform(-2, 31, 8), rng.uniform(-2, 31, 8),
                             rng.uniform(0.05, 2.0, 8), rng.uniform(0.05, 2.0, 8)])
    got, _ = cpu(frame, boxes, size=size)
    want, _ = ref(frame, boxes, size=size)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, want, atol=CPU_TOL)
    sums = got.sum(axis=1)
    assert np.all((np.abs(sums - 1) < 1e-5) | (sums == 0))


def test_uint16_and_float32_frames_agree() -> None:
    rng = np.random.default_rng(9)
    f16 = rng.integers(0, 65536, (64, 64), dtype=np.uint16)
    f32 = (f16 / 65535).astype(np.float32)
    boxes = [[3.5, 4, 40, 50], [10, 10, 32, 32]]
    np.testing.assert_allclose(cpu(f16, boxes)[0], cpu(f32, boxes)[0], atol=1e-5)


def test_grid_boxes_layout() -> None:
    boxes = grid_boxes((1024, 1024), 32, 16)
    assert boxes.shape == (63 * 63, 4)
    np.testing.assert_array_equal(boxes[0], [0, 0, 32, 32])
    np.testing.assert_array_equal(boxes[1], [16, 0, 32, 32])  # x varies fastest
    np.testing.assert_array_equal(boxes[-1], [992, 992, 32, 32])
    frame = np.random.default_rng(0).integers(0, 256, (100, 70), dtype=np.uint8)
    np.testing.assert_array_equal(
        radial_profiles(frame, grid=(32, 20), backend="cpu"),
        radial_profiles(frame, grid_boxes(frame.shape, 32, 20), backend="cpu"),
    )


def test_empty_box_list_and_output_contract() -> None:
    frame = np.zeros((10, 10), np.uint8)
    assert radial_profiles(frame, np.zeros((0, 4)), size=64).shape == (0, 32)
    prof, dc = radial_profiles(frame, [[0, 0, 5, 5]], rings=4, return_dc=True)
    assert prof.shape == (1, 4) and prof.dtype == np.float32 and dc.shape == (1,)


def test_auto_backend_is_cuda_only_on_real_hardware() -> None:
    assert pick_backend("auto") == ("cuda" if cuda_available() else "cpu")
    assert pick_backend("cpu") == "cpu"


@pytest.mark.parametrize(
    "frame,kwargs,message",
    [
        (np.zeros((8, 8, 3), np.uint8), {"boxes": [[0, 0, 4, 4]]}, "2-D"),
        (np.zeros((8, 8), np.float64), {"boxes": [[0, 0, 4, 4]]}, "dtype"),
        (np.zeros((8, 8), np.int32), {"boxes": [[0, 0, 4, 4]]}, "dtype"),
        (np.zeros((0, 8), np.uint8), {"boxes": [[0, 0, 4, 4]]}, "empty"),
        ([[1, 2], [3, 4]], {"boxes": [[0, 0, 4, 4]]}, "array"),
        (np.zeros((8, 8), np.uint8), {"boxes": [[0, 0, 4]]}, "(N, 4)"),
        (np.zeros((8, 8), np.uint8), {"boxes": [[0, 0, 4, 0]]}, "w or h <= 0"),
        (np.zeros((8, 8), np.uint8), {"boxes": [[0, np.nan, 4, 4]]}, "finite"),
        (np.zeros((8, 8), np.uint8), {"boxes": [["a", 0, 4, 4]]}, "numeric"),
        (np.zeros((8, 8), np.uint8), {}, "exactly one"),
        (np.zeros((8, 8), np.uint8), {"boxes": [[0, 0, 4, 4]], "grid": (4, 4)}, "exactly one"),
        (np.zeros((8, 8), np.uint8), {"grid": (16, 4)}, "does not fit"),
        (np.zeros((8, 8), np.uint8), {"grid": (4, 0)}, "stride"),
        (np.zeros((8, 8), np.uint8), {"grid": 4}, "(window, stride)"),
        (np.zeros((8, 8), np.uint8), {"boxes": [[0, 0, 4, 4]], "size": 48}, "size"),
        (np.zeros((8, 8), np.uint8), {"boxes": [[0, 0, 4, 4]], "rings": 17}, "rings"),
        (np.zeros((8, 8), np.uint8), {"boxes": [[0, 0, 4, 4]], "rings": 0}, "rings"),
        (np.zeros((8, 8), np.uint8), {"boxes": [[0, 0, 4, 4]], "backend": "gpu"}, "backend"),
    ],
)
def test_bad_input_is_rejected_clearly(frame, kwargs, message: str) -> None:
    with pytest.raises(SpectralInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        radial_profiles(frame, **kwargs)
