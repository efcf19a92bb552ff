"""JSONL sink: one result per line, appended, flushed per result, fsynced on close."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from inspector.core.result import Result
from inspector.outputs.sinks.base import ResultSink


class JsonlSink(ResultSink):
    """Appends every result as one JSON line to a file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def emit(self, result: Result) -> None:
        line = json.dumps(result.payload(), separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
