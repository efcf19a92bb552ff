"""Export the frozen feature extractor of the unknown-defect branch to ONNX, once.

The unknown-defect branch (inspector/inference/unknown/) describes every stride-8 position of a
frame by the detector's own encoder: EfficientNet-Lite0 with ImageNet weights
(inspector.training.backbone.Lite0Features), stride-8 and stride-16 feature maps. A line
PC runs it with ONNX Runtime and needs no torch; only this script does:

    .venv/bin/python scripts/export_unknown_encoder.py [--out engines/lite0-features.onnx]

Input `image` (B, 1, H, W) float32 in [0, 1], H and W any multiple of 16 (dynamic);
outputs `f8` (B, 40, H/8, W/8) and `f16` (B, 112, H/16, W/16). The graph is checked
against torch on random sizes before the file is written; its sha256 is printed.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "engines" / "lite0-features.onnx"
OPSET = 17


def export(out: Path) -> str:
    import onnx
    import onnxruntime as ort
    import torch

    from inspector.inference.unknown.features import pin_path
    from inspector.training.backbone import Lite0Features

    model = Lite0Features(pretrained=True).eval()
    dummy = torch.rand(1, 1, 256, 320)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model, (dummy,), str(raw), input_names=["image"], output_names=["f8", "f16"],
            dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                          "f8": {0: "batch", 2: "h8", 3: "w8"},
                          "f16": {0: "batch", 2: "h16", 3: "w16"}},
            opset_version=OPSET, dynamo=False,
        )
        graph = onnx.load(str(raw))  # one self-contained file, no external data
    onnx.checker.check_model(graph)
    data = graph.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for h, w in ((128, 128), (224, 352), (512, 512)):
        x = rng.random((1, 1, h, w), dtype=np.float32)
        with torch.no_grad():
            ref = [t.numpy() for t in model(torch.from_numpy(x))]
        got = sess.run(None, {"image": x})
        for name, r, g in zip(("f8", "f16"), ref, got, strict=True):
            err = float(np.abs(r - g).max() / (np.abs(r).max() + 1e-9))
            if r.shape != g.shape or err > 1e-3:
                raise RuntimeError(f"ONNX {name} differs from torch at {h}x{w}: "
                                   f"shape {g.shape} vs {r.shape}, rel. error {err:.2e}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    pin_path(out).write_text(f"{digest}  {out.name}\n", encoding="utf-8")  # checked on load
    return digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    digest = export(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB), sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
