"""Overlay images for people: what made the part NG, readable at a glance.

One drawing for the archive's NG overlays and the station page. The frame keeps its
pixels; a banner above it gives the verdict, the PLC code and the rule that failed (the
result's first reason), and a legend below it names each class drawn with its colour and
count. Counted defects are drawn bold in their class colour with a tinted mask; their
labels (class, score, area) stay inside the image and apart from each other. Candidates
under the recipe's thresholds are hidden unless asked for (thin grey, unlabelled).
Red is kept for the NG banner and `unknown` has its own colour, so neither is mistaken
for a class.
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

from inspector.core.result import Defect, Result

# BGR; no pure red (the NG banner's) and no magenta (unknown's)
PALETTE = [(0, 165, 255), (255, 200, 0), (0, 220, 220), (80, 200, 60), (255, 120, 60),
           (180, 120, 255), (140, 230, 160), (60, 120, 255), (200, 200, 80)]
UNKNOWN = (255, 0, 255)
CANDIDATE = (150, 150, 150)
NG_RED, OK_GREEN = (40, 40, 220), (60, 170, 60)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def class_colour(name: str, unknown: bool = False) -> tuple[int, int, int]:
    """A class's colour, the same on every drawing (a hash of its name, not its order)."""
    if unknown or name == "unknown":
        return UNKNOWN
    return PALETTE[zlib.crc32(name.encode()) % len(PALETTE)]


def _mono8(image: np.ndarray) -> np.ndarray:
    mono = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if mono.dtype == np.uint16:
        return (mono >> 8).astype(np.uint8)
    return mono.astype(np.uint8, copy=False)


def _label(d: Defect) -> str:
    name = "unknown" if d.unknown else d.cls
    return f"{name} {d.score:.2f} {d.area_mm2:.3g} mm2"


def _place(box: tuple[int, int, int, int], size: tuple[int, int], shape: tuple[int, int],
           taken: list[tuple[int, int, int, int]]) -> tuple[int, int]:
    """Top-left of a label of `size` near `box`: above, below, then inside it, then moved
    down in steps, always within the image and clear of labels already placed."""
    (tw, th), (H, W) = size, shape
    x, y, w, h = box
    tx = min(max(x, 0), max(W - tw, 0))
    tries = [y - th - 3, y + h + 3, y + 2]
    tries += [t for t in range(0, max(H - th, 1), th + 2)]
    for ty in tries:
        ty = min(max(ty, 0), max(H - th, 0))
        rect = (tx, ty, tw, th)
        if not any(_overlap(rect, r) for r in taken):
            return tx, ty
    return tx, min(max(y, 0), max(H - th, 0))


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float,
          colour: tuple[int, int, int], bg: tuple[int, int, int] = (0, 0, 0)) -> None:
    """Text on a filled box, so it reads on any background."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    x, y = org
    cv2.rectangle(img, (x, y), (x + tw + 4, y + th + base + 2), bg, -1)
    cv2.putText(img, text, (x + 2, y + th + 1), FONT, scale, colour, 1, cv2.LINE_AA)


def draw(image: np.ndarray, result: Result, candidates: bool = False) -> np.ndarray:
    """BGR overlay of `result` on its frame, with a verdict banner and a legend."""
    out = cv2.cvtColor(_mono8(image), cv2.COLOR_GRAY2BGR)
    H, W = out.shape[:2]
    scale = max(0.35, min(0.8, W / 1000))
    shown = [d for d in result.defects if d.accepted or candidates]
    if any(d.mask is not None for d in shown):
        from pycocotools import mask as mask_utils  # on use: importing the runtime stays light
    for d in sorted(shown, key=lambda d: d.accepted):  # counted ones on top
        colour = class_colour(d.cls, d.unknown) if d.accepted else CANDIDATE
        if d.mask is not None and d.accepted:
            m = mask_utils.decode({"size": d.mask.size, "counts": d.mask.counts.encode()})
            m = m.astype(bool)
            out[m] = (0.55 * out[m] + 0.45 * np.array(colour)).astype(np.uint8)
        x, y, w, h = (int(round(v)) for v in d.bbox)
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, 3 if d.accepted else 1)
    taken: list[tuple[int, int, int, int]] = []
    for d in (d for d in shown if d.accepted):
        text = _label(d)
        (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
        size = (tw + 4, th + base + 2)
        box = tuple(int(round(v)) for v in d.bbox)
        tx, ty = _place(box, size, (H, W), taken)  # type: ignore[arg-type]
        taken.append((tx, ty, *size))
        _text(out, text, (tx, ty), scale, class_colour(d.cls, d.unknown))
    return np.vstack([_banner(result, W, scale), out, _legend(result, shown, W, scale)])


def _banner(result: Result, width: int, scale: float) -> np.ndarray:
    """Verdict, code, part and the first failing rule, on red (NG) or green (OK)."""
    ng = result.verdict == "NG"
    lines = [f"{result.verdict}  code {result.code}  {result.camera} #{result.seq}  "
             f"{result.part_id}"]
    if ng and result.reasons:
        lines.append(result.reasons[0] + (f"  (+{len(result.reasons) - 1} more)"
                                          if len(result.reasons) > 1 else ""))
    th = cv2.getTextSize("Ag", FONT, scale, 1)[0][1] + 8
    bar = np.full((th * len(lines) + 6, width, 3), NG_RED if ng else OK_GREEN, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(bar, _fit(line, width, scale), (6, 4 + th * (i + 1) - 6), FONT, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return bar


def _legend(result: Result, shown: list[Defect], width: int, scale: float) -> np.ndarray:
    """One swatch per class drawn, with how many counted; grey for hidden candidates."""
    counts: dict[tuple[str, bool], int] = {}
    for d in shown:
        if d.accepted:
            key = ("unknown" if d.unknown else d.cls, d.unknown)
            counts[key] = counts.get(key, 0) + 1
    hidden = sum(1 for d in result.defects if not d.accepted)
    items = [(f"{name} x{n}", class_colour(name, unk)) for (name, unk), n in counts.items()]
    shown_candidates = len(shown) - sum(counts.values())
    if shown_candidates:
        items.append((f"candidates x{shown_candidates}", CANDIDATE))
    elif hidden:
        items.append((f"{hidden} candidate(s) under threshold hidden", CANDIDATE))
    if not items:
        items.append(("no defect", (200, 200, 200)))
    th = cv2.getTextSize("Ag", FONT, scale, 1)[0][1] + 10
    bar = np.full((th + 6, width, 3), 32, np.uint8)
    x = 6
    for text, colour in items:
        tw = cv2.getTextSize(text, FONT, scale, 1)[0][0]
        if x + th + tw > width:
            break
        cv2.rectangle(bar, (x, 5), (x + th - 6, th - 1), colour, -1)
        cv2.putText(bar, text, (x + th, th - 3), FONT, scale, (235, 235, 235), 1, cv2.LINE_AA)
        x += th + tw + 14
    return bar


def _fit(text: str, width: int, scale: float) -> str:
    """`text` cut (with ...) to fit `width` pixels."""
    while len(text) > 4 and cv2.getTextSize(text, FONT, scale, 1)[0][0] > width - 12:
        text = text[:-4] + "..."
    return text
