"""Calibrate the demo's synthetic camera with the CLI: calibration/demo-cam0.yaml.

The synthetic camera (inspector.acquisition.synthetic_parts) is an ideal pinhole looking
square onto the
part at 0.05 mm per pixel in 512 x 512 frames, with no lens distortion and no
vignetting; so only its scale needs calibrating. This script renders what that camera
would see of a checkerboard lying in the part plane (12 x 10 squares of 2 mm, twice,
moved and turned a little; inspector.calibration.render) and runs
`inspector calibrate scale` on the images, as an integrator would on a real camera.
`inspector demo` uses the file when the frame size matches.

Usage: .venv/bin/python scripts/make_demo_calibration.py [--out calibration/demo-cam0.yaml]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inspector.calibration.render import CameraModel, look_at_pose, render_target  # noqa: E402
from inspector.calibration.targets import TargetSpec  # noqa: E402
from inspector.cli.main import build_parser  # noqa: E402

SIZE = 512
MM_PER_PX = 0.05  # the synthetic part's design scale (recipes/demo: mm_per_px 0.05)
DISTANCE_MM = 200.0  # any distance: the focal length follows from it


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "calibration" / "demo-cam0.yaml"))
    args = ap.parse_args()
    f = DISTANCE_MM / MM_PER_PX
    c = (SIZE - 1) / 2
    cam = CameraModel(SIZE, SIZE, np.array([[f, 0, c], [0, f, c], [0, 0, 1.0]]), noise=1.0)
    spec = TargetSpec(squares=(12, 10), square_mm=2.0)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k, (turn, shift) in enumerate(((0.0, (0.0, 0.0)), (3.0, (0.6, -0.4)))):
            rv, tv = look_at_pose((12.0, 10.0), DISTANCE_MM, (0.0, 0.0, turn), shift)
            path = Path(tmp) / f"scale{k}.png"
            cv2.imwrite(str(path), render_target(cam, spec, rv, tv, 200.0, rng))
            paths.append(str(path))
        argv = ["calibrate", "scale", "--camera", "cam0", "--serial", "synthetic-demo",
                "--file", args.out, "--squares", "12x10", "--square-mm", "2", *paths]
        ns = build_parser().parse_args(argv)
        return int(ns.func(ns))


if __name__ == "__main__":
    sys.exit(main())
