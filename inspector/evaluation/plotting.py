"""Line charts as PNG, drawn with OpenCV (already a dependency) rather than matplotlib,
to keep the runtime install small.

One function, `line_chart`: axes with a grid and tick labels, one coloured polyline per
series, optional vertical marker lines (a broker restart, the end of a warm-up) and a
legend on the right. The evaluation's PR curves and the benchmark's latency-over-time
plot are both drawn with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]
FONT = cv2.FONT_HERSHEY_SIMPLEX
BLACK = (0, 0, 0)
Series = tuple[Sequence[float], Sequence[float]]  # (xs, ys)
VLines = tuple[str, Sequence[float], tuple[int, int, int]]  # (legend label, xs, RGB colour)


def _label(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.4) -> None:
    cv2.putText(img, text, org, FONT, scale, BLACK, 1, cv2.LINE_AA)


def line_chart(series: dict[str, Series], path: Path, title: str, *,
               x_label: str, y_label: str,
               x_range: tuple[float, float], y_range: tuple[float, float],
               size: tuple[int, int] = (640, 480), ticks: int | tuple[int, int] = 6,
               tick_format: Callable[[float], str] = "{:.1f}".format,
               thickness: int = 2, vlines: Sequence[VLines] = ()) -> Path:
    """Draw `series` (legend name -> (xs, ys)) in the given order and write a PNG.

    Values outside the ranges are clipped to the frame; `vlines` are drawn under the
    series, dashed, with their own legend entries after the series'. `ticks` per axis
    (x, y) or for both, ends included.
    """
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    x0, y0, x1, y1 = 60, 40, w - 170, h - 50
    (xa, xb), (ya, yb) = x_range, y_range
    sx = (x1 - x0) / ((xb - xa) or 1.0)
    sy = (y1 - y0) / ((yb - ya) or 1.0)

    def px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u = np.clip(x0 + (np.asarray(x, float) - xa) * sx, x0, x1)
        v = np.clip(y1 - (np.asarray(y, float) - ya) * sy, y0, y1)
        return np.stack([u, v], axis=-1)

    x_ticks, y_ticks = (ticks, ticks) if isinstance(ticks, int) else ticks
    for t in np.linspace(0, 1, x_ticks):
        gx = int(x0 + t * (x1 - x0))
        cv2.line(img, (gx, y0), (gx, y1), (225, 225, 225), 1)
        xt = tick_format(xa + t * (xb - xa))
        _label(img, xt, (gx - (cv2.getTextSize(xt, FONT, 0.4, 1)[0][0] + 7) // 2, y1 + 18))
    for t in np.linspace(0, 1, y_ticks):
        gy = int(y1 - t * (y1 - y0))
        cv2.line(img, (x0, gy), (x1, gy), (225, 225, 225), 1)
        yt = tick_format(ya + t * (yb - ya))
        _label(img, yt, (x0 - cv2.getTextSize(yt, FONT, 0.4, 1)[0][0] - 15, gy + 4))
    cv2.rectangle(img, (x0, y0), (x1, y1), BLACK, 1)
    _label(img, x_label, ((x0 + x1) // 2 - 20, h - 15), 0.5)
    _label(img, y_label, (5, y0 - 10), 0.5)
    _label(img, title[:70], (x0, 22), 0.5)
    legend: list[tuple[str, tuple[int, int, int], bool]] = []
    for label, xs, rgb in vlines:
        colour = tuple(int(c) for c in rgb[::-1])
        for x in xs:
            gx = int(round(px(np.array([x]), np.array([ya]))[0, 0]))
            for yy in range(y0, y1, 8):  # dashed
                cv2.line(img, (gx, yy), (gx, min(yy + 4, y1)), colour, 1)
        legend.append((label, colour, True))
    for i, (name, (xs, ys)) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)][::-1]  # RGB -> BGR
        pts = px(np.asarray(xs, float), np.asarray(ys, float)).reshape(-1, 2)
        if len(pts):
            cv2.polylines(img, [pts.astype(np.int32)], False, colour, thickness, cv2.LINE_AA)
        legend.insert(i, (name, colour, False))
    for i, (name, colour, dashed) in enumerate(legend):
        ly = y0 + 20 + 22 * i
        cv2.line(img, (x1 + 12, ly - 4), (x1 + 36, ly - 4), colour, 1 if dashed else 3)
        _label(img, name[:16], (x1 + 42, ly), 0.45)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")
    return path
