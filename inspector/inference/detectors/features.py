"""Classical image features for the texture detector: registration, band-pass stack, and
shape/contrast descriptors of candidate regions.

Everything here is plain OpenCV/NumPy on one mono image, so the detector needs no
training and runs in a few tens of milliseconds per 512 x 512 frame on a small CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# Descriptor layout; prototypes and regions use the same order.
FEATURE_NAMES = (
    "log_area",  # size
    "elongation",  # log of major/minor axis ratio from second moments
    "compactness",  # 4 pi A / P^2: 1 for a disc, small for lines and branches
    "solidity",  # area / convex hull area: low for branching cracks and curves
    "dark",  # how much darker than the good-part reference (tanh-scaled, >= 0)
    "bright",  # how much brighter than the reference (tanh-scaled, >= 0)
    "lost_ink",  # share of the region that is print on the good part and much brighter here
    "coarse",  # share of the anomaly explained by the coarse band (soft blotches)
)


def normalise(image: np.ndarray) -> np.ndarray:
    """Float32 image scaled to a median of 128, so exposure drift between parts cancels."""
    f = image.astype(np.float32)
    med = float(np.median(f[::4, ::4]))
    return f * (128.0 / max(med, 1.0))


class BandStack:
    """Difference-of-Gaussian bands plus oriented line filters.

    Each band is a pair of Gaussian sigmas in pixels (fine lines and pits, medium spots,
    coarse blotches); bands whose outer sigma exceeds 6 px are computed on a
    half-resolution image and upsampled, which keeps cost flat. The line filters smooth
    the finest band along `line_orients` directions: a thin scratch or crack is coherent
    along its length while the grain is not, so this lifts faint lines above the noise.
    """

    def __init__(
        self, sigmas: Sequence[tuple[float, float]], line_orients: int = 6, line_sigma: float = 3.0
    ) -> None:
        self.sigmas = [tuple(float(v) for v in s) for s in sigmas]
        self.coarse_index = int(np.argmax([s2 for _, s2 in self.sigmas]))
        self.fine_index = int(np.argmin([s2 for _, s2 in self.sigmas]))
        self.kernels = [_line_kernel(np.pi * i / line_orients, line_sigma)
                        for i in range(line_orients)]

    def __len__(self) -> int:
        return len(self.sigmas) + len(self.kernels)

    def __call__(self, f: np.ndarray) -> np.ndarray:
        h, w = f.shape
        out = np.empty((len(self), h, w), np.float32)
        half = None
        for i, (s1, s2) in enumerate(self.sigmas):
            if s2 > 6.0:
                if half is None:
                    half = cv2.pyrDown(f)
                b = cv2.GaussianBlur(half, (0, 0), s1 / 2) - cv2.GaussianBlur(half, (0, 0), s2 / 2)
                out[i] = cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR)
            else:
                out[i] = cv2.GaussianBlur(f, (0, 0), s1) - cv2.GaussianBlur(f, (0, 0), s2)
        for j, k in enumerate(self.kernels):
            cv2.filter2D(out[self.fine_index], -1, k, dst=out[len(self.sigmas) + j],
                         borderType=cv2.BORDER_REFLECT)
        return out


def _line_kernel(theta: float, sigma: float) -> np.ndarray:
    """A 1-D Gaussian of `sigma` along direction `theta`, anti-aliased across, sum 1."""
    r = int(np.ceil(3 * sigma))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float32)
    along = xx * np.cos(theta) + yy * np.sin(theta)
    across = -xx * np.sin(theta) + yy * np.cos(theta)
    k = np.exp(-0.5 * (along / sigma) ** 2 - 0.5 * (across / 0.6) ** 2)
    return (k / k.sum()).astype(np.float32)


class Aligner:
    """Translation registration to a reference by normalised cross-correlation.

    Parts in a fixture land within a few pixels of the same place; undoing that shift
    (to a fraction of a pixel) lets pixel-wise good-part statistics apply. A coarse search
    at quarter resolution finds the integer shift, a full-resolution search of +-2 px
    around it with a parabola fit gives the fraction. Plain (not whitened) correlation
    keeps the strong print and machined edges in charge instead of the random grain.
    """

    def __init__(self, reference: np.ndarray, max_shift: int = 16) -> None:
        self.max_shift = int(max_shift)
        self.ref = self._prep(reference)
        self.ref_small = self._prep_small(reference)
        q = -(-self.max_shift // 4) + 1  # margin at quarter resolution
        self.tmpl_small = self.ref_small[q:-q, q:-q]
        self.q = q
        m = self.max_shift + 3
        self.tmpl = self.ref[m:-m, m:-m]
        self.m = m

    @staticmethod
    def _prep(f: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(f, (0, 0), 1.0) - cv2.GaussianBlur(f, (0, 0), 5.0)

    @staticmethod
    def _prep_small(f: np.ndarray) -> np.ndarray:
        s = cv2.pyrDown(cv2.pyrDown(f))
        return s - cv2.GaussianBlur(s, (0, 0), 4.0)

    def shift(self, f: np.ndarray) -> tuple[float, float]:
        """(dx, dy) by which `f` is displaced relative to the reference."""
        res = cv2.matchTemplate(self._prep_small(f), self.tmpl_small, cv2.TM_CCOEFF_NORMED)
        _, _, _, (cx, cy) = cv2.minMaxLoc(res)
        cx, cy = 4 * (cx - self.q), 4 * (cy - self.q)
        r = 2 + 2  # search +-2 px around the coarse estimate, plus rounding slack
        m, (th, tw) = self.m, self.tmpl.shape
        H, W = f.shape
        x0 = int(np.clip(m + cx - r, 0, W - tw))
        y0 = int(np.clip(m + cy - r, 0, H - th))
        x1, y1 = min(W, x0 + tw + 2 * r), min(H, y0 + th + 2 * r)
        area = self._prep(f[max(0, y0 - 12):y1 + 12, max(0, x0 - 12):x1 + 12])
        oy, ox = y0 - max(0, y0 - 12), x0 - max(0, x0 - 12)
        res = cv2.matchTemplate(area[oy:oy + y1 - y0, ox:ox + x1 - x0], self.tmpl,
                                cv2.TM_CCOEFF_NORMED)
        _, _, _, (px, py) = cv2.minMaxLoc(res)
        fx, fy = _parabola(res, px, py)
        return x0 + px + fx - m, y0 + py + fy - m

    def align(self, f: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """`f` moved onto the reference frame, and the shift that was undone."""
        dx, dy = self.shift(f)
        return shift_image(f, -dx, -dy), (dx, dy)


def _parabola(res: np.ndarray, x: int, y: int) -> tuple[float, float]:
    """Sub-pixel offset of a correlation peak from a 3-point parabola in x and in y."""

    def fit(a: float, b: float, c: float) -> float:
        den = a - 2 * b + c
        return 0.0 if den >= 0 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))

    h, w = res.shape
    fx = fit(res[y, x - 1], res[y, x], res[y, x + 1]) if 0 < x < w - 1 else 0.0
    fy = fit(res[y - 1, x], res[y, x], res[y + 1, x]) if 0 < y < h - 1 else 0.0
    return fx, fy


def shift_image(f: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Shift an image by (dx, dy) pixels, sub-pixel, replicating the border."""
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(f, m, (f.shape[1], f.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def print_map(reference: np.ndarray) -> np.ndarray:
    """Where the good part carries dark print or machined features (bool), from its mean."""
    local = cv2.GaussianBlur(reference, (0, 0), 12.0)
    ink = (local - reference) > 18.0
    return cv2.dilate(ink.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with its holes filled: a band-pass response rings a spot, but the defect
    is the whole spot."""
    m8 = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(m8, contours, -1, 1, thickness=cv2.FILLED)
    return m8.astype(bool)


@dataclass
class Region:
    """One candidate defect, in registered coordinates."""

    x: int
    y: int
    w: int
    h: int
    mask: np.ndarray  # bool (h, w)
    peak: float  # highest anomaly score inside


def find_regions(
    amap: np.ndarray, zabs: np.ndarray, high: float, low: float, merge_px: int, min_area: int
) -> list[Region]:
    """Hysteresis components of the anomaly map (seeded above `high`, grown down to `low`,
    fragments within `merge_px` joined), strongest first. Each mask is cut from the band
    that peaks there, so a pit is not reported at the size of the coarse band's halo."""
    hot = amap > low
    grown = hot.astype(np.uint8)
    if merge_px:
        grown = cv2.dilate(grown, np.ones((2 * merge_px + 1,) * 2, np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    out = []
    for k in np.unique(labels[amap >= high]) if n > 1 else []:  # components holding a seed
        if k == 0:
            continue
        x, y, w, h = (int(v) for v in stats[k, :4])
        comp = (labels[y:y + h, x:x + w] == k) & hot[y:y + h, x:x + w]
        peak = float(amap[y:y + h, x:x + w][comp].max())
        z = zabs[:, y:y + h, x:x + w]
        band = int(np.argmax(np.where(comp, z, 0).reshape(len(z), -1).max(1)))
        mask = fill_holes(comp & (z[band] > low))
        ys, xs = np.nonzero(mask)
        if len(xs) < min_area:
            continue
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        out.append(Region(x + int(x0), y + int(y0), int(x1 - x0), int(y1 - y0),
                          mask[y0:y1, x0:x1], peak))
    out.sort(key=lambda r: -r.peak)
    return out


def region_descriptor(
    mask: np.ndarray,
    diff: np.ndarray,
    zabs: np.ndarray,
    printed: np.ndarray,
    contrast_scale: float,
    coarse: int,
) -> np.ndarray:
    """Descriptor of one candidate region (all arrays cropped to the region's box).

    `mask` bool region, `diff` signed difference to the reference (grey levels after
    normalisation), `zabs` |z| per band (B, h, w), `printed` the reference print map,
    `coarse` the index of the coarse band in `zabs`.
    """
    m8 = mask.astype(np.uint8)
    area = float(m8.sum())
    mom = cv2.moments(m8, binaryImage=True)
    mu20, mu02, mu11 = mom["mu20"] / area, mom["mu02"] / area, mom["mu11"] / area
    common = np.sqrt(max((mu20 - mu02) ** 2 + 4 * mu11 * mu11, 0.0))
    lam1, lam2 = (mu20 + mu02 + common) / 2, (mu20 + mu02 - common) / 2
    elong = 0.5 * np.log((lam1 + 0.25) / (max(lam2, 0.0) + 0.25))
    contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perim = sum(cv2.arcLength(c, True) for c in contours)
    compact = min(1.0, 4 * np.pi * area / max(perim * perim, 1.0))
    hull_area = cv2.contourArea(cv2.convexHull(np.concatenate(contours))) if contours else 0.0
    solidity = min(1.0, area / max(hull_area, area * 0.5, 1.0))
    vals = diff[mask]
    lost_ink = float((printed[mask] & (vals > contrast_scale)).mean())
    dark = np.tanh(max(0.0, -float(np.percentile(vals, 10))) / contrast_scale)
    bright = np.tanh(max(0.0, float(np.percentile(vals, 90))) / contrast_scale)
    zin = zabs[:, mask]
    share = float(zin[coarse].sum() / max(float(zin.sum()), 1e-6))
    return np.array(
        [np.log(area), elong, compact, solidity, dark, bright, lost_ink, share],
        np.float32,
    )
