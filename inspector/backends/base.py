"""The one interface every inference backend offers: run a named graph on named arrays.

A model folder holds `encoder.onnx`, `prompt.onnx`, `head.onnx` (see
`inspector.model.export` for their inputs and outputs) and `manifest.json`. A backend
runs them by name; callers (the prompt detector) never see which runtime is underneath.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

GRAPHS = ("encoder", "prompt", "head")
OUTPUTS = {"encoder": ("tokens",), "prompt": ("embedding",),
           "head": ("boxes", "scores", "masks")}


class BackendError(RuntimeError):
    """A model folder or runtime that cannot be used (the message says which and why)."""


def graph_paths(model_dir: Path) -> dict[str, Path]:
    """The three ONNX files of a model folder; BackendError naming a missing one."""
    paths = {g: Path(model_dir) / f"{g}.onnx" for g in GRAPHS}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise BackendError(f"model folder {model_dir}: missing {', '.join(missing)}")
    return paths




class Backend(ABC):
    name: str = ""

    @abstractmethod
    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `graph` (encoder | prompt | head) on float32 inputs; outputs by name."""
