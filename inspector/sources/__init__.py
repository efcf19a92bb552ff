"""Frame sources, one module per kind; `build_source` maps a camera config to its class."""

from __future__ import annotations

from inspector.sources.base import EndOfStream, FrameSource, SourceError

__all__ = ["EndOfStream", "FrameSource", "SourceError", "build_source"]


def build_source(name: str, cfg) -> FrameSource:
    """Create the source object for one camera from its validated source config."""
    if cfg.kind == "synthetic":
        from inspector.sources.synthetic import SyntheticSource

        return SyntheticSource(name, cfg)
    if cfg.kind == "replay":
        from inspector.sources.replay import ReplaySource

        return ReplaySource(name, cfg)
    if cfg.kind == "genicam":
        from inspector.sources.genicam import GenicamSource

        return GenicamSource(name, cfg)
    raise ValueError(f"unknown source kind {cfg.kind!r}")
