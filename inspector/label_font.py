"""A small bitmap font for the synthetic part's printed label.

The label used to be drawn with OpenCV's Hershey text, whose anti-aliasing changed between
OpenCV 5.0 and 5.1 (2.4 % of the demo part's pixels, by up to 97 grey levels), so the demo
recipe committed in git no longer matched what the generator drew. These glyphs are drawn
with integer NumPy arithmetic only (4 x 4 supersampling, box-filtered), so the label has the
same bits under every OpenCV and on every processor.
"""

from __future__ import annotations

import numpy as np

__all__ = ["draw_text", "text_size"]

_SS = 4  # supersampling per axis: edges land on 1/4 px, coverage in steps of 1/16

# 5 x 7 glyphs, '#' = ink. Only the characters the label prints, plus the other digits.
_GLYPHS: dict[str, tuple[str, ...]] = {
    " ": (".....",) * 7,
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("####.", "....#", "....#", ".###.", "....#", "....#", "####."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "N": ("#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
}
_ROWS, _COLS, _ADVANCE = 7, 5, 6  # glyph cell and advance in font units


def text_size(text: str, cap_px: float) -> tuple[int, int]:
    """Width and height in pixels of `text` with capitals `cap_px` high."""
    unit = cap_px / _ROWS
    return int(np.ceil((len(text) * _ADVANCE - 1) * unit)), int(np.ceil(cap_px))


def _edges(n: int, unit: float, origin: float) -> np.ndarray:
    """Supersampled integer positions of the n + 1 cell edges."""
    return np.round((origin + np.arange(n + 1) * unit) * _SS).astype(np.int64)


def draw_text(ink: np.ndarray, text: str, x0: int, baseline: int, cap_px: float) -> None:
    """Draw `text` into uint8 `ink` (max with what is there), capitals `cap_px` high.

    `(x0, baseline)` is the bottom-left of the first capital, as with cv2.putText. Raises
    KeyError naming a character the font does not have.
    """
    missing = sorted(set(text) - set(_GLYPHS))
    if missing:
        raise KeyError(f"label font has no glyph for {missing}")
    unit = cap_px / _ROWS
    w, h = text_size(text, cap_px)
    top = baseline - h
    big = np.zeros(((h + 1) * _SS, (w + 1) * _SS), np.uint8)
    ys = _edges(_ROWS, unit, 0.0)
    for i, ch in enumerate(text):
        xs = _edges(_COLS, unit, i * _ADVANCE * unit)
        for r, row in enumerate(_GLYPHS[ch]):
            for c, bit in enumerate(row):
                if bit == "#":
                    big[ys[r]:ys[r + 1], xs[c]:xs[c + 1]] = 1
    # Box filter: integer sum of each 4 x 4 block -> 0..16 -> 0..255.
    cov = big.reshape(h + 1, _SS, w + 1, _SS).sum(axis=(1, 3), dtype=np.int32)
    level = (cov * 255 + 8) // (_SS * _SS)
    y0, x1 = max(top, 0), min(x0 + w + 1, ink.shape[1])
    y1 = min(top + h + 1, ink.shape[0])
    if y1 <= y0 or x1 <= x0:
        return
    region = ink[y0:y1, x0:x1]
    np.maximum(region, level[y0 - top:y1 - top, : x1 - x0].astype(np.uint8), out=region)
