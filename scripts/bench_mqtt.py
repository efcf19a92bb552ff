#!/usr/bin/env python3
"""Benchmark the MQTT path: what the durable outbox costs (not a test).

Starts a local mosquitto, then for each mode builds an MqttSink and measures
  * sustained results/s: `count` results emitted back to back, divided by the time
    until the last `result` PUBACK;
  * latency result-ready -> PUBACK (p50/p99) for `plc` and `result`, with results
    paced at `rate`/s so that queueing does not dominate.
Modes: the SQLite outbox (synchronous FULL, the default; and NORMAL), and "off": the
same publisher fed from memory, i.e. QoS 1 straight to the broker without SQLite.
Prints a Markdown table with the on/off ratio.

    .venv/bin/python scripts/bench_mqtt.py [--count 5000] [--paced 1000] [--rate 200]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]  # the broker helper of the tests: tests.helpers.mosquitto

from inspector.config.mqtt import MqttConfig  # noqa: E402
from inspector.outputs.mqtt.outbox import MemoryOutbox  # noqa: E402
from inspector.outputs.mqtt.sink import MqttSink  # noqa: E402
from tests.helpers.mosquitto import Broker  # noqa: E402
from tests.helpers.mqtt_fixtures import LINE, SITE, STATION, make_result  # noqa: E402


class Acks:
    """PUBACK times per (kind, event_id), filled by the publisher's ack listener."""

    def __init__(self) -> None:
        self.t: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        self.results = 0

    def __call__(self, kind: str, event_id: str, t: float) -> None:
        with self.lock:
            self.t.setdefault((kind, event_id), t)
            self.results += kind == "result"


def wait(pred, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise TimeoutError("benchmark stalled")
        time.sleep(0.005)


def fsync_ms(folder: Path, n: int = 200) -> tuple[float, float]:
    """p50/p99 of a bare 1.5 kB write + fsync here: the floor under synchronous=FULL."""
    import os

    path = folder / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    lat = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 1500)
            t = time.perf_counter()
            os.fsync(fd)
            lat.append((time.perf_counter() - t) * 1e3)
    finally:
        os.close(fd)
        path.unlink()
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def run_mode(broker: Broker, folder: Path, mode: str, count: int, paced: int,
             rate: float) -> dict:
    sync = "NORMAL" if mode == "on-normal" else "FULL"
    cfg = MqttConfig.model_validate({
        "host": "127.0.0.1", "port": broker.port, "drain_timeout_s": 30,
        "outbox": {"path": str(folder / f"{mode}.sqlite"), "synchronous": sync}})
    acks = Acks()
    outbox = MemoryOutbox() if mode == "off" else None
    sink = MqttSink(cfg, SITE, LINE, STATION, f"bench-{mode}", outbox=outbox,
                    ack_listener=acks)
    try:
        wait(lambda: sink.connected, 10)
        batch = [make_result(f"bench-{mode}", i) for i in range(count)]
        t0 = time.monotonic()
        for r in batch:
            sink.emit(r)
        t_emitted = time.monotonic()
        wait(lambda: acks.results >= count, 300)
        t_last = max(acks.t[("result", r.event_id)] for r in batch)
        throughput = count / (t_last - t0)
        commit_rate = count / (t_emitted - t0)

        paced_batch = [make_result(f"bench-{mode}", count + i) for i in range(paced)]
        ready: dict[str, float] = {}
        start = time.monotonic()
        for i, r in enumerate(paced_batch):
            due = start + i / rate
            while (now := time.monotonic()) < due:
                time.sleep(min(due - now, 0.002))
            ready[r.event_id] = time.monotonic()  # result ready, handed to the sink
            sink.emit(r)
        wait(lambda: acks.results >= count + paced, 120)
        lat = {kind: np.array([(acks.t[(kind, e)] - t) * 1e3 for e, t in ready.items()])
               for kind in ("plc", "result")}
    finally:
        sink.close()
    return {"mode": mode, "throughput": throughput, "commit_rate": commit_rate,
            **{f"{k}_p{q}": float(np.percentile(v, q)) for k, v in lat.items() for q in (50, 99)}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=5000, help="results for the throughput run")
    ap.add_argument("--paced", type=int, default=1000, help="results for the latency run")
    ap.add_argument("--rate", type=float, default=200.0, help="paced results per second")
    ap.add_argument("--broker-nagle", action="store_true",
                    help="leave mosquitto's set_tcp_nodelay at its default (false)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, Broker(
            Path(tmp) / "broker", tcp_nodelay=not args.broker_nagle) as broker:
        fs_before = fsync_ms(Path(tmp))
        rows = [run_mode(broker, Path(tmp), m, args.count, args.paced, args.rate)
                for m in ("on", "on-normal", "off")]
        fs_after = fsync_ms(Path(tmp))
    names = {"on": "on: SQLite WAL, synchronous=FULL (default)",
             "on-normal": "on: SQLite WAL, synchronous=NORMAL",
             "off": "off: QoS 1 direct, no SQLite"}
    cols = ["throughput", "commit_rate", "plc_p50", "plc_p99", "result_p50", "result_p99"]
    nagle = "default (Nagle on)" if args.broker_nagle else "true"
    print(f"\nmosquitto on 127.0.0.1, set_tcp_nodelay {nagle}; throughput: {args.count} "
          f"results back to back; latency: {args.paced} results paced at {args.rate:g}/s, "
          "result-ready -> PUBACK")
    print(f"bare fsync on the outbox's filesystem: p50 {fs_before[0]:.2f} / p99 "
          f"{fs_before[1]:.2f} ms before, p50 {fs_after[0]:.2f} / p99 {fs_after[1]:.2f} ms "
          "after\n")
    print("| outbox | results/s (to PUBACK) | emit() commits/s | plc p50 ms | plc p99 ms "
          "| result p50 ms | result p99 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {names[r['mode']]} | {r['throughput']:.0f} | {r['commit_rate']:.0f} | "
              + " | ".join(f"{r[c]:.2f}" for c in cols[2:]) + " |")
    on, off = rows[0], rows[-1]
    print("| ratio on(FULL)/off | " + " | ".join(
        f"{on[c] / off[c]:.2f}x" for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
