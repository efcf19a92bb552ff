"""Evaluation reports: Markdown tables and a PR-curve picture (PNG).

The plot is drawn with OpenCV (already a dependency) rather than matplotlib, to keep the
runtime install small: axes, grid, one coloured curve per class with a legend.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def markdown(result: dict) -> str:
    """The report of one `inspector eval` run (see run.run_eval for the dict)."""
    lines = [f"### {result['dataset']}: {result['model']}, k = {result['shots']} prompts "
             f"per class, seeds {result['seeds']}", ""]
    has_mask = result["mask_ap50_mean"] is not None
    head = "| class | box AP50 |" + (" mask AP50 |" if has_mask else "")
    lines += [head, "|---|---:|" + ("---:|" if has_mask else "")]
    for name in result["classes"]:
        row = f"| {name} | {pct(result['per_class_box_ap50'][name])} |"
        if has_mask:
            row += f" {pct(result['per_class_mask_ap50'][name])} |"
        lines.append(row)
    row = f"| **mean** | **{pct(result['box_ap50_mean'])}** |"
    if has_mask:
        row += f" **{pct(result['mask_ap50_mean'])}** |"
    lines.append(row)
    lines += ["", "| seed | box AP50 |" + (" mask AP50 |" if has_mask else ""),
              "|---:|---:|" + ("---:|" if has_mask else "")]
    for s in result["per_seed"]:
        lines.append(f"| {s['seed']} | {pct(s['box_ap50'])} |"
                     + (f" {pct(s['mask_ap50'])} |" if has_mask else ""))
    lat = result["latency_ms"]
    lines += ["", f"Test images: {result['test_images']} ({result['defect_free_test_images']} "
              f"defect-free); backend {result['backend']}, input {result['size']} px, "
              f"{result['threads']} thread(s).",
              f"Latency per image (encode + head + post-processing): p50 {lat['p50']:.1f} ms, "
              f"p99 {lat['p99']:.1f} ms (encode p50 {lat['encode_p50']:.1f} ms)."]
    return "\n".join(lines)


def pr_plot(curves: dict[str, tuple[list, list]], path: Path, title: str,
            size: tuple[int, int] = (640, 480)) -> Path:
    """Precision-recall curves (recall on x) as a PNG."""
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    x0, y0, x1, y1 = 60, 40, w - 170, h - 50
    font = cv2.FONT_HERSHEY_SIMPLEX
    for t in np.linspace(0, 1, 6):
        gx, gy = int(x0 + t * (x1 - x0)), int(y1 - t * (y1 - y0))
        cv2.line(img, (gx, y0), (gx, y1), (225, 225, 225), 1)
        cv2.line(img, (x0, gy), (x1, gy), (225, 225, 225), 1)
        cv2.putText(img, f"{t:.1f}", (gx - 12, y1 + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, f"{t:.1f}", (x0 - 32, gy + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    cv2.putText(img, "recall", ((x0 + x1) // 2 - 20, h - 15), font, 0.5, (0, 0, 0), 1,
                cv2.LINE_AA)
    cv2.putText(img, "precision", (5, y0 - 10), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, title[:70], (x0, 22), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i, (name, (rec, prec)) in enumerate(sorted(curves.items())):
        colour = COLOURS[i % len(COLOURS)][::-1]  # RGB -> BGR
        pts = np.array([[x0 + r * (x1 - x0), y1 - p * (y1 - y0)] for r, p in zip(rec, prec,
                                                                                 strict=True)])
        cv2.polylines(img, [pts.astype(np.int32)], False, colour, 2, cv2.LINE_AA)
        ly = y0 + 20 + 22 * i
        cv2.line(img, (x1 + 12, ly - 4), (x1 + 36, ly - 4), colour, 3)
        cv2.putText(img, name[:16], (x1 + 42, ly), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")
    return path
