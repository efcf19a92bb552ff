"""sd_notify on a real unix datagram socket: the Notifier itself, then the real service
(`inspector run` in a subprocess with NOTIFY_SOCKET and WATCHDOG_USEC set as systemd
sets them): READY, STATUS, WATCHDOG pings, STOPPING, the pings stopping while the
camera's grab is stuck on a FIFO, `inspector status`, and SIGTERM under load losing
no result."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest

from inspector.acquisition.synthetic_parts import frame_rng, render_part
from inspector.runtime.notify import Notifier, watchdog_interval
from tests.helpers.files import REPO, write_config
from tests.helpers.notify_listener import Listener
from tests.helpers.standins import FAST_CAMERA, fast_recipe

CLI = [sys.executable, "-m", "inspector.cli.main"]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to 107 bytes: keep them short."""
    d = Path(tempfile.mkdtemp(prefix="ntf", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def fields(msg: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in msg.split("\n"))


def pings(msgs: list[tuple[float, str]], after: float = 0.0, before: float = 1e18) -> int:
    return sum(m == "WATCHDOG=1" and after <= t < before for t, m in msgs)


# -- the Notifier on its own ----------------------------------------------------------

def test_notifier_sends_to_path_and_abstract_sockets(short_dir: Path) -> None:
    for address in (str(short_dir / "n.sock"), f"@inspector-test-{os.getpid()}"):
        lst = Listener(address)
        try:
            n = Notifier(address)
            assert n.ready("recipe demo rev 1") and n.watchdog() and n.stopping()
            got = lst.wait_for(lambda m: m.startswith("STOPPING=1"), 5)
            assert got is not None
            msgs = [m for _, m in lst.all()]
            assert fields(msgs[0]) == {"READY": "1", "STATUS": "recipe demo rev 1",
                                       "MAINPID": str(os.getpid())}
            assert msgs[1] == "WATCHDOG=1"
            n.close()
        finally:
            lst.close()


def test_notifier_without_systemd_is_a_quiet_no_op(short_dir: Path) -> None:
    assert Notifier(None).watchdog() is False
    gone = Notifier(str(short_dir / "nobody-listens"))
    assert gone.watchdog() is False and gone.errors == 1  # counted, not raised


def test_watchdog_interval_follows_systemd_rules() -> None:
    pid = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": pid}) == 2.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert watchdog_interval({}) is None


# -- the real service -------------------------------------------------------------------

def start_service(cfg: Path, notify: str, watchdog_s: float = 1.0) -> subprocess.Popen:
    env = {**os.environ, "NOTIFY_SOCKET": notify, "WATCHDOG_USEC": str(int(watchdog_s * 1e6)),
           "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHDOG_PID", None)
    env.pop("JOURNAL_STREAM", None)
    return subprocess.Popen([*CLI, "run", "--config", str(cfg)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def timeout_stop_s() -> float:
    unit = (REPO / "systemd" / "inspector.service").read_text()
    return float(re.search(r"^TimeoutStopSec=(\d+)s$", unit, re.M).group(1))


def status(cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "status", "--config", str(cfg)], cwd=REPO,
                          capture_output=True, text=True, timeout=30)


def test_service_ready_status_watchdog_and_sigterm_under_load(short_dir: Path,
                                                              tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "station.yaml", fast_recipe(tmp_path / "recipes" / "test-part"),
        console=False, cameras=[{"name": "cam0", "source": {**FAST_CAMERA, "seed": 4,
                                                             "rate_hz": 400}}])
    lst = Listener(str(short_dir / "notify"))
    proc = start_service(cfg, lst.address, watchdog_s=1.0)
    try:
        ready = lst.wait_for(lambda m: m.startswith("READY=1"), 60)
        assert ready is not None, proc.stderr.read() if proc.poll() is not None else ""
        f = fields(ready[1])
        assert f["MAINPID"] == str(proc.pid)
        assert f["STATUS"].startswith("recipe test-part rev 3; cameras cam0=online;")
        time.sleep(3.0)
        assert pings(lst.all(), after=ready[0]) >= 4  # every WatchdogSec/2
        res = status(cfg)
        assert res.returncode == 0, res.stderr
        assert "| health" in res.stdout and "| OK |" in res.stdout
        assert "| camera cam0" in res.stdout and "online" in res.stdout
        assert "| disk" in res.stdout
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)  # 400 parts/s offered: frames are in every queue
        out, err = proc.communicate(timeout=30)
        # within the unit's TimeoutStopSec, after which systemd would SIGKILL it
        assert time.monotonic() - t_term < timeout_stop_s(), err
        assert proc.returncode == 0, err
        stopping = lst.wait_for(lambda m: m.startswith("STOPPING=1"), 5)
        assert stopping is not None and stopping[0] >= t_term
    finally:
        if proc.poll() is None:
            proc.kill()
        lst.close()
    assert not err.strip()  # logs go to stdout as key=value lines
    stopped = next(s for s in out.splitlines() if " msg=stopped " in s)
    c = {k: int(v) for k, v in (kv.split("=") for kv in stopped.split(" msg=stopped ")[1]
                                                          .split())}
    results = [json.loads(s) for s in (tmp_path / "state" / "results.jsonl").read_text()
               .splitlines()]
    assert len(results) == c["results"] > 0  # every inspected frame reached the sink
    assert c["frames_in"] == c["results"] + c["dropped_queue"] + c["dropped_shutdown"]
    assert [r["seq"] for r in results] == list(range(len(results)))
    for r in (r for r in results if r["verdict"] == "NG" and r["image_uri"]):
        assert Path(r["image_uri"].removeprefix("file://")).is_file()  # archive drained


def test_watchdog_stops_while_a_grab_is_stuck(short_dir: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    img, _ = render_part(frame_rng(0, 0), 64, 64, ["scratch"], 0.0, 1)
    cv2.imwrite(str(images / "a.png"), img)
    fifo = images / "b.png"
    os.mkfifo(fifo)  # the camera's second read blocks until someone writes: a hung driver
    cfg = write_config(
        tmp_path / "station.yaml", fast_recipe(tmp_path / "recipes" / "test-part"),
        console=False,
        cameras=[{"name": "cam0", "source": {"kind": "replay", "path": str(images),
                                               "loop": False}}],
        supervisor={"acq_stuck_s": 1.5})
    lst = Listener(str(short_dir / "notify"))
    proc = start_service(cfg, lst.address, watchdog_s=1.0)
    try:
        ready = lst.wait_for(lambda m: m.startswith("READY=1"), 60)
        assert ready is not None
        stuck = lst.wait_for(lambda m: m.startswith("STATUS=STUCK camera cam0: one grab"), 15)
        assert stuck is not None
        assert pings(lst.all(), before=stuck[0]) >= 1  # fed while it progressed
        res = status(cfg)
        assert res.returncode == 1 and "STUCK: camera cam0" in res.stdout
        time.sleep(2.0)
        t_unblock = time.monotonic()
        assert pings(lst.all(), after=stuck[0], before=t_unblock) == 0  # systemd would act
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # let the reader go (EOF)
        os.close(fd)
        out, err = proc.communicate(timeout=30)  # the replay ends: the service stops
        assert proc.returncode == 0, err
        assert lst.wait_for(lambda m: m.startswith("STOPPING=1"), 5) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
        lst.close()
    assert "supervisor: acquisition cam0 stuck" in out
    assert "thread acq-cam0 is at" in out and "imread" in out  # where it hung
    assert "progresses again" in out
