"""Fused CUDA kernel (numba.cuda): one thread block per RoI, one launch for the batch.

Per block, all in shared memory: bilinear resample of the box from the frame ->
mean removal + Hann window -> radix-2 2-D FFT (S = 32 or 64; rows then columns,
decimation in time on bit-reversed input) -> |F| (optional log1p) -> ring means ->
L1 normalisation. The arithmetic follows `reference.py` (the definition) in float32;
the kernel contains no float64 instruction (tests check the PTX), because consumer
and Jetson GPUs run float64 at 1/32..1/64 rate.

Where the frame lives (zero copy):

* a NumPy array is copied to the device once per call (``cuda.to_device``);
* a numba device array (or any ``__cuda_array_interface__`` object, e.g. a frame
  preprocessed on the GPU) is read in place;
* a mapped, page-locked host buffer from `mapped_frame` (``cuda.mapped_array``) is read
  in place by the kernel over the bus (on Jetson, where host and device share DRAM,
  this is the natural zero-copy path). A frame pool that hands such buffers to the
  camera lets the kernel read frames without any copy.

Boxes are split on the host into an int32 origin and a float32 fractional part, so
float32 sample coordinates stay exact far from the frame origin. The same source is
compiled to PTX for sm_87 / sm_86 / sm_89 by `compile_ptx` (no GPU needed) and runs in
numba's simulator under ``NUMBA_ENABLE_CUDASIM=1`` (tests).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from numba import cuda, float32, int32, types

from inspector.inference.spectral.spec import SIZES, TINY, full_scale, tables

THREADS = 256  # threads per block on hardware; any power of two <= MAX_THREADS works
MAX_THREADS = 256
ARCHS = ((8, 7), (8, 6), (8, 9))  # Jetson Orin, RTX 30xx, RTX 40xx
FRAME_TYPES = {"uint8": types.uint8, "uint16": types.uint16, "float32": types.float32}


def make_kernel_source(size: int) -> Callable:
    """The kernel's Python function for one S (shared arrays need a constant size)."""
    S = size  # noqa: N806 - the math name
    LOG2 = S.bit_length() - 1  # noqa: N806
    NN = S * S  # noqa: N806
    HALF = S // 2  # noqa: N806
    MASK = S - 1  # noqa: N806
    half = float32(0.5)
    one = float32(1.0)
    zero = float32(0.0)
    tiny = float32(TINY)

    def radial_kernel(frame, origin, geom, scale, wsum, win, twr, twi, ring_ptr, ring_idx,
                      rings, log, out, dc):
        re = cuda.shared.array(NN, float32)
        im = cuda.shared.array(NN, float32)
        red = cuda.shared.array(MAX_THREADS, float32)
        ring = cuda.shared.array(HALF, float32)
        n = cuda.blockIdx.x
        t = cuda.threadIdx.x
        nt = cuda.blockDim.x
        height = frame.shape[0]
        width = frame.shape[1]
        ox = origin[n, 0]
        oy = origin[n, 1]
        fxo = geom[n, 0]
        fyo = geom[n, 1]
        sx = geom[n, 2] / float32(S)
        sy = geom[n, 3] / float32(S)

        # 1. bilinear resample relative to `base`, the pixel under the centre sample (where
        #    the window weighs most), so that small variations of a nearly flat patch
        #    survive float32; stored at bit-reversed (row, column) for the DIT FFT
        mid = float32(HALF) + half
        bc = min(max(ox + int32(math.floor(fxo + mid * sx - half)), 0), width - 1)
        br = min(max(oy + int32(math.floor(fyo + mid * sy - half)), 0), height - 1)
        base = float32(frame[br, bc])
        for e in range(t, NN, nt):
            i = e >> LOG2
            j = e & MASK
            tx = fxo + (float32(j) + half) * sx - half
            ty = fyo + (float32(i) + half) * sy - half
            flx = int32(math.floor(tx))
            fly = int32(math.floor(ty))
            ax = tx - float32(flx)
            ay = ty - float32(fly)
            c0 = ox + flx
            r0 = oy + fly
            c1 = min(max(c0 + 1, 0), width - 1)
            r1 = min(max(r0 + 1, 0), height - 1)
            c0 = min(max(c0, 0), width - 1)
            r0 = min(max(r0, 0), height - 1)
            bx = one - ax
            top = (float32(frame[r0, c0]) - base) * bx + (float32(frame[r0, c1]) - base) * ax
            bot = (float32(frame[r1, c0]) - base) * bx + (float32(frame[r1, c1]) - base) * ax
            bi = 0
            bj = 0
            for _ in range(LOG2):
                bi = (bi << 1) | (i & 1)
                bj = (bj << 1) | (j & 1)
                i >>= 1
                j >>= 1
            re[bi * S + bj] = (top * (one - ay) + bot * ay) * scale
        cuda.syncthreads()

        # 2. window-weighted mean m of the relative samples d (a flat patch has d = 0 and
        #    so a zero spectrum), then x = w * (d - m). `win` comes in bit-reversed
        #    order, like the storage slots.
        part = zero
        for e in range(t, NN, nt):
            part += win[e >> LOG2] * win[e & MASK] * re[e]
        red[t] = part
        cuda.syncthreads()
        step = nt >> 1
        while step > 0:
            if t < step:
                red[t] += red[t + step]
            cuda.syncthreads()
            step >>= 1
        m = red[0] / wsum
        for e in range(t, NN, nt):
            re[e] = win[e >> LOG2] * win[e & MASK] * (re[e] - m)
            im[e] = zero
        cuda.syncthreads()

        # 3. radix-2 butterflies: LOG2 stages along rows, then LOG2 along columns
        for axis in range(2):
            for s in range(LOG2):
                h = 1 << s
                for b in range(t, NN >> 1, nt):
                    line = b >> (LOG2 - 1)
                    k = b & (HALF - 1)
                    pos = k & (h - 1)
                    a0 = ((k >> s) << (s + 1)) + pos
                    tw = pos << (LOG2 - 1 - s)
                    if axis == 0:
                        i0 = line * S + a0
                        i1 = i0 + h
                    else:
                        i0 = a0 * S + line
                        i1 = i0 + h * S
                    wr = twr[tw]
                    wi = twi[tw]
                    xr = re[i1]
                    xi = im[i1]
                    pr = xr * wr - xi * wi
                    pi = xr * wi + xi * wr
                    ar = re[i0]
                    ai = im[i0]
                    re[i0] = ar + pr
                    im[i0] = ai + pi
                    re[i1] = ar - pr
                    im[i1] = ai - pi
                cuda.syncthreads()

        # 4. magnitude (optional log1p), in natural FFT order
        for e in range(t, NN, nt):
            v = math.sqrt(re[e] * re[e] + im[e] * im[e])
            if log:
                v = math.log1p(v)
            re[e] = v
        cuda.syncthreads()

        # 5. ring means (one thread per ring, fixed order: deterministic), normalise
        for k in range(t, rings, nt):
            acc = zero
            lo = ring_ptr[k]
            hi = ring_ptr[k + 1]
            for p in range(lo, hi):
                acc += re[ring_idx[p]]
            ring[k] = acc / float32(hi - lo)
        cuda.syncthreads()
        total = zero
        for k in range(rings):
            total += ring[k]
        for k in range(t, rings, nt):
            out[n, k] = ring[k] / total if total > tiny else zero
        if t == 0:
            dc[n] = base * scale + m

    return radial_kernel


def signature(frame_dtype: str) -> tuple:
    """Argument types of the kernel for one frame dtype (for compile_ptx)."""
    f32_2d = types.Array(types.float32, 2, "C")
    i32_1d = types.Array(types.int32, 1, "C")
    f32_1d = types.Array(types.float32, 1, "C")
    return (
        types.Array(FRAME_TYPES[frame_dtype], 2, "C"),
        types.Array(types.int32, 2, "C"),
        f32_2d,
        types.float32,
        types.float32,
        f32_1d,
        f32_1d,
        f32_1d,
        i32_1d,
        i32_1d,
        types.int32,
        types.int32,
        f32_2d,
        f32_1d,
    )


def compile_ptx(size: int, frame_dtype: str, cc: tuple[int, int]) -> str:
    """PTX of the kernel for one S, frame dtype and compute capability (no GPU needed)."""
    ptx, _ = cuda.compile_ptx(make_kernel_source(size), signature(frame_dtype), cc=cc)
    return ptx


def ptx_facts(ptx: str) -> dict:
    """What CI checks in a PTX file: target, entry, float64 use, static shared memory."""
    target = re.search(r"^\.target\s+(\S+)", ptx, re.M)
    version = re.search(r"^\.version\s+(\S+)", ptx, re.M)
    shared = sum(int(b) for b in re.findall(r"\.shared\s+\.align\s+\d+\s+\.b8\s+\w+\[(\d+)\]", ptx))
    return {
        "target": target.group(1) if target else None,
        "ptx_version": version.group(1) if version else None,
        "entries": len(re.findall(r"^\.visible\s+\.entry\b", ptx, re.M)),
        "f64_instructions": len(re.findall(r"^\s+[a-z][\w.]*\.f64\b", ptx, re.M)),
        "shared_bytes": shared,
        "barriers": len(re.findall(r"\bbar\.sync\b|\bbarrier\.sync\b", ptx)),
    }


def compile_all_ptx(
    out_dir: str | Path | None = None,
    sizes: tuple[int, ...] = SIZES,
    dtypes: tuple[str, ...] = tuple(FRAME_TYPES),
    archs: tuple[tuple[int, int], ...] = ARCHS,
) -> list[dict]:
    """Compile every (S, dtype, arch) to PTX; write `radial_s{S}_{dtype}_sm{XY}.ptx` files."""
    rows = []
    for size in sizes:
        for dtype in dtypes:
            for cc in archs:
                ptx = compile_ptx(size, dtype, cc)
                row = {"size": size, "dtype": dtype, "arch": f"sm_{cc[0]}{cc[1]}",
                       **ptx_facts(ptx)}
                if out_dir is not None:
                    path = Path(out_dir) / f"radial_s{size}_{dtype}_{row['arch']}.ptx"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(ptx)
                    row["path"] = str(path)
                rows.append(row)
    return rows


@cache
def kernel_for(size: int):
    """The lazily compiled dispatcher for S (one specialisation per frame dtype)."""
    return cuda.jit(make_kernel_source(size))


def bit_reversed(size: int) -> np.ndarray:
    """Permutation k -> k with its log2(size) bits reversed."""
    bits = size.bit_length() - 1
    k = np.arange(size)
    return np.array([int(f"{v:0{bits}b}"[::-1], 2) for v in k], dtype=np.intp)


@lru_cache(maxsize=16)
def _device_tables(size: int, rings: int, window: bool):
    """Window, twiddles and ring lists on the device, uploaded once per (S, R, window)."""
    tab = tables(size, rings)
    win = (tab.window if window else np.ones(size)).astype(np.float32)
    wsum = float(np.float32(win.astype(np.float64).sum() ** 2))
    win = win[bit_reversed(size)]  # indexed by storage slot, see the kernel's step 2
    k = np.arange(size // 2)
    twr = np.cos(-2 * np.pi * k / size).astype(np.float32)
    twi = np.sin(-2 * np.pi * k / size).astype(np.float32)
    arrays = (win, twr, twi, tab.ring_ptr, tab.ring_idx)
    return wsum, tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)


def mapped_frame(shape: tuple[int, int], dtype: np.dtype | type = np.uint8) -> np.ndarray:
    """A page-locked host frame buffer mapped into the device: the kernel reads it in place.

    Allocate these once (frame pool) and let the camera write into them; passing one to
    `radial_profiles` then costs no host-to-device copy.
    """
    return cuda.mapped_array(shape, dtype=dtype)


def radial_profiles_cuda(
    frame: object,
    boxes: np.ndarray,
    size: int,
    rings: int,
    log: bool = True,
    window: bool = True,
    threads: int = THREADS,
) -> tuple[np.ndarray, np.ndarray]:
    """Profiles (N, R) and dc (N,) float32 from one kernel launch (checked inputs)."""
    if threads < 1 or threads > MAX_THREADS or threads & (threads - 1):
        raise ValueError(f"threads must be a power of two <= {MAX_THREADS}, got {threads}")
    n = boxes.shape[0]
    out = np.zeros((n, rings), dtype=np.float32)
    dc = np.zeros(n, dtype=np.float32)
    if n == 0:
        return out, dc
    origin = np.floor(boxes[:, :2])
    if np.abs(origin).max() >= 2**30:
        raise ValueError("box origins must lie within +-2**30 pixels for the CUDA path")
    geom = np.empty((n, 4), dtype=np.float32)
    geom[:, :2] = boxes[:, :2] - origin
    geom[:, 2:] = boxes[:, 2:]
    wsum, (win, twr, twi, ring_ptr, ring_idx) = _device_tables(size, rings, bool(window))
    on_device = hasattr(frame, "__cuda_array_interface__")  # device or mapped buffer
    d_frame = frame if on_device else cuda.to_device(frame)
    d_out = cuda.device_array((n, rings), dtype=np.float32)
    d_dc = cuda.device_array(n, dtype=np.float32)
    kernel_for(size)[n, threads](
        d_frame,
        cuda.to_device(origin.astype(np.int32)),
        cuda.to_device(geom),
        np.float32(1.0 / full_scale(frame.dtype)),
        np.float32(wsum),
        win,
        twr,
        twi,
        ring_ptr,
        ring_idx,
        np.int32(rings),
        np.int32(bool(log)),
        d_out,
        d_dc,
    )
    return d_out.copy_to_host(), d_dc.copy_to_host()
