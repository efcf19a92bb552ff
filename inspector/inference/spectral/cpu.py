"""CPU fast path: numba resample + window, scipy's rfft2, NumPy's SIMD log1p, numba rings.

Same definition as the reference (`reference.py`), computed in float32, organised so
that the total stays close to the cost of the FFT alone:

* the RoIs are split into one contiguous range per CPU, each run by a Python thread;
  every stage releases the GIL (numba ``nogil``, pocketfft, NumPy ufuncs);
* a thread works in chunks small enough that the float32 batch and its spectrum stay
  in the core's L2 cache between stages;
* resampling, mean removal and windowing are one pass (integer-aligned S x S boxes
  take a plain copy loop; others bilinear with a two-row cache);
* the input is real, so `scipy.fft.rfft2` computes only the half plane; the ring
  tables give each half-plane bin the weight of itself plus its conjugate twin;
* |F| is a vectorised numba loop, log1p NumPy's SIMD loop (numba's is scalar libm,
  about 10x slower here), and the ring means plus normalisation one more numba loop.

Samples are taken relative to a pixel of the patch (see `extract_windowed`) so that
float32 keeps the detail of nearly flat patches. The numba functions are compiled
with ``cache=True``: only the first process on a machine pays the JIT compile time.
"""

from __future__ import annotations

import math
import os

import numpy as np
import scipy.fft
from numba import njit

from inspector.core.workers import pool
from inspector.inference.spectral.spec import TINY, full_scale, tables

CHUNK_PIXELS = 64 * 64 * 32  # RoIs per chunk: batch + spectrum stay in a core's L2 cache


@njit(cache=True, nogil=True)
def _taps(origin: float, extent: float, size: int, limit: int, lo, hi, frac) -> None:
    """Bilinear taps along one axis (pixel-centre convention, clamped to the frame)."""
    step = extent / size
    for j in range(size):
        c = origin + (j + 0.5) * step - 0.5
        c0 = math.floor(c)
        frac[j] = c - c0
        a = int(c0)
        lo[j] = min(max(a, 0), limit - 1)
        hi[j] = min(max(a + 1, 0), limit - 1)


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _row(frame, r, x0, x1, fx, contig, base, buf) -> None:
    """buf[j] = row r of the frame minus `base`, interpolated at the horizontal taps."""
    size = buf.shape[0]
    if contig:  # unit step, no clamping: contiguous loads, one shared fraction
        xs = x0[0]
        src = frame[r, xs:xs + size + 1]
        f = np.float32(fx[0])
        if f == 0.0:
            for j in range(size):
                buf[j] = np.float32(src[j]) - base
        else:
            g = np.float32(1.0) - f
            for j in range(size):
                buf[j] = (np.float32(src[j]) - base) * g + (np.float32(src[j + 1]) - base) * f
    else:
        src = frame[r]
        for j in range(size):
            f = np.float32(fx[j])
            buf[j] = ((np.float32(src[x0[j]]) - base) * (np.float32(1.0) - f)
                      + (np.float32(src[x1[j]]) - base) * f)


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _copy_block(frame, ys, xs, base, w32, win, patch) -> float:
    """Identity resampling (S x S box on the pixel grid): patch = block - base."""
    size = patch.shape[0]
    acc = 0.0
    for i in range(size):
        src = frame[ys + i, xs:xs + size]
        acc_row = np.float32(0.0)
        for j in range(size):
            v = np.float32(src[j]) - base
            patch[i, j] = v
            acc_row += w32[j] * v
        acc += win[i] * acc_row
    return acc


@njit(cache=True, nogil=True)
def _cached_row(frame, r, keep, x0, x1, fx, contig, base, ids, rows) -> int:
    """Slot of `rows` holding frame row r interpolated horizontally (computed if absent).

    Vertical neighbours are shared by consecutive output rows, so two slots halve the
    gathers; the slot holding `keep` (the other row needed now) is never evicted.
    """
    if ids[0] == r:
        return 0
    if ids[1] == r:
        return 1
    slot = 1 if ids[0] == keep else 0
    _row(frame, r, x0, x1, fx, contig, base, rows[slot])
    ids[slot] = r
    return slot


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _resample(frame, x0, x1, fx, y0, y1, fy, contig, base, w32, win, rows, patch) -> float:
    """General bilinear resampling into patch (minus base); returns sum of w * patch."""
    size = patch.shape[0]
    ids = np.full(2, -1, np.int64)
    acc = 0.0
    for i in range(size):
        top = patch[i]
        r0 = np.int64(y0[i])
        r1 = np.int64(y1[i])
        b = np.float32(fy[i])
        s0 = _cached_row(frame, r0, r1, x0, x1, fx, contig, base, ids, rows)
        if b != 0.0 and r1 != r0:
            s1 = _cached_row(frame, r1, r0, x0, x1, fx, contig, base, ids, rows)
            a = np.float32(1.0) - b
            for j in range(size):
                top[j] = rows[s0, j] * a + rows[s1, j] * b
        else:
            for j in range(size):
                top[j] = rows[s0, j]
        acc_row = np.float32(0.0)
        for j in range(size):
            acc_row += w32[j] * top[j]
        acc += win[i] * acc_row
    return acc


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def extract_windowed(frame, boxes, size, win, scale, out, dc) -> None:
    """out[n] = w * (p - m) for the resampled patch p of box n; dc[n] = m.

    Samples are taken relative to `base`, the pixel under the centre sample (where the
    window weighs most), so a flat patch gives exact zeros and a nearly flat one keeps
    its small variations in float32. Reductions may be reassociated (vectorised).
    """
    height, width = frame.shape
    wsum = 0.0
    for i in range(size):
        wsum += win[i]
    wsum = wsum * wsum
    w32 = win.astype(np.float32)
    x0 = np.empty(size, np.uint64)  # unsigned: numba skips the negative-index wraparound
    x1 = np.empty(size, np.uint64)
    fx = np.empty(size, np.float64)
    y0 = np.empty(size, np.uint64)
    y1 = np.empty(size, np.uint64)
    fy = np.empty(size, np.float64)
    rows = np.empty((2, size), np.float32)
    patch = np.empty((size, size), np.float32)
    mid = size // 2
    sc = np.float32(scale)
    for n in range(boxes.shape[0]):
        _taps(boxes[n, 0], boxes[n, 2], size, width, x0, x1, fx)
        _taps(boxes[n, 1], boxes[n, 3], size, height, y0, y1, fy)
        contig = (boxes[n, 2] == size and x0[0] == x1[0] - 1 and x0[0] >= 0
                  and x0[0] + size < width)
        base = np.float32(frame[y0[mid], x0[mid]])
        if (contig and fx[0] == 0.0 and boxes[n, 3] == size and fy[0] == 0.0
                and y0[0] >= 0 and y0[0] + size <= height):
            acc = _copy_block(frame, y0[0], x0[0], base, w32, win, patch)
        else:
            acc = _resample(frame, x0, x1, fx, y0, y1, fy, contig, base, w32, win, rows, patch)
        m = np.float32(acc / wsum)
        for i in range(size):
            wi = w32[i] * sc
            for j in range(size):
                out[n, i, j] = wi * w32[j] * (patch[i, j] - m)
        dc[n] = (base + m) * scale


@njit(cache=True, nogil=True)
def magnitude(spec, mag) -> None:
    """mag = |spec| in float32 (vectorised; log1p is applied by NumPy's SIMD loop)."""
    for n in range(spec.shape[0]):
        for a in range(spec.shape[1]):
            for b in range(spec.shape[2]):
                z = spec[n, a, b]
                mag[n, a, b] = np.sqrt(z.real * z.real + z.imag * z.imag)


@njit(cache=True, nogil=True)
def bin_rings(mag, ring_half, weight_half, rings, out) -> None:
    """Weighted ring means over the rfft half plane, then L1 normalisation."""
    size = mag.shape[1]
    half = mag.shape[2]
    for n in range(mag.shape[0]):
        acc = np.zeros(rings, np.float64)
        for a in range(size):
            for b in range(half):
                k = ring_half[a, b]
                if k >= 0:
                    acc[k] += weight_half[a, b] * mag[n, a, b]
        total = 0.0
        for k in range(rings):
            total += acc[k]
        if total > TINY:
            for k in range(rings):
                out[n, k] = acc[k] / total
        else:
            for k in range(rings):
                out[n, k] = 0.0


def workers() -> int:
    """Threads for scipy.fft: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _run_range(frame, boxes, lo, hi, size, win, scale, log, tab, out, dc) -> None:
    """RoIs lo..hi in cache-sized chunks: extract -> rfft2 -> |F| -> log1p -> rings."""
    chunk = CHUNK_PIXELS // (size * size)
    half = size // 2 + 1
    batch = np.empty((chunk, size, size), dtype=np.float32)
    mag = np.empty((chunk, size, half), dtype=np.float32)
    ring_half = tab.ring_of[:, :half]
    for start in range(lo, hi, chunk):
        stop = min(start + chunk, hi)
        k = stop - start
        extract_windowed(frame, boxes[start:stop], size, win, scale, batch[:k], dc[start:stop])
        spec = scipy.fft.rfft2(batch[:k], axes=(1, 2), workers=1, overwrite_x=True)
        magnitude(spec, mag[:k])
        if log:
            np.log1p(mag[:k], out=mag[:k])
        bin_rings(mag[:k], ring_half, tab.half_weight, tab.rings, out[start:stop])


def radial_profiles_cpu(
    frame: np.ndarray,
    boxes: np.ndarray,
    size: int,
    rings: int,
    log: bool = True,
    window: bool = True,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Profiles (N, R) float32 and dc (N,) float32 for checked inputs (see launcher).

    The RoIs are split into one contiguous range per thread; every stage releases the
    GIL (numba nogil, pocketfft, NumPy ufuncs), so plain Python threads scale.
    """
    tab = tables(size, rings)
    n = boxes.shape[0]
    win = tab.window if window else np.ones(size)
    scale = 1.0 / full_scale(frame.dtype)
    dc = np.empty(n, dtype=np.float32)
    out = np.empty((n, rings), dtype=np.float32)
    chunk = CHUNK_PIXELS // (size * size)
    nthreads = max(1, min(threads or workers(), -(-n // chunk)))
    if nthreads == 1:
        if n:
            _run_range(frame, boxes, 0, n, size, win, scale, log, tab, out, dc)
        return out, dc
    bounds = np.linspace(0, n, nthreads + 1).astype(int)
    futures = [
        pool("spectral-cpu", nthreads).submit(
            _run_range, frame, boxes, int(lo), int(hi), size, win, scale, log, tab, out, dc
        )
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    for fut in futures:
        fut.result()
    return out, dc
