"""The radial-profile specification: input checks and the tables every backend shares.

The NumPy reference in `reference.py` is the definition; this module holds the parts
that are data rather than arithmetic, so the reference, the numba CPU path and the
CUDA kernel cannot drift apart on them:

* **Units.** uint8 frames are divided by 255, uint16 by 65535, float32 is taken as is
  (so intensities are in "full scale" units, 1.0 = white).
* **Boxes.** ``(x, y, w, h)`` in pixels, real-valued, ``w, h > 0``. Pixel ``(r, c)``
  covers ``[c, c+1) x [r, r+1)``. Sample ``j`` of ``S`` lies at the array coordinate
  ``x + (j + 0.5) * w / S - 0.5`` (pixel-centre convention, as ``cv2.resize`` with
  ``INTER_LINEAR``); rows likewise. Bilinear interpolation; outside the frame the
  nearest edge pixel is repeated (clamp), so boxes may touch or cross the border.
* **Grid.** ``(window, stride)``: square boxes at ``x, y = 0, stride, 2*stride, ...``
  while ``x + window <= W`` (and ``y + window <= H``), row-major (y outer, x inner).
* **Window.** Separable "midpoint" Hann ``h[i] = sin(pi * (i + 0.5) / S) ** 2``: it is
  symmetric under ``i -> S-1-i``, so rotating a patch by 90 degrees rotates the
  windowed patch exactly, and its spectrum is non-zero only at offsets 0 and +-1.
* **DC kept apart.** The window-weighted mean ``m = sum(w*p) / sum(w)`` is subtracted
  before windowing, so ``F(0, 0) = 0`` and brightness does not leak into the low rings
  through the window. ``m`` is returned separately (``return_dc=True``); no ring
  contains ``(0, 0)``.
* **Transform.** Unnormalised 2-D DFT (NumPy's default) of ``w * (p - m)``; value per
  frequency ``|F|`` or ``log1p(|F|)``.
* **Rings.** Signed frequencies ``u, v`` in ``-S/2 .. S/2-1``, ``rho = hypot(u, v)``.
  With ``delta = (S/2) / R``, ring ``k`` (0-based) holds the frequencies with
  ``0.5 + k*delta <= rho < 0.5 + (k+1)*delta``. For the default ``R = S/2`` ring ``k``
  holds the radii that round to ``k + 1``. Corners (``rho >= S/2 + 0.5``) are left
  out: they only exist along the diagonals and would break direction invariance.
  ``1 <= R <= S/2``, so no ring is empty. A ring's value is the mean over its members.
* **Normalisation.** L1: the profile is divided by its sum, so it sums to 1; a profile
  whose sum is below ``TINY`` (a flat patch) is all zeros.
* **Output.** ``(N, R)`` float32 (and ``(N,)`` float32 ``dc``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from inspector.core.errors import InspectorError

SIZES = (32, 64)
DTYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32))
TINY = 1e-6  # below this sum of ring values the patch counts as flat: profile = 0


class SpectralInputError(InspectorError, ValueError):
    """A frame, box list, grid or parameter that the spectral engine cannot use."""


def full_scale(dtype: np.dtype) -> float:
    """Divisor that maps the dtype's range to [0, 1] (float32 frames are taken as is)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    return 1.0


def check_frame(frame: object) -> np.ndarray:
    """Return the frame as a C-contiguous 2-D array or raise SpectralInputError."""
    if not hasattr(frame, "shape") or not hasattr(frame, "dtype"):
        raise SpectralInputError(f"frame must be an array, got {type(frame).__name__}")
    if len(frame.shape) != 2:
        raise SpectralInputError(
            f"frame must be 2-D (H, W) mono, got shape {tuple(frame.shape)}"
        )
    if np.dtype(frame.dtype) not in DTYPES:
        raise SpectralInputError(
            f"frame dtype must be uint8, uint16 or float32, got {np.dtype(frame.dtype)}"
        )
    if frame.shape[0] < 1 or frame.shape[1] < 1:
        raise SpectralInputError(f"frame is empty: shape {tuple(frame.shape)}")
    if isinstance(frame, np.ndarray) and not frame.flags.c_contiguous:
        return np.ascontiguousarray(frame)  # (a contiguous subclass, e.g. mapped, is kept)
    return frame  # a device array: the CUDA path checks it further


def check_size(size: int) -> int:
    """S must be one of SIZES (the CUDA kernel has a shared-memory FFT for those)."""
    if isinstance(size, bool) or int(size) != size or int(size) not in SIZES:
        raise SpectralInputError(f"size must be one of {SIZES}, got {size!r}")
    return int(size)


def check_rings(rings: int | None, size: int) -> int:
    """Default S/2; 1..S/2 keeps every ring non-empty."""
    if rings is None:
        return size // 2
    if isinstance(rings, bool) or int(rings) != rings or not 1 <= int(rings) <= size // 2:
        raise SpectralInputError(f"rings must be an integer in 1..{size // 2}, got {rings!r}")
    return int(rings)


def check_boxes(boxes: object) -> np.ndarray:
    """Return boxes as a (N, 4) float64 array of finite (x, y, w, h) with w, h > 0."""
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise SpectralInputError(f"boxes must be numeric (N, 4) x, y, w, h: {exc}") from None
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise SpectralInputError(f"boxes must have shape (N, 4) x, y, w, h, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise SpectralInputError("boxes must be finite")
    if (arr[:, 2:] <= 0).any():
        bad = int(np.flatnonzero((arr[:, 2:] <= 0).any(axis=1))[0])
        raise SpectralInputError(f"box {bad} has w or h <= 0: {arr[bad].tolist()}")
    return arr


def grid_boxes(shape: tuple[int, int], window: int, stride: int) -> np.ndarray:
    """Boxes of a dense grid of square windows, row-major; see the module docstring."""
    for name, val in (("window", window), ("stride", stride)):
        if isinstance(val, bool) or int(val) != val or int(val) < 1:
            raise SpectralInputError(f"grid {name} must be a positive integer, got {val!r}")
    h, w = int(shape[0]), int(shape[1])
    window, stride = int(window), int(stride)
    if window > h or window > w:
        raise SpectralInputError(f"grid window {window} does not fit a {h}x{w} frame")
    ys = np.arange(0, h - window + 1, stride, dtype=np.float64)
    xs = np.arange(0, w - window + 1, stride, dtype=np.float64)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    out = np.empty((yy.size, 4), dtype=np.float64)
    out[:, 0] = xx.ravel()
    out[:, 1] = yy.ravel()
    out[:, 2:] = window
    return out


def resolve_boxes(
    frame_shape: tuple[int, int], boxes: object, grid: tuple[int, int] | None
) -> np.ndarray:
    """Exactly one of boxes / grid; returns (N, 4) float64 boxes."""
    if (boxes is None) == (grid is None):
        raise SpectralInputError("give exactly one of boxes=(N, 4) or grid=(window, stride)")
    if grid is not None:
        try:
            window, stride = grid
        except (TypeError, ValueError):
            raise SpectralInputError(f"grid must be (window, stride), got {grid!r}") from None
        return grid_boxes(frame_shape, window, stride)
    return check_boxes(boxes)


def hann(size: int) -> np.ndarray:
    """The 1-D midpoint Hann window (float64); the 2-D window is its outer product."""
    i = np.arange(size, dtype=np.float64)
    return np.sin(np.pi * (i + 0.5) / size) ** 2


@dataclass(frozen=True)
class Tables:
    """Precomputed per (S, R) tables shared by all backends (read-only arrays)."""

    size: int
    rings: int
    window: np.ndarray  # (S,) float64, 1-D Hann
    ring_of: np.ndarray  # (S, S) int32: ring of frequency at FFT index (a, b), -1 = none
    counts: np.ndarray  # (R,) int64: members per ring over the full plane
    half_weight: np.ndarray  # (S, S//2+1) float32: ring weight per rfft bin / count
    ring_ptr: np.ndarray  # (R+1,) int32: CSR offsets into ring_idx
    ring_idx: np.ndarray  # (M,) int32: flat FFT index a*S+b of each ring member


@lru_cache(maxsize=16)
def tables(size: int, rings: int) -> Tables:
    """Build the ring tables; the edge test is done on rho**2 in float64 (exact ints)."""
    f = np.fft.fftfreq(size, d=1.0 / size)  # signed integer frequencies in FFT order
    rho2 = f[:, None] ** 2 + f[None, :] ** 2
    delta = (size / 2) / rings
    edges2 = (0.5 + delta * np.arange(rings + 1)) ** 2
    ring = np.searchsorted(edges2, rho2, side="right") - 1  # edges2[k] <= rho2 < edges2[k+1]
    ring[(rho2 < edges2[0]) | (rho2 >= edges2[-1])] = -1
    ring_of = ring.astype(np.int32)
    counts = np.bincount(ring_of[ring_of >= 0], minlength=rings).astype(np.int64)
    # rfft keeps columns b = 0..S/2; columns 1..S/2-1 stand for two (conjugate) bins.
    half = size // 2 + 1
    mult = np.full(half, 2.0)
    mult[0] = mult[-1] = 1.0
    hw = np.zeros((size, half), dtype=np.float64)
    rh = ring_of[:, :half]
    ok = rh >= 0
    hw[ok] = (mult[None, :] * np.ones((size, 1)))[ok] / counts[rh[ok]]
    order = np.argsort(ring_of.ravel(), kind="stable")
    order = order[ring_of.ravel()[order] >= 0]
    ptr = np.zeros(rings + 1, dtype=np.int32)
    ptr[1:] = np.cumsum(counts)
    out = Tables(
        size=size,
        rings=rings,
        window=hann(size),
        ring_of=ring_of,
        counts=counts,
        half_weight=hw.astype(np.float32),
        ring_ptr=ptr,
        ring_idx=order.astype(np.int32),
    )
    for arr in (out.window, out.ring_of, out.counts, out.half_weight, out.ring_ptr,
                out.ring_idx):
        arr.setflags(write=False)
    return out
