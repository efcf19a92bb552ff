"""Export the prompt detector to three ONNX graphs and check them against torch.

* `encoder.onnx`: image (B, 1, H, W) float [0, 1] -> tokens (B, D, H/8, W/8)
* `prompt.onnx` (SSPE): tokens (P, D, h, w), weights (P, h, w), spectrum (P, R) ->
  embedding (P, D)
* `head.onnx` (PQS): tokens (1, D, h, w), prototypes (C, D) [, sizes (C, 2) for a net
  with `size_prior`] -> boxes (C, K, 4), scores (C, K), masks (C, K, 2h, 2w)

H, W, P and C are dynamic axes (H, W multiples of 16). The same files serve ONNX Runtime
and TensorRT. `onnx.checker` runs on each; `parity` compares torch and ONNX Runtime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from inspector.training.prompt_net import PromptDetectorNet

OPSET = 17
GRAPHS = ("encoder", "prompt", "head")


def _export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str],
            outputs: list[str], axes: dict) -> None:
    torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs,
                      dynamic_axes=axes, opset_version=OPSET, dynamo=False,
                      do_constant_folding=True)
    import onnx

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)


def export(net: PromptDetectorNet, out: Path, size: int = 320,
           graphs: tuple[str, ...] = GRAPHS) -> dict[str, Path]:
    """Write the graphs (all three by default) to `out`; returns their paths."""
    net = net.eval()
    out.mkdir(parents=True, exist_ok=True)
    d, r, n = net.cfg.dim, net.cfg.rings, size // 8
    paths = {g: out / f"{g}.onnx" for g in graphs}
    with torch.no_grad():
        img = torch.rand(1, 1, size, size)
        if "encoder" in graphs:
            _export(net.encoder(), (img,), paths["encoder"], ["image"], ["tokens"],
                    {"image": {0: "batch", 2: "height", 3: "width"},
                     "tokens": {0: "batch", 2: "h", 3: "w"}})
        tok = torch.randn(2, d, n, n)
        if "prompt" in graphs:
            _export(net.prompt, (tok, torch.rand(2, n, n), torch.randn(2, r)), paths["prompt"],
                    ["tokens", "weights", "spectrum"], ["embedding"],
                    {"tokens": {0: "prompts", 2: "h", 3: "w"}, "weights": {0: "prompts",
                     1: "h", 2: "w"}, "spectrum": {0: "prompts"}, "embedding": {0: "prompts"}})
        protos = torch.nn.functional.normalize(torch.randn(3, d), dim=1)
        if "head" in graphs:
            args, names = (tok[:1], protos), ["tokens", "prototypes"]
            axes = {"tokens": {2: "h", 3: "w"}, "prototypes": {0: "classes"},
                    "boxes": {0: "classes"}, "scores": {0: "classes"},
                    "masks": {0: "classes", 2: "mh", 3: "mw"}}
            if net.cfg.size_prior:
                args, names = (*args, torch.full((3, 2), 3.0)), [*names, "sizes"]
                axes["sizes"] = {0: "classes"}
            _export(net.head, args, paths["head"], names, ["boxes", "scores", "masks"], axes)
    return paths


def parity(net: PromptDetectorNet, folder: Path, images: list[np.ndarray],
           n_classes: int = 3) -> dict[str, float]:
    """Max abs difference torch vs ONNX Runtime per output, on the given (S, S) uint8
    images (each a multiple of 16 per side)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = {g: ort.InferenceSession(str(folder / f"{g}.onnx"), opts,
                                    providers=["CPUExecutionProvider"]) for g in GRAPHS}
    worst: dict[str, float] = {}

    def note(name: str, a: torch.Tensor, b: np.ndarray) -> None:
        worst[name] = max(worst.get(name, 0.0), float(np.abs(a.numpy() - b).max()))

    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    net = net.eval()
    with torch.no_grad():
        for im in images:
            x = torch.from_numpy(im.astype(np.float32)[None, None] / 255.0)
            tok = net.encoder()(x)
            tok_o = sess["encoder"].run(None, {"image": x.numpy()})[0]
            note("tokens", tok, tok_o)
            h, w = tok.shape[2:]
            wts = torch.zeros(n_classes, h, w)
            for c in range(n_classes):
                wts[c, c * 2:c * 2 + 3, 4:8] = 1.0
            spec = torch.randn(n_classes, net.cfg.rings, generator=g)
            emb = net.prompt(tok.expand(n_classes, -1, -1, -1), wts, spec)
            emb_o = sess["prompt"].run(None, {
                "tokens": np.repeat(tok_o, n_classes, 0), "weights": wts.numpy(),
                "spectrum": spec.numpy()})[0]
            note("embedding", emb, emb_o)
            feed = {"tokens": tok.numpy(), "prototypes": emb.numpy()}
            if net.cfg.size_prior:
                feed["sizes"] = np.log(rng.uniform(4, 200, (n_classes, 2))).astype(np.float32)
            outs = net.head(*(torch.from_numpy(v) for v in feed.values()))
            outs_o = sess["head"].run(None, feed)
            for name, a, b in zip(("boxes", "scores", "masks"), outs, outs_o, strict=True):
                note(name, a, b)
    return worst


def write_files_manifest(folder: Path) -> None:
    """Add the sha256 of every graph to the model's manifest."""
    from inspector.inference.runtimes.base import write_pinned_manifest

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest["onnx"] = {"opset": OPSET, "graphs": list(GRAPHS)}
    write_pinned_manifest(folder, manifest)
