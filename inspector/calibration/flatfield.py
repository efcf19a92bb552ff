"""`inspector calibrate flatfield`: dark offset and per-pixel gain, and applying them.

From dark frames (lens capped, same exposure) and white frames (a uniformly lit white
target filling the view) the mean dark D and mean white W give the gain
g = mean(W - D) / (W - D), so that a corrected frame (I - D) * g shows a white target
at one level everywhere: vignetting, uneven lighting and pixel-to-pixel gain (PRNU)
are gone. `smooth_px` blurs W - D first, for white targets with a texture of their own.

Refused, naming the file, before anything is written: frames of different sizes or
pixel types, a white frame with more than SATURATED_MAX of its pixels at full scale
(the gain there would be wrong), and white frames that are not clearly brighter than
the dark ones (swapped inputs, light off), or with more than BAD_MAX of the pixels at
or below the dark level.

At run time `FlatField.apply` computes out = clip(I * a + b) with a = g * s and
b = 0.5 - D * g * s (s = 1 for 8-bit, 1/256 for 16-bit input, so the output is 8-bit)
in one pass: a small numba loop written here because NumPy needs four passes and
temporaries for the same expression (scripts/bench_calibration.py measures both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numba import njit

from inspector.calibration.inputs import CalibrationError, full_scale, read_frames
from inspector.calibration.store import FlatFieldInfo, now_iso

SATURATED_MAX = 0.001  # share of a white frame's pixels allowed at full scale
BAD_MAX = 0.01  # share of pixels allowed with white <= dark (dead or stuck pixels)
MIN_CONTRAST = 0.04  # mean(W - D) must exceed this share of full scale
BAD_GAIN = 20.0  # a pixel needing more gain than this is counted bad and left as it is


def nonuniformity(image: np.ndarray, blocks: int = 16) -> float:
    """(max - min) / mean of the means of blocks x blocks tiles: 0 for a uniform image."""
    h, w = image.shape
    means = cv2.resize(image.astype(np.float32), (blocks, blocks), interpolation=cv2.INTER_AREA)
    if h < blocks or w < blocks:
        means = image.astype(np.float32)
    m = float(means.mean())
    return float((means.max() - means.min()) / m) if m > 0 else float("inf")


@njit(cache=True, nogil=True, fastmath=True)
def _apply_rows(src, a, b, out):  # pragma: no cover - compiled
    h, w = src.shape
    for y in range(h):
        for x in range(w):
            v = np.float32(src[y, x]) * a[y, x] + b[y, x]
            v = min(max(v, np.float32(0.0)), np.float32(255.0))
            out[y, x] = np.uint8(v)


@dataclass
class FlatField:
    """Run-time coefficients: out = clip(I * a + b), float32 (H, W) each."""

    a: np.ndarray
    b: np.ndarray
    dtype: np.dtype  # input pixel type they were measured for

    @classmethod
    def from_maps(cls, dark: np.ndarray, gain: np.ndarray, dtype: str | np.dtype
                  ) -> FlatField:
        s = 1.0 if np.dtype(dtype) == np.uint8 else 1.0 / 256.0
        a = (gain.astype(np.float64) * s).astype(np.float32)
        b = (0.5 - dark.astype(np.float64) * gain * s).astype(np.float32)
        return cls(a, b, np.dtype(dtype))

    def warm_up(self) -> None:
        """Compile (or load from numba's cache) the kernel now, not on the first part."""
        self.apply(np.zeros((1, 1), self.dtype), (0, 0, 1, 1))

    def apply(self, src: np.ndarray, rect: tuple[int, int, int, int] | None = None,
              out: np.ndarray | None = None) -> np.ndarray:
        """Corrected mono uint8 of `src` (the full frame), or of its `rect` (x, y, w, h)."""
        if src.dtype != self.dtype:
            raise ValueError(f"flat field was measured on {self.dtype} frames, got {src.dtype}")
        x, y, w, h = rect if rect is not None else (0, 0, src.shape[1], src.shape[0])
        if out is None:
            out = np.empty((h, w), np.uint8)
        _apply_rows(src[y:y + h, x:x + w], self.a[y:y + h, x:x + w],
                    self.b[y:y + h, x:x + w], out)
        return out


@dataclass
class FlatFieldResult:
    """What build_flatfield measured: the section for the file, the dark and gain maps."""

    info: FlatFieldInfo  # `file` and `sha256` are filled in when saved
    dark: np.ndarray  # float32 (H, W)
    gain: np.ndarray  # float32 (H, W)
    image_size: tuple[int, int]  # w, h
    white_mean: np.ndarray  # float32 (H, W): the averaged white frame (for the picture)


def _mean(frames: list[np.ndarray]) -> np.ndarray:
    acc = np.zeros(frames[0].shape, np.float64)
    for f in frames:
        acc += f
    return acc / len(frames)


def _gain(white: np.ndarray, dark: np.ndarray, smooth_px: float
          ) -> tuple[np.ndarray, float, np.ndarray]:
    """(gain, white level, bad-pixel mask) from mean white and dark frames."""
    signal = white - dark
    if smooth_px > 0:
        signal = cv2.GaussianBlur(signal, (0, 0), smooth_px, borderType=cv2.BORDER_REFLECT)
    level = float(signal.mean())
    bad = signal <= level / BAD_GAIN
    gain = np.where(bad, 1.0, level / np.where(bad, 1.0, signal))
    return gain, level, bad


def build_flatfield(
    dark_paths: Sequence[Path],
    white_paths: Sequence[Path],
    expect_size: tuple[int, int] | None = None,
    smooth_px: float = 0.0,
    progress: bool = False,
) -> FlatFieldResult:
    """Dark and gain maps from reference frames; raises CalibrationError naming the file."""
    dark_paths = [Path(p) for p in dark_paths]
    white_paths = [Path(p) for p in white_paths]
    darks = read_frames(dark_paths, expect_size, "dark frames", progress)
    h, w = darks[0].shape
    whites = read_frames(white_paths, (w, h), "white frames", progress)
    if whites[0].dtype != darks[0].dtype:
        raise CalibrationError(f"{white_paths[0]}: pixel type {whites[0].dtype} differs from "
                               f"{darks[0].dtype} of the dark frame {dark_paths[0]}")
    top = full_scale(darks[0].dtype)
    for path, frame in zip(white_paths, whites, strict=True):
        sat = float(np.count_nonzero(frame >= top)) / frame.size
        if sat > SATURATED_MAX:
            raise CalibrationError(
                f"{path}: white frame saturated: {100 * sat:.2f} % of the pixels at {top} "
                f"(at most {100 * SATURATED_MAX:.1f} % allowed): lower the exposure or light")
    dark = _mean(darks)
    white = _mean(whites)
    for path, frame in zip(white_paths, whites, strict=True):
        if float(frame.mean()) - float(dark.mean()) < MIN_CONTRAST * top:
            raise CalibrationError(
                f"{path}: white frame is not brighter than the dark frames ({dark_paths[0]}"
                f"{' ...' if len(dark_paths) > 1 else ''}): mean {frame.mean():.1f} against "
                f"dark {dark.mean():.1f}; at least {MIN_CONTRAST * top:.0f} grey levels more "
                "needed (swapped dark and white? light off?)")
    gain, level, bad = _gain(white, dark, smooth_px)
    if bad.mean() > BAD_MAX:
        raise CalibrationError(
            f"{white_paths[0]}: {100 * bad.mean():.1f} % of the pixels are not brighter than "
            f"in the dark frames ({dark_paths[0]}): the white target must fill the view")
    after = None
    if len(whites) >= 2:  # held out: gain from all but the last white frame, applied to it
        g_ho = _gain(_mean(whites[:-1]), dark, smooth_px)[0]
        after = nonuniformity((whites[-1] - dark) * g_ho)
    info = FlatFieldInfo(
        date=now_iso(),
        file="",
        sha256="",
        dtype=str(darks[0].dtype),
        dark_images=[p.name for p in dark_paths],
        white_images=[p.name for p in white_paths],
        white_level=level,
        smooth_px=smooth_px,
        nonuniformity_before=nonuniformity(white),
        nonuniformity_after=after,
        gain_min=float(gain[~bad].min()) if (~bad).any() else 1.0,
        gain_max=float(gain[~bad].max()) if (~bad).any() else 1.0,
        bad_pixels=int(bad.sum()),
    )
    return FlatFieldResult(info, dark.astype(np.float32), gain.astype(np.float32), (w, h),
                           white.astype(np.float32))
