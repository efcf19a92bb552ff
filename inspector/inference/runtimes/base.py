"""The one interface every inference backend offers: run a named graph on named arrays.

A model folder holds `encoder.onnx`, `prompt.onnx`, `head.onnx` (see
`inspector.training.export` for their inputs and outputs) and `manifest.json`. A backend
runs them by name; callers (the prompt detector) never see which runtime is underneath.

Every graph is pinned: `manifest.json` lists its sha256 under `files`, and a folder is
used only when each graph matches (a truncated or swapped encoder.onnx is refused with
a message, not fed to a runtime). Hashes are remembered per (path, size, mtime).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from inspector.core.errors import InspectorError
from inspector.core.hashing import file_sha256

GRAPHS = ("encoder", "prompt", "head")
OUTPUTS = {"encoder": ("tokens",), "prompt": ("embedding",),
           "head": ("boxes", "scores", "masks")}


class BackendError(InspectorError, RuntimeError):
    """A model folder or runtime that cannot be used (the message says which and why)."""


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


def graph_paths(model_dir: Path) -> dict[str, Path]:
    """The three ONNX files of a model folder, each checked against the sha256 pinned in
    its manifest; BackendError naming a missing, unpinned or altered one."""
    paths = {g: Path(model_dir) / f"{g}.onnx" for g in GRAPHS}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise BackendError(f"model folder {model_dir}: missing {', '.join(missing)}")
    try:
        pins = json.loads((Path(model_dir) / "manifest.json").read_text(encoding="utf-8"))
        pins = pins.get("files") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise BackendError(f"model folder {model_dir}: no readable manifest.json with "
                           f"sha256 pins ({exc})") from None
    for p in paths.values():
        want = pins.get(p.name) if isinstance(pins, dict) else None
        if not isinstance(want, str):
            raise BackendError(f"model folder {model_dir}: {p.name} is not pinned in "
                               "manifest.json (files)")
        got = _sha256(p)
        if got != want:
            raise BackendError(f"model folder {model_dir}: {p.name} has sha256 {got[:12]}..., "
                               f"manifest.json pins {want[:12]}... (truncated or replaced)")
    return paths


def write_pinned_manifest(folder: Path, manifest: dict) -> None:
    """Write `folder`/manifest.json from `manifest` with `files` pinning the graphs and
    weights.pt that are in `folder` now (an export, or an adaptation of a base model)."""
    names = [f"{g}.onnx" for g in GRAPHS] + ["weights.pt"]
    manifest.setdefault("files", {}).update(
        {n: _sha256(folder / n) for n in names if (folder / n).is_file()})
    (Path(folder) / "manifest.json").write_text(json.dumps(manifest, indent=1),
                                                 encoding="utf-8")


def _sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = file_sha256(path)
    return _VERIFIED[key]




class Backend(ABC):
    """An inference runtime that runs the model folder's graphs by name."""

    name: str = ""

    @abstractmethod
    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run `graph` (encoder | prompt | head) on float32 inputs; outputs by name."""
