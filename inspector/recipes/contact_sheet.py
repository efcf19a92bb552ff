"""A recipe's prompt bank as one PNG: `inspector recipe show`.

One row per defect class (in recipe order, with its PLC code), one tile per prompt
example: the defect with some context around it, its box and mask outline drawn in,
and the prompt_id under it. A class with no example shows an empty, marked tile, so
gaps in the bank are seen at a glance. Drawn with OpenCV, which the service already
needs (no plotting library on a line PC).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspector.inference.detectors.base import PromptExample
from inspector.recipes.files import RecipeEdit
from inspector.recipes.recipe import Recipe, load_prompts

TILE = 136  # px of one example's picture
LABEL_H = 18
HEAD_W = 150  # column of class names
TITLE_H = 30
GAP = 6
FONT = cv2.FONT_HERSHEY_SIMPLEX
BOX = (60, 200, 60)  # BGR
MASK = (40, 170, 250)
TEXT = (235, 235, 235)
BG = (38, 38, 38)


def _tile(ex: PromptExample) -> np.ndarray:
    """The example cropped with context (square, at least 48 px), scaled to TILE."""
    img = ex.image if ex.image.ndim == 2 else cv2.cvtColor(ex.image, cv2.COLOR_BGR2GRAY)
    H, W = img.shape
    x, y, w, h = ex.bbox
    side = int(min(max(48, 2.0 * max(w, h)), max(H, W)))
    cx, cy = x + w / 2, y + h / 2
    x0 = int(np.clip(round(cx - side / 2), 0, max(W - side, 0)))
    y0 = int(np.clip(round(cy - side / 2), 0, max(H - side, 0)))
    crop = img[y0:y0 + side, x0:x0 + side]
    s = TILE / max(crop.shape)
    out = np.full((TILE, TILE, 3), 0, np.uint8)
    small = cv2.resize(crop, (round(crop.shape[1] * s), round(crop.shape[0] * s)),
                       interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST)
    out[:small.shape[0], :small.shape[1]] = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    if ex.mask is not None:
        m = ex.mask[y0:y0 + side, x0:x0 + side].astype(np.uint8)
        m = cv2.resize(m, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, contours, -1, MASK, 1)
    p0 = (int((x - x0) * s), int((y - y0) * s))
    p1 = (int((x + w - x0) * s), int((y + h - y0) * s))
    cv2.rectangle(out, p0, p1, BOX, 1)
    return out


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.4,
          color: tuple = TEXT, width: int | None = None) -> None:
    if width is not None and cv2.getTextSize(text, FONT, scale, 1)[0][0] > width:
        while len(text) > 3 and cv2.getTextSize(text + "~", FONT, scale, 1)[0][0] > width:
            text = text[:-1]
        text += "~"  # shortened to fit
    cv2.putText(img, text, org, FONT, scale, color, 1, cv2.LINE_AA)


def render(recipe: Recipe, prompts: list[PromptExample] | None = None,
           max_per_row: int = 8) -> np.ndarray:
    """The contact sheet as a BGR image."""
    prompts = load_prompts(recipe) if prompts is None else prompts
    rows: list[tuple[str, list[PromptExample]]] = [
        (c.name, [p for p in prompts if p.cls == c.name]) for c in recipe.classes]
    names = {c.name for c in recipe.classes}
    stray = [p for p in prompts if p.cls not in names]
    if stray:
        rows.append(("(not a class)", stray))
    lines = [(name, exs[i:i + max_per_row]) for name, exs in rows
             for i in range(0, max(len(exs), 1), max_per_row)]
    cols = max([len(exs) for _, exs in lines] + [1])
    cell_h = TILE + LABEL_H + GAP
    sheet = np.full((TITLE_H + len(lines) * cell_h + GAP,
                     HEAD_W + cols * (TILE + GAP) + GAP, 3), BG, np.uint8)
    _text(sheet, f"{recipe.id} rev {recipe.rev}  sha256 {recipe.sha256[:12]}  "
                 f"{len(prompts)} prompts, {len(recipe.classes)} classes",
          (GAP, 20), 0.5)
    codes = {c.name: c.plc_code for c in recipe.classes}
    shown = set()
    for r, (name, exs) in enumerate(lines):
        y = TITLE_H + r * cell_h
        if name not in shown:
            shown.add(name)
            _text(sheet, name, (GAP, y + 20), 0.45, width=HEAD_W - 2 * GAP)
            n = len([p for p in prompts if p.cls == name])
            info = f"PLC {codes[name]}, {n} ex." if name in codes else f"{n} ex."
            _text(sheet, info, (GAP, y + 38), 0.38, (170, 170, 170))
        if not exs:
            x = HEAD_W
            cv2.rectangle(sheet, (x, y), (x + TILE - 1, y + TILE - 1), (70, 70, 200), 1)
            _text(sheet, "no examples", (x + 22, y + TILE // 2), 0.4, (90, 90, 230))
        for c, ex in enumerate(exs):
            x = HEAD_W + c * (TILE + GAP)
            sheet[y:y + TILE, x:x + TILE] = _tile(ex)
            _text(sheet, ex.prompt_id, (x + 2, y + TILE + 13), 0.38, width=TILE - 4)
    return sheet


def write_contact_sheet(recipe: Recipe, out: Path) -> Path:
    """Render and write the PNG atomically (temporary file, rename)."""
    out = Path(out)
    ok, png = cv2.imencode(".png", render(recipe))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    with RecipeEdit(out.parent) as ed:
        ed.write_bytes(out, png.tobytes())
        ed.commit()
    return out
