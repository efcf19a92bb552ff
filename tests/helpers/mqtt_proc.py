"""A publishing station in its own process, for the kill -9 test (not a test module).

    python -m tests.helpers.mqtt_proc PORT OUTBOX SESSION COUNT [MODE]   (from the checkout)

Emits COUNT results as fast as the outbox commits them, printing `committed <event_id>`
after each `emit` returned (so the parent knows what is durable), then waits until the
outbox is empty, prints `drained`, closes the sink cleanly and prints `closed`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from inspector.config.mqtt import MqttConfig  # noqa: E402
from inspector.outputs.mqtt.sink import MqttSink  # noqa: E402
from tests.helpers.mqtt_fixtures import LINE, SITE, STATION, make_result  # noqa: E402


def spawn(port: int, outbox: Path, session: str, count: int,
          mode: str = "v1") -> subprocess.Popen:
    """This module as a child process (stdout: the committed event ids)."""
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.mqtt_proc", str(port), str(outbox), session,
         str(count), mode],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_after(proc: subprocess.Popen, committed: int) -> list[str]:
    """SIGKILL the child once it has committed `committed` results; every event id it
    reported committed, including those printed before it died."""
    ids: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("committed "):
                ids.append(line.split()[1])
            if len(ids) >= committed:
                break
        assert len(ids) >= committed, proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        ids += [ln.split()[1] for ln in proc.stdout if ln.startswith("committed ")]
    finally:
        if proc.poll() is None:
            proc.kill()
    return ids


def main() -> int:
    port, outbox, session, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    mode = sys.argv[5] if len(sys.argv) > 5 else "v1"  # sparkplug: state beside the outbox
    cfg = MqttConfig.model_validate({
        "host": "127.0.0.1", "port": port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
        "outbox": {"path": outbox}, "mode": mode})
    sink = MqttSink(cfg, SITE, LINE, STATION, session, state_dir=Path(outbox).parent)
    for seq in range(count):
        result = make_result(session, seq)
        sink.emit(result)
        print("committed", result.event_id, flush=True)
    end = time.monotonic() + 30
    while sink.outbox.depth() and time.monotonic() < end:
        time.sleep(0.02)
    print("drained" if sink.outbox.depth() == 0 else "not drained", flush=True)
    sink.close()
    print("closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
