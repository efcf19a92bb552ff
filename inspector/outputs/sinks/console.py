"""Console sink: one short line per part, for people watching a terminal or journalctl."""

from __future__ import annotations

import sys
from typing import TextIO

from inspector.core.result import Result
from inspector.outputs.sinks.base import ResultSink


def summary_line(result: Result) -> str:
    """One line per part: camera, seq, part, verdict, code, latency and the counted defects."""
    defects = [d for d in result.defects if d.accepted]
    what = ", ".join(f"{d.cls} {d.score:.2f}" for d in defects[:4])
    more = f" +{len(defects) - 4}" if len(defects) > 4 else ""
    return (
        f"{result.camera} #{result.seq:<6} {result.part_id:<18} {result.verdict}"
        f" code={result.code!s:<5} {result.latency_ms.total:7.1f} ms"
        + (f"  [{what}{more}]" if defects else "")
    )


class ConsoleSink(ResultSink):
    """Prints summary_line for every result (stdout by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def emit(self, result: Result) -> None:
        print(summary_line(result), file=self.stream, flush=True)
