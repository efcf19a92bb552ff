"""A publishing station in its own process, for the kill -9 test (not a test module).

    python -m tests.helpers.mqtt_proc PORT OUTBOX SESSION COUNT   (from the checkout)

Emits COUNT results as fast as the outbox commits them, printing `committed <event_id>`
after each `emit` returned (so the parent knows what is durable), then waits until the
outbox is empty, prints `drained`, closes the sink cleanly and prints `closed`.
"""

from __future__ import annotations

import sys
import time

from inspector.config.mqtt import MqttConfig  # noqa: E402
from inspector.outputs.mqtt.sink import MqttSink  # noqa: E402
from tests.helpers.mqtt_fixtures import LINE, SITE, STATION, make_result  # noqa: E402


def main() -> int:
    port, outbox, session, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
    cfg = MqttConfig.model_validate({
        "host": "127.0.0.1", "port": port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
        "outbox": {"path": outbox}})
    sink = MqttSink(cfg, SITE, LINE, STATION, session)
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
