"""The one interface every frame source implements (synthetic, replay, genicam).

The pipeline owns the acquisition thread and calls `grab` in a loop; a source never
starts threads of its own for delivery. `grab` must return within `timeout` seconds so
the pipeline can notice shutdown and stalls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from inspector.core.errors import InspectorError
from inspector.core.frames import Frame, FramePool


class SourceError(InspectorError, RuntimeError):
    """The source failed (device lost, file unreadable); the message says which and why."""


class EndOfStream(Exception):
    """A finite source (replay without loop) has delivered its last frame."""


class FrameSource(ABC):
    """A camera or camera stand-in that delivers Frames into pool buffers."""

    kind: ClassVar[str]

    def __init__(self, name: str) -> None:
        self.name = name  # camera name used in topics and results
        self.pool: FramePool | None = None

    def open(self, pool: FramePool) -> None:
        """Acquire resources; frames are written into buffers from `pool`."""
        self.pool = pool

    @abstractmethod
    def grab(self, timeout: float) -> Frame | None:
        """Return the next frame, or None if none arrived within `timeout` seconds
        (or the pool had no free buffer). Raises EndOfStream or SourceError."""

    @property
    def paced_by_consumer(self) -> bool:
        """True for offline sources (replay, synthetic without a rate) that should wait for
        room in the pipeline rather than lose frames; live cameras return False."""
        return False

    def trigger(self) -> None:
        """Fire a software trigger; sources that free-run ignore it."""

    @property
    def triggered(self) -> bool:
        """True for sources that deliver only when triggered: an idle line then has no
        frames, and the supervisor must not call that a fault."""
        return False

    def apply_features(self, features: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a recipe's `camera_features` (GenICam nodes) and return what was written.
        Sources without a GenICam node map (synthetic, replay) have nothing to set."""
        return {}

    def close(self) -> None:
        """Release resources; must be safe to call twice."""

    def status(self) -> str:
        """`online`, `offline` or `disabled`, as published on camera/<cam>/status."""
        return "online"
