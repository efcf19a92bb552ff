"""Frame sources, one module per kind; `build_source` maps a camera config to its class.

SOURCE_KINDS is the one registry of source kinds: `kind` -> (module, class). Each kind's
typed config is in inspector.config.sources (the station config is validated below every
stage, so it cannot import them); a test checks that both name the same kinds.
"""

from __future__ import annotations

import importlib

from inspector.acquisition.base import EndOfStream, FrameSource, SourceError

__all__ = ["SOURCE_KINDS", "EndOfStream", "FrameSource", "SourceError", "build_source"]

SOURCE_KINDS: dict[str, tuple[str, str]] = {
    "synthetic": ("inspector.acquisition.synthetic", "SyntheticSource"),
    "replay": ("inspector.acquisition.replay", "ReplaySource"),
    "genicam": ("inspector.acquisition.genicam", "GenicamSource"),
}


def build_source(name: str, cfg) -> FrameSource:
    """Create the source object for one camera from its validated source config."""
    if cfg.kind not in SOURCE_KINDS:
        raise ValueError(f"unknown source kind {cfg.kind!r} (one of: {', '.join(SOURCE_KINDS)})")
    module, cls = SOURCE_KINDS[cfg.kind]
    return getattr(importlib.import_module(module), cls)(name, cfg)
