"""Inference backends for the exported ONNX graphs, behind one interface (`base.Backend`).

`onnxruntime` (CPU, the default and fully tested), `tensorrt` (NVIDIA: engines built from
the same ONNX files on the target and cached), `torch` (reference, needs the training
extra). `open_backend` picks one by name; "auto" prefers TensorRT when it is usable.
"""

from __future__ import annotations

from pathlib import Path

from inspector.backends.base import Backend, BackendError

__all__ = ["Backend", "BackendError", "open_backend"]


def open_backend(name: str, model_dir: Path, state_dir: Path | None = None,
                 threads: int = 1) -> Backend:
    """Open the graphs of `model_dir` with backend `name` (auto | onnxruntime | tensorrt |
    torch)."""
    if name == "auto":
        from inspector.backends.tensorrt import tensorrt_usable

        name = "tensorrt" if tensorrt_usable() else "onnxruntime"
    if name == "onnxruntime":
        from inspector.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_dir, threads=threads)
    if name == "tensorrt":
        from inspector.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(model_dir, state_dir or model_dir / "cache")
    if name == "torch":
        from inspector.backends.torch_ref import TorchBackend

        return TorchBackend(model_dir)
    raise BackendError(f"unknown backend {name!r} (auto, onnxruntime, tensorrt, torch)")
