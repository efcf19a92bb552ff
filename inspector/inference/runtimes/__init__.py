"""Inference backends for the exported ONNX graphs, behind one interface (`base.Backend`).

`onnxruntime` (CPU, the default and fully tested), `tensorrt` (NVIDIA: engines built from
the same ONNX files on the target and cached), `torch` (reference, needs the training
extra). `open_backend` picks one by name; "auto" prefers TensorRT when it is usable.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from inspector.inference.runtimes.base import Backend, BackendError

__all__ = ["RUNTIMES", "Backend", "BackendError", "open_backend"]


def _onnxruntime(model_dir: Path, state_dir: Path | None, threads: int) -> Backend:
    from inspector.inference.runtimes.onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(model_dir, threads=threads)


def _tensorrt(model_dir: Path, state_dir: Path | None, threads: int) -> Backend:
    from inspector.inference.runtimes.tensorrt import TensorRTBackend

    return TensorRTBackend(model_dir, state_dir or model_dir / "cache")


def _torch(model_dir: Path, state_dir: Path | None, threads: int) -> Backend:
    from inspector.inference.runtimes.torch_ref import TorchBackend

    return TorchBackend(model_dir)


# the one registry of inference runtimes: name -> opener (modules imported on use)
RUNTIMES: dict[str, Callable[[Path, Path | None, int], Backend]] = {
    "onnxruntime": _onnxruntime, "tensorrt": _tensorrt, "torch": _torch}


def open_backend(name: str, model_dir: Path, state_dir: Path | None = None,
                 threads: int = 1) -> Backend:
    """Open the graphs of `model_dir` with backend `name` ("auto" or a RUNTIMES key)."""
    if name == "auto":
        from inspector.inference.runtimes.tensorrt import tensorrt_usable

        name = "tensorrt" if tensorrt_usable() else "onnxruntime"
    if name not in RUNTIMES:
        raise BackendError(f"unknown backend {name!r} (auto, {', '.join(RUNTIMES)})")
    return RUNTIMES[name](model_dir, state_dir, threads)
