"""On-disk cache of built TensorRT engines: keyed, checksummed, never trusted blindly.

An engine is only valid for the GPU, compute capability, TensorRT version, ONNX file and
precision it was built for. The key is the sha256 of exactly those (plus the shape
profile); the file stores the key and a sha256 of the engine bytes in a small header, so
a stale engine (other key) or a corrupt one (checksum mismatch, truncated) reads as a
miss and is rebuilt. Writes are atomic (temporary file + rename). No TensorRT import
here, so the logic is tested everywhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)
MAGIC = b"INSPTRT1"


@dataclass(frozen=True)
class EngineKey:
    """Everything a built engine is specific to; its digest names the cached file."""

    gpu_name: str
    compute_capability: str  # "8.7"
    tensorrt_version: str
    onnx_sha256: str
    precision: str  # "fp16" | "fp32"
    profile: str = ""  # the optimisation profile's shapes, as text

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def device_tag(self) -> str:
        """What a timing cache is specific to (GPU + TensorRT), as a file-name-safe tag."""
        raw = f"{self.gpu_name}-sm{self.compute_capability}-trt{self.tensorrt_version}"
        return "".join(c if c.isalnum() or c in "-._" else "_" for c in raw)


class EngineCache:
    """Built engines (and TensorRT timing caches) in one folder, checked on every load."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, graph: str, key: EngineKey) -> Path:
        return self.folder / f"{graph}-{key.digest()[:20]}.engine"

    def timing_cache_path(self, key: EngineKey) -> Path:
        return self.folder / f"timing-{key.device_tag()}.cache"

    def load(self, graph: str, key: EngineKey) -> bytes | None:
        """The engine bytes if a valid one for `key` is cached, else None (and why, logged)."""
        path = self.path(graph, key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        why = _check(blob, key)
        if why:
            log.warning("engine %s not used (%s); rebuilding", path, why)
            return None
        n = int.from_bytes(blob[len(MAGIC):len(MAGIC) + 4], "little")
        return blob[len(MAGIC) + 4 + n + 32:]

    def store(self, graph: str, key: EngineKey, engine: bytes) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(graph, key)
        head = json.dumps(asdict(key), sort_keys=True).encode()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(MAGIC + len(head).to_bytes(4, "little") + head
                        + hashlib.sha256(engine).digest() + engine)
        tmp.replace(path)
        return path


def _check(blob: bytes, key: EngineKey) -> str:
    """'' when `blob` is a complete engine file for `key`, else the reason it is not."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        return "not an engine cache file"
    n = int.from_bytes(blob[len(MAGIC):len(MAGIC) + 4], "little")
    start = len(MAGIC) + 4
    try:
        stored = json.loads(blob[start:start + n])
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "unreadable header"
    if stored != asdict(key):
        return "stale: built for another GPU, TensorRT, ONNX file or precision"
    digest, engine = blob[start + n:start + n + 32], blob[start + n + 32:]
    if len(digest) < 32 or hashlib.sha256(engine).digest() != digest:
        return "corrupt: checksum mismatch"
    return ""
