"""TensorRT backend (NVIDIA RTX / Jetson): engines built on the target from the ONNX files.

Each graph is built once per device with FP16 enabled and a shared timing cache, and the
serialized engine is cached under the state directory (`engine_cache.EngineCache`: keyed
by GPU name, compute capability, TensorRT version, ONNX sha256 and precision; a stale or
corrupt engine is rebuilt, never trusted). Inputs and outputs go through pycuda
page-locked host buffers and device buffers, grown when a larger shape arrives.
Written for the TensorRT 10/11 tensor API (set_input_shape / set_tensor_address /
execute_async_v3). Exercised only on NVIDIA hardware (tests skip elsewhere).
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import numpy as np

from inspector.core.hashing import file_sha256
from inspector.inference.runtimes.base import Backend, BackendError, graph_paths
from inspector.inference.runtimes.engine_cache import EngineCache, EngineKey

log = logging.getLogger(__name__)

# (min, opt, max) for the dynamic axes: tokens h, w; prompts P; classes C
TOKENS_HW = (8, 40, 128)
N_PROMPTS = (1, 4, 32)
N_CLASSES = (1, 5, 32)


@lru_cache(maxsize=1)
def tensorrt_usable() -> bool:
    """True when tensorrt and pycuda import and a CUDA device answers."""
    try:
        import pycuda.driver as cuda
        import tensorrt  # noqa: F401

        cuda.init()
        return cuda.Device.count() > 0
    except Exception:  # noqa: BLE001 - no GPU, no driver or no packages all mean "no"
        return False


def _profile(graph: str, dim: int, rings: int, sizes: bool = False
             ) -> dict[str, tuple[tuple[int, ...], ...]]:
    """Shapes (min, opt, max) per input of `graph`."""
    hw = [(t, t) for t in TOKENS_HW]
    if graph == "encoder":
        return {"image": tuple((1, 1, 8 * h, 8 * w) for h, w in hw)}
    if graph == "prompt":
        return {"tokens": tuple((p, dim, h, w) for p, (h, w) in zip(N_PROMPTS, hw, strict=True)),
                "weights": tuple((p, h, w) for p, (h, w) in zip(N_PROMPTS, hw, strict=True)),
                "spectrum": tuple((p, rings) for p in N_PROMPTS)}
    head = {"tokens": tuple((1, dim, h, w) for h, w in hw),
            "prototypes": tuple((c, dim) for c in N_CLASSES)}
    if sizes:  # a net with a size prior (NetConfig.size_prior)
        head["sizes"] = tuple((c, 2) for c in N_CLASSES)
    return head


class _Buffer:
    """A page-locked host array and a device allocation of at least `nbytes`."""

    def __init__(self, cuda) -> None:
        self.cuda, self.nbytes, self.host, self.dev = cuda, 0, None, None

    def ensure(self, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape)) * 4
        if n > self.nbytes:
            self.host = self.cuda.pagelocked_empty(max(n // 4, 1), np.float32)
            self.dev = self.cuda.mem_alloc(max(n, 4))
            self.nbytes = n
        return self.host[: int(np.prod(shape))].reshape(shape)


class TensorRTBackend(Backend):
    """Runs the graphs as TensorRT engines, built or loaded from the engine cache."""

    name = "tensorrt"

    def __init__(self, model_dir: Path, state_dir: Path, fp16: bool = True) -> None:
        if not tensorrt_usable():
            raise BackendError("TensorRT backend: tensorrt, pycuda or a CUDA GPU is missing")
        import json

        import pycuda.driver as cuda
        import tensorrt as trt

        self.cuda, self.trt = cuda, trt
        cuda.init()
        dev = cuda.Device(0)
        self.ctx = dev.retain_primary_context()
        self.ctx.push()
        self.stream = cuda.Stream()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        manifest = json.loads((Path(model_dir) / "manifest.json").read_text(encoding="utf-8"))
        dim, rings = manifest["net_config"]["dim"], manifest["net_config"]["rings"]
        cc = "{}.{}".format(*dev.compute_capability())
        self.cache = EngineCache(Path(state_dir) / "engines")
        self.engines, self.contexts, self.buffers = {}, {}, {}
        for graph, path in graph_paths(model_dir).items():
            prof = _profile(graph, dim, rings, manifest["net_config"].get("size_prior", False))
            key = EngineKey(dev.name(), cc, trt.__version__, file_sha256(path),
                            "fp16" if fp16 else "fp32", json.dumps(prof, sort_keys=True))
            blob = self.cache.load(graph, key)
            engine = self.runtime.deserialize_cuda_engine(blob) if blob else None
            if engine is None:
                blob = self._build(path, prof, key, fp16)
                engine = self.runtime.deserialize_cuda_engine(blob)
                if engine is None:
                    raise BackendError(f"{path}: TensorRT built an engine it cannot load")
                self.cache.store(graph, key, blob)
            self.engines[graph] = engine
            self.contexts[graph] = engine.create_execution_context()
            self.buffers[graph] = {}
        self.ctx.pop()

    def _build(self, path: Path, prof: dict, key: EngineKey, fp16: bool) -> bytes:
        trt = self.trt
        log.info("building TensorRT engine for %s (%s); this takes a while", path, key.precision)
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(path.read_bytes()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise BackendError(f"{path}: TensorRT cannot parse it: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
        if fp16 and hasattr(trt.BuilderFlag, "FP16"):
            config.set_flag(trt.BuilderFlag.FP16)
        tc_path = self.cache.timing_cache_path(key)
        tc = config.create_timing_cache(tc_path.read_bytes() if tc_path.is_file() else b"")
        if not config.set_timing_cache(tc, ignore_mismatch=False):
            tc = config.create_timing_cache(b"")  # a mismatched timing cache: start afresh
            config.set_timing_cache(tc, ignore_mismatch=False)
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in prof.items():
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(f"{path}: TensorRT engine build failed (see log)")
        tc_path.parent.mkdir(parents=True, exist_ok=True)
        tc_path.write_bytes(bytes(config.get_timing_cache().serialize()))
        return bytes(serialized)

    def run(self, graph: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda, trt = self.cuda, self.trt
        engine, ctx, bufs = self.engines[graph], self.contexts[graph], self.buffers[graph]
        self.ctx.push()
        try:
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            outs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
            for name, arr in inputs.items():
                arr = np.ascontiguousarray(arr, np.float32)
                ctx.set_input_shape(name, arr.shape)
                buf = bufs.setdefault(name, _Buffer(cuda))
                np.copyto(buf.ensure(arr.shape), arr)
                cuda.memcpy_htod_async(buf.dev, buf.host, self.stream)
                ctx.set_tensor_address(name, int(buf.dev))
            hosts = {}
            for name in outs:
                shape = tuple(ctx.get_tensor_shape(name))
                buf = bufs.setdefault(name, _Buffer(cuda))
                hosts[name] = buf.ensure(shape)
                ctx.set_tensor_address(name, int(buf.dev))
            if not ctx.execute_async_v3(self.stream.handle):
                raise BackendError(f"TensorRT: {graph} failed to run")
            for name in outs:
                cuda.memcpy_dtoh_async(bufs[name].host, bufs[name].dev, self.stream)
            self.stream.synchronize()
            return {name: hosts[name].copy() for name in outs}
        finally:
            self.ctx.pop()
