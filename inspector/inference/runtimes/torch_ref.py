"""torch reference backend: runs the trained net itself (needs the `train` extra).

For checking exports and backends against the source of truth, not for the line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inspector.inference.runtimes.base import Backend


class TorchBackend(Backend):
    """Runs the trained torch net in place of the exported graphs, as a reference."""

    name = "torch"

    def __init__(self, model_dir: Path) -> None:
        import torch

        from inspector.training.train import load_net

        self.torch = torch
        self.net = load_net(Path(model_dir))
        self.encoder = self.net.encoder()

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        t = {k: self.torch.from_numpy(np.ascontiguousarray(v, np.float32))
             for k, v in inputs.items()}
        with self.torch.no_grad():
            if graph == "encoder":
                return {"tokens": self.encoder(t["image"]).numpy()}
            if graph == "prompt":
                e = self.net.prompt(t["tokens"], t["weights"], t["spectrum"])
                return {"embedding": e.numpy()}
            boxes, scores, masks = self.net.head(t["tokens"], t["prototypes"], t.get("sizes"))
            return {"boxes": boxes.numpy(), "scores": scores.numpy(), "masks": masks.numpy()}
