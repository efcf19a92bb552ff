"""A small stroke font for the synthetic part's printed label.

The label used to be drawn with OpenCV's Hershey text, whose anti-aliasing changed between
OpenCV 5.0 and 5.1 (2.4 % of the demo part's pixels, by up to 97 grey levels), so the demo
recipe committed in git no longer matched what the generator drew. These glyphs are
single-stroke polylines of Hershey-like proportions (the detector was trained on parts
printed in that style), drawn with an anti-aliased distance test in float64 that uses only
+, -, *, / and sqrt, which IEEE 754 rounds the same way on every processor and in every
SIMD path: the label has the same bits under every OpenCV and on every machine.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_text"]

_CAP = 12.0  # glyph units per capital height; y grows downwards, 0 = top, 12 = baseline

# (advance, strokes); each stroke a polyline of (x, y) glyph units. Only the characters the
# label prints, plus the remaining digits.
_O = ((3, 0), (6, 0), (8, 1.5), (9, 4), (9, 8), (8, 10.5), (6, 12), (3, 12), (1, 10.5),
      (0, 8), (0, 4), (1, 1.5), (3, 0))
_ZERO = ((3, 0), (5, 0), (6.5, 1.5), (7.5, 4), (7.5, 8), (6.5, 10.5), (5, 12), (3, 12),
         (1, 10.5), (0, 8), (0, 4), (1, 1.5), (3, 0))
_SIX = ((7, 1), (5.5, 0), (3.5, 0), (1.5, 1.2), (0.3, 4), (0, 7), (0.5, 10), (2, 11.6),
        (4, 12), (6, 11.5), (7.5, 10), (7.8, 8.5), (7.3, 6.8), (6, 5.6), (4, 5.2), (2, 5.6),
        (0.6, 7))
_P_BOWL = ((0, 12), (0, 0), (5, 0), (7, 0.8), (8, 2.2), (8, 3.8), (7, 5.2), (5, 6), (0, 6))
_GLYPHS: dict[str, tuple[float, tuple[tuple[tuple[float, float], ...], ...]]] = {
    " ": (5.5, ()),
    "-": (9.0, (((0.5, 7), (6.5, 7)),)),
    "0": (11.0, (_ZERO,)),
    "1": (11.0, (((1, 2.5), (3.5, 0), (3.5, 12)),)),
    "2": (11.0, (((0.5, 3), (1.5, 0.8), (3, 0), (5, 0), (6.5, 0.8), (7.5, 2.5), (7.5, 4),
                  (6.5, 5.8), (0, 12), (8, 12)),)),
    "3": (11.0, (((1, 0), (7.5, 0), (4, 5), (5.5, 5), (7, 6), (7.8, 8), (7.5, 10), (6, 11.5),
                  (4, 12), (2, 12), (0.5, 11), (0, 10)),)),
    "4": (11.0, (((5.5, 0), (0, 8.5), (8, 8.5)), ((5.5, 0), (5.5, 12)))),
    "5": (11.0, (((7, 0), (1.2, 0), (0.6, 5.2), (1.5, 4.6), (3.5, 4.2), (5.5, 4.6), (7, 5.8),
                  (7.8, 8), (7.4, 10), (6, 11.5), (4, 12), (2, 12), (0.5, 11), (0, 10)),)),
    "6": (11.0, (_SIX,)),
    "7": (11.0, (((0, 0), (8, 0), (3, 12)),)),
    "8": (11.0, (((4, 0), (2, 0.5), (1, 2), (1, 3.5), (2, 5), (4, 5.8), (6, 6.5), (7.5, 8),
                  (7.8, 9.5), (7, 11.2), (5.5, 12), (2.5, 12), (1, 11.2), (0.2, 9.5), (0.5, 8),
                  (2, 6.5), (4, 5.8), (6, 5), (7, 3.5), (7, 2), (6, 0.5), (4, 0)),)),
    "9": (11.0, (tuple((7.8 - x, 12 - y) for x, y in _SIX),)),
    "C": (12.0, (((9, 3), (8, 1.5), (6, 0), (3, 0), (1, 1.5), (0, 4), (0, 8), (1, 10.5),
                  (3, 12), (6, 12), (8, 10.5), (9, 9)),)),
    "E": (11.0, (((8, 0), (0, 0), (0, 12), (8, 12)), ((0, 6), (5, 6)))),
    "I": (4.5, (((0, 0), (0, 12)),)),
    "L": (10.0, (((0, 0), (0, 12), (7, 12)),)),
    "N": (12.5, (((0, 12), (0, 0), (8, 12), (8, 0)),)),
    "O": (12.5, (_O,)),
    "P": (12.0, (_P_BOWL,)),
    "R": (12.0, (_P_BOWL, ((4.5, 6), (8, 12)))),
    "S": (11.5, (((8, 1.5), (6, 0), (3, 0), (1, 0.8), (0, 2), (0, 3.5), (1, 4.8), (3, 5.5),
                  (6, 6.3), (7.5, 7), (8, 8.5), (8, 10), (7, 11.3), (5, 12), (2, 12),
                  (0, 10.5)),)),
    "T": (9.5, (((0, 0), (8, 0)), ((4, 0), (4, 12)))),
}
_BEARING = 1.5  # glyph units left of each glyph's strokes


def _extent(text: str) -> tuple[float, float]:
    """Leftmost and rightmost stroke x of `text` in glyph units (pen starting at 0)."""
    xs, pen = [], 0.0
    for ch in text:
        advance, strokes = _GLYPHS[ch]
        xs += [pen + x + _BEARING for stroke in strokes for x, _ in stroke]
        pen += advance
    return (min(xs), max(xs)) if xs else (0.0, 0.0)


def _segments(text: str, x0: float, top: float, ux: float, uy: float) -> np.ndarray:
    """All stroke segments of `text` as rows (ax, ay, bx, by) in pixels."""
    segs: list[tuple[float, float, float, float]] = []
    pen = 0.0
    for ch in text:
        advance, strokes = _GLYPHS[ch]
        for stroke in strokes:
            pts = [(x0 + (pen + x + _BEARING) * ux, top + y * uy) for x, y in stroke]
            segs.extend((*a, *b) for a, b in zip(pts[:-1], pts[1:], strict=True))
        pen += advance
    return np.asarray(segs, np.float64).reshape(-1, 4)


def draw_text(ink: np.ndarray, text: str, box: tuple[float, float, float, float],
              thickness: float) -> None:
    """Draw `text` into uint8 `ink` (max with what is there), anti-aliased, filling `box`.

    `box` (left, top, right, bottom) is where the ink reaches half coverage, strokes
    included: capitals span its height, the text its width. Strokes are `thickness` px
    wide. Raises KeyError naming a character the font does not have.
    """
    missing = sorted(set(text) - set(_GLYPHS))
    if missing:
        raise KeyError(f"label font has no glyph for {missing}")
    r = thickness / 2.0
    left, top, right, bottom = box
    lo, hi = _extent(text)
    ux = (right - left - thickness) / max(hi - lo, 1e-9)
    uy = (bottom - top - thickness) / _CAP
    h, w = ink.shape
    cover = np.zeros((h, w), np.float64)
    for ax, ay, bx, by in _segments(text, left + r - lo * ux, top + r, ux, uy):
        xa = max(int(np.floor(min(ax, bx) - r - 1)), 0)
        xb = min(int(np.ceil(max(ax, bx) + r + 1)) + 1, w)
        ya = max(int(np.floor(min(ay, by) - r - 1)), 0)
        yb = min(int(np.ceil(max(ay, by) + r + 1)) + 1, h)
        if xa >= xb or ya >= yb:
            continue
        px = np.arange(xa, xb, dtype=np.float64)[None, :]
        py = np.arange(ya, yb, dtype=np.float64)[:, None]
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = np.zeros((1, 1)) if length2 == 0 else np.clip(
            ((px - ax) * dx + (py - ay) * dy) / length2, 0.0, 1.0)
        ex, ey = px - (ax + t * dx), py - (ay + t * dy)
        c = np.clip(r + 0.5 - np.sqrt(ex * ex + ey * ey), 0.0, 1.0)
        np.maximum(cover[ya:yb, xa:xb], c, out=cover[ya:yb, xa:xb])
    level = np.floor(cover * 255.0 + 0.5).astype(np.uint8)
    np.maximum(ink, level, out=ink)
