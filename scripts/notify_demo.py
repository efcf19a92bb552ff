"""Run `inspector run` under a real sd_notify socket and print what systemd would see.

    .venv/bin/python scripts/notify_demo.py --config station.example.yaml --seconds 8

Binds a unix datagram socket, starts the service with NOTIFY_SOCKET and WATCHDOG_USEC
set as systemd does for a Type=notify unit with WatchdogSec=, sends SIGTERM after
`--seconds`, and prints every datagram as a Markdown table (time since start, fields).
With `--stuck-fifo`, camera cam0 replays a folder whose second image is a FIFO that
nobody writes, so acquisition blocks and the watchdog pings stop.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import yaml

REPO = Path(__file__).resolve().parents[1]


def _stuck_config(folder: Path, recipe: Path, size: int) -> Path:
    """A station whose camera blocks on its second image (a FIFO without a writer)."""
    from inspector.acquisition.synthetic_parts import frame_rng, render_part

    images = folder / "images"
    images.mkdir()
    img, _ = render_part(frame_rng(0, 0), size, size, ["scratch"], 0.0, 1)
    cv2.imwrite(str(images / "a.png"), img)
    os.mkfifo(images / "b.png")
    cfg = {
        "station": {"site": "plant1", "line": "line3", "station": "st2"},
        "cameras": [{"name": "cam0", "source": {"kind": "replay", "path": str(images),
                                                 "loop": False}}],
        "recipe": str(recipe.resolve()),
        "storage": {"state_dir": str(folder / "state")},
        "console": False,
        "supervisor": {"acq_stuck_s": 2.0},
    }
    path = folder / "station.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, help="station config (default: station.example)")
    ap.add_argument("--seconds", type=float, default=8.0, help="SIGTERM after this long")
    ap.add_argument("--watchdog", type=float, default=2.0, help="WatchdogSec in seconds")
    ap.add_argument("--stuck-fifo", action="store_true", help="camera blocks on a FIFO")
    ap.add_argument("--recipe", type=Path, default=REPO / "recipes" / "demo",
                    help="recipe of the --stuck-fifo station (default: recipes/demo)")
    ap.add_argument("--size", type=int, default=512, help="--stuck-fifo image size (px)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="inotify-", dir="/tmp"))
    config = _stuck_config(tmp, args.recipe, args.size) if args.stuck_fifo else (
        args.config or REPO / "station.example.yaml")
    sock_path = tmp / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.1)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path),
           "WATCHDOG_USEC": str(int(args.watchdog * 1e6)), "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHDOG_PID", None)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "inspector.cli.main", "run", "--config",
                             str(config)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    rows: list[tuple[float, str]] = []
    termed = False
    while True:
        try:
            data = sock.recv(4096)
            rows.append((time.monotonic() - t0, data.decode().replace("\n", " | ")))
        except TimeoutError:
            pass
        if not termed and time.monotonic() - t0 > args.seconds:
            if args.stuck_fifo:  # let the blocked reader go, so that shutdown is clean
                try:
                    os.close(os.open(tmp / "images" / "b.png", os.O_WRONLY | os.O_NONBLOCK))
                except OSError:  # ENXIO: nobody reads it (yet)
                    pass
            proc.send_signal(signal.SIGTERM)
            termed = True
        if proc.poll() is not None:
            break
    while True:  # datagrams still queued
        try:
            data = sock.recv(4096)
            rows.append((time.monotonic() - t0, data.decode().replace("\n", " | ")))
        except (TimeoutError, BlockingIOError):
            break
    log = proc.stdout.read() if proc.stdout else ""
    sock.close()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"service exit code {proc.returncode}; {len(rows)} datagrams on {sock_path}\n")
    print("| t (s) | datagram |\n|------:|----------|")
    for t, text in rows:
        print(f"| {t:6.2f} | `{text}` |")
    print("\nservice log (supervisor and service lines):\n")
    for line in log.splitlines():
        if "logger=inspector.runtime.supervisor" in line or "logger=inspector.service" in line:
            print("    " + line[:400])
    return 0


if __name__ == "__main__":
    sys.exit(main())
