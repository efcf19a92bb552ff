"""The interface between the pipeline and everything that receives results."""

from __future__ import annotations

from abc import ABC, abstractmethod

from inspector.core.result import Result


class ResultSink(ABC):
    """Receives every finished Result (schema inspector.result/1), in order.

    `emit` is called from the pipeline's result thread and must not block on the
    network: a sink that talks to a broker commits to its durable outbox and returns.
    """

    @abstractmethod
    def emit(self, result: Result) -> None: ...

    def state_changed(self, state: dict) -> None:
        """The service's state (active recipe, mode) changed; sinks may publish it."""

    def camera_status(self, camera: str, status: str) -> None:
        """A camera went `online` / `offline` / `disabled`."""

    def ready_changed(self, state: dict) -> None:
        """The trigger handshake's state changed (READY/BUSY/ERROR, inspector.runtime.trigger)."""

    def close(self) -> None:
        """Flush and release; called once on shutdown, after the last emit."""
