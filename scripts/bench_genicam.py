"""Benchmark the GenICam source on the simulated producer viky.cti.

Measures, at the simulator's top rate (AcquisitionFrameRate 200):
- frames/s delivered and copy/convert cost per frame into the FramePool buffer;
- CPU% of the acquisition thread and of the process;
- how much a CPU-bound Python thread slows while acquisition runs, next to the same
  loop in a separate process (CPU contention only): the difference is the GIL's share;
- resident memory after --frames frames and after --reconnects loss/reconnect cycles.

Usage: .venv/bin/python scripts/bench_genicam.py [--format Mono8|RGBa8] [--size 800]
       [--seconds 5] [--frames 10000] [--reconnects 50 --loss stop|destroy|close]
       [--output mono|rgb]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import genicam

from inspector.acquisition.genicam import GenicamSource
from inspector.bench.measure import proc_status_mb
from inspector.config.sources import GenicamSourceConfig
from inspector.core.frames import FramePool


def rss_mib() -> float:
    """Resident set size of this process (Linux), as `inspector bench` reads it."""
    return proc_status_mb()[0]


def spin(seconds: float) -> float:
    """A CPU-bound pure-Python loop; returns iterations per second."""
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(1000):
            n += 1
    return n / seconds


LOSSES = {
    "stop": lambda ia: ia.remote_device.node_map.AcquisitionStop.execute(),  # camera stalls
    "destroy": lambda ia: ia.destroy(),  # acquirer destroyed from outside
    "close": lambda ia: ia.device.module.close(),  # device closed under the acquirer
}


class Acquisition(threading.Thread):
    """The pipeline's acquisition thread, reduced to grab + release."""

    def __init__(self, src: GenicamSource) -> None:
        super().__init__(daemon=True)
        self.src, self.stop, self.frames, self.acq_ms, self.cpu_s = (
            src,
            threading.Event(),
            0,
            [],
            0.0,
        )

    def run(self) -> None:
        t0 = time.thread_time()
        while not self.stop.is_set():
            f = self.src.grab(0.2)
            if f is not None:
                self.frames += 1
                self.acq_ms.append(f.meta["acq_ms"])
                f.done()
        self.cpu_s = time.thread_time() - t0


SPIN_CHILD = (
    "import time\ndef spin(s):\n    n, end = 0, time.perf_counter() + s\n"
    "    while time.perf_counter() < end:\n        for _ in range(1000):\n            n += 1\n"
    "    return n / s\nprint(spin({s}))"
)


def spin_elsewhere(seconds: float) -> float:
    """The same loop in a child process: slowed by CPU contention, never by our GIL."""
    child = subprocess.run(
        [sys.executable, "-c", SPIN_CHILD.format(s=seconds)], capture_output=True, text=True
    )
    return float(child.stdout)


def run_for(src: GenicamSource | None, seconds: float, spinner: str) -> dict:
    """Acquire for `seconds` while a spinner ("none", "thread", "process") runs."""
    acq = Acquisition(src) if src is not None else None
    wall0, cpu0 = time.perf_counter(), time.process_time()
    if acq:
        acq.start()
    rate = {"none": lambda s: time.sleep(s) or 0.0, "thread": spin, "process": spin_elsewhere}[
        spinner
    ](seconds)
    if acq is None:
        return {"spin_iter_per_s": round(rate)}
    acq.stop.set()
    acq.join()
    wall = time.perf_counter() - wall0
    ms = sorted(acq.acq_ms) or [0.0]
    return {
        "fps": round(acq.frames / wall, 1),
        "copy_ms_mean": round(statistics.fmean(ms), 3),
        "copy_ms_p99": round(ms[int(0.99 * (len(ms) - 1))], 3),
        "acq_thread_cpu_pct": round(100 * acq.cpu_s / wall, 1),
        "process_cpu_pct": round(100 * (time.process_time() - cpu0) / wall, 1),
        "spin_iter_per_s": round(rate),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cti", default=str(Path(genicam.__file__).parent / "viky.cti"))
    ap.add_argument("--format", default="Mono8", choices=["Mono8", "RGBa8"])
    ap.add_argument("--output", default="mono", choices=["mono", "rgb"])
    ap.add_argument("--size", type=int, default=800, help="Width = Height (viky: 100..800)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--frames", type=int, default=0, help="frames for the memory check")
    ap.add_argument("--reconnects", type=int, default=0, help="loss/reconnect cycles")
    ap.add_argument("--loss", default="stop", choices=list(LOSSES), help="how a loss is made")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    features = {"PixelFormat": args.format, "Width": args.size, "Height": args.size,
                "AcquisitionFrameRate": 200.0}  # fmt: skip
    cfg = GenicamSourceConfig(kind="genicam", cti=args.cti, serial_number="0", features=features,
                              output=args.output, reconnect_backoff_s=(0.01, 0.1))  # fmt: skip
    src = GenicamSource("bench", cfg)
    src.open(FramePool(8))
    out: dict = {"format": args.format, "output": args.output, "size": args.size, "loss": args.loss}
    try:
        base_t = run_for(None, args.seconds, "thread")["spin_iter_per_s"]
        base_p = run_for(None, args.seconds, "process")["spin_iter_per_s"]
        out["acquire"] = run_for(src, args.seconds, "none")
        out["acquire_with_spin_thread"] = run_for(src, args.seconds, "thread")
        out["acquire_with_spin_process"] = run_for(src, args.seconds, "process")
        t = out["acquire_with_spin_thread"]["spin_iter_per_s"] / base_t
        p = out["acquire_with_spin_process"]["spin_iter_per_s"] / base_p
        out["spin_slowdown_pct"] = {"thread": round(100 * (1 - t), 1),
                                    "process": round(100 * (1 - p), 1)}  # fmt: skip
        out["rss_mib_start"] = round(rss_mib(), 1)
        if args.frames:
            n = 0
            while n < args.frames:
                f = src.grab(0.5)
                if f is not None:
                    n += 1
                    f.done()
            out[f"rss_mib_after_{n}_frames"] = round(rss_mib(), 1)
        for i in range(args.reconnects):
            LOSSES[args.loss](src._ia)
            t0 = time.perf_counter()
            while src.counters["reconnects"] <= i:
                f = src.grab(0.05)
                if f is not None:
                    f.done()
            out.setdefault("reconnect_s", []).append(time.perf_counter() - t0)
            if (i + 1) % 10 == 0:
                out.setdefault("rss_mib_every_10_reconnects", []).append(round(rss_mib(), 1))
        if args.reconnects:
            rs = out.pop("reconnect_s")
            out[f"rss_mib_after_{args.reconnects}_reconnects"] = round(rss_mib(), 1)
            out["reconnect_s_median"] = round(statistics.median(rs), 3)
            out["acquirers_alive"] = len(src._hub.harvester.image_acquirers)
        out["counters"] = src.counters
    finally:
        src.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
