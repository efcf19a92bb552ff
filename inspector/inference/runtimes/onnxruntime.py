"""ONNX Runtime backend (CPU): the default on a line PC without an NVIDIA GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inspector.inference.runtimes.base import Backend, BackendError, graph_paths


class OnnxRuntimeBackend(Backend):
    """Runs the model folder's ONNX graphs with ONNX Runtime on the CPU."""

    name = "onnxruntime"

    def __init__(self, model_dir: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sessions = {}
        for g, path in graph_paths(model_dir).items():
            try:
                self.sessions[g] = ort.InferenceSession(str(path), opts,
                                                        providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - ORT raises several types for bad files
                raise BackendError(f"{path}: ONNX Runtime cannot load it: {exc}") from exc

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sess = self.sessions[graph]
        names = [o.name for o in sess.get_outputs()]
        feeds = {k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()}
        return dict(zip(names, sess.run(names, feeds), strict=True))
