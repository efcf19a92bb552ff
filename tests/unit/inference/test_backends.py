"""Inference backends: ONNX Runtime vs the torch reference, TensorRT engine-cache keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from inspector.inference.runtimes import BackendError, open_backend
from inspector.inference.runtimes.engine_cache import EngineCache, EngineKey
from tests.helpers.prompt_fixtures import tiny_model


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory)


KEY = EngineKey("NVIDIA RTX A2000", "8.6", "10.3.0", "ab" * 32, "fp16", "{}")


def test_engine_key_changes_with_every_component():
    digests = {KEY.digest()}
    for field, value in [("gpu_name", "Orin"), ("compute_capability", "8.7"),
                         ("tensorrt_version", "10.4.0"), ("onnx_sha256", "cd" * 32),
                         ("precision", "fp32"), ("profile", "[1]")]:
        digests.add(dataclasses.replace(KEY, **{field: value}).digest())
    assert len(digests) == 7
    assert KEY.digest() == EngineKey(*dataclasses.astuple(KEY)).digest()  # stable


def test_engine_cache_round_trip_and_stale_or_corrupt_files_are_misses(tmp_path: Path):
    cache = EngineCache(tmp_path)
    assert cache.load("head", KEY) is None
    payload = bytes(range(256)) * 10
    path = cache.store("head", KEY, payload)
    assert cache.load("head", KEY) == payload
    other = dataclasses.replace(KEY, tensorrt_version="11.0.0")
    assert cache.load("head", other) is None  # another TensorRT: a different file
    # a file under this key's name but written for another key is stale
    path.write_bytes(path.read_bytes().replace(b"10.3.0", b"10.3.9"))
    assert cache.load("head", KEY) is None
    cache.store("head", KEY, payload)
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF  # one flipped bit in the engine
    path.write_bytes(bytes(blob))
    assert cache.load("head", KEY) is None
    path.write_bytes(bytes(blob[:40]))  # truncated
    assert cache.load("head", KEY) is None
    path.write_bytes(b"garbage")
    assert cache.load("head", KEY) is None


def test_timing_cache_path_is_per_device(tmp_path: Path):
    cache = EngineCache(tmp_path)
    a = cache.timing_cache_path(KEY)
    assert a == cache.timing_cache_path(dataclasses.replace(KEY, onnx_sha256="00" * 32))
    assert a != cache.timing_cache_path(dataclasses.replace(KEY, gpu_name="Orin"))
    assert "/" not in a.name.replace(str(tmp_path), "")


def test_missing_model_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(BackendError, match="encoder.onnx"):
        open_backend("onnxruntime", tmp_path)
    with pytest.raises(BackendError, match="unknown backend"):
        open_backend("openvino", tmp_path)


def test_onnxruntime_matches_torch_reference(tiny_model_dir: Path):
    from tests.helpers.prompt_fixtures import SIZE

    ort_b = open_backend("onnxruntime", tiny_model_dir)
    ref = open_backend("torch", tiny_model_dir)
    img = np.random.default_rng(0).random((1, 1, SIZE, SIZE), dtype=np.float32)
    t_ort = ort_b.run("encoder", {"image": img})["tokens"]
    t_ref = ref.run("encoder", {"image": img})["tokens"]
    assert np.abs(t_ort - t_ref).max() < 1e-3
    protos = np.eye(2, t_ref.shape[1], dtype=np.float32)
    a = ort_b.run("head", {"tokens": t_ref, "prototypes": protos})
    b = ref.run("head", {"tokens": t_ref, "prototypes": protos})
    for k in ("boxes", "scores", "masks"):
        assert np.abs(a[k] - b[k]).max() < 1e-3, k


def _nvidia() -> bool:
    from inspector.inference.runtimes.tensorrt import tensorrt_usable

    return tensorrt_usable()


@pytest.mark.skipif(not _nvidia(), reason="needs NVIDIA hardware with tensorrt and pycuda")
def test_tensorrt_matches_onnxruntime_and_caches_the_engine(tiny_model_dir: Path, tmp_path):
    from tests.helpers.prompt_fixtures import SIZE

    trt_b = open_backend("tensorrt", tiny_model_dir, tmp_path)
    engines = sorted((tmp_path / "engines").glob("*.engine"))
    assert len(engines) == 3
    ort_b = open_backend("onnxruntime", tiny_model_dir)
    img = np.random.default_rng(0).random((1, 1, SIZE, SIZE), dtype=np.float32)
    a = trt_b.run("encoder", {"image": img})["tokens"]
    b = ort_b.run("encoder", {"image": img})["tokens"]
    assert np.abs(a - b).max() < 0.05 * (np.abs(b).max() + 1)  # FP16
    stamp = [p.stat().st_mtime_ns for p in engines]
    open_backend("tensorrt", tiny_model_dir, tmp_path)  # second open: cached, not rebuilt
    assert [p.stat().st_mtime_ns for p in engines] == stamp
