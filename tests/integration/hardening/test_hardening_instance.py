"""Issue 16, deliverable 5: one instance per state dir. A second `inspector run` with the
same config stops with a clear message and touches nothing of the first (control socket,
MQTT client id, outbox); a lock left by kill -9 never blocks a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from inspector.runtime.control import call
from inspector.runtime.instance_lock import AlreadyRunning, InstanceLock
from inspector.runtime.service import control_path
from tests.helpers.files import REPO
from tests.helpers.hardening import Running, cli, station_config
from tests.helpers.mosquitto import Broker
from tests.helpers.mqtt_fixtures import Collector, needs_mosquitto, wait_until

pytestmark = pytest.mark.timeout(90)


@needs_mosquitto
def test_second_instance_with_the_same_state_dir_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    state = Path(tempfile.mkdtemp(prefix="st", dir="/tmp"))
    with Broker(tmp_path / "broker") as broker:
        sub = Collector(broker)
        cfg = station_config(tmp_path, broker.port, state)
        first = Running(cfg)
        try:
            assert wait_until(lambda: len(sub.results()) >= 3, 60)
            assert cli("run", "--config", str(cfg)) == 2
            err = capsys.readouterr().err
            assert f"pid {os.getpid()}" in err and "in use by another inspector" in err
            assert (state / "control.sock").exists()  # the first one's socket is left alone
            answer = call(control_path(first.svc.cfg), {"cmd": "status"}, timeout=5)
            assert answer["ok"] and answer["stats"]["outbox"]["depth"] >= 0
            n = len(sub.results())
            assert wait_until(lambda: len(sub.results()) > n + 3, 30)  # still publishing
        finally:
            first.stop()
        assert wait_until(lambda: set(first.made) <= sub.event_ids(), 20)
        print("NOW second inspector run: exit 2, 'state dir ... is in use by another "
              "inspector (pid ...)'; the first keeps its socket and publishes everything")
        sub.stop()


def test_lock_of_a_killed_process_does_not_block(tmp_path: Path) -> None:
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]);"
            "from inspector.runtime.instance_lock import InstanceLock;"
            "InstanceLock(sys.argv[2]).acquire(); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(REPO), str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(AlreadyRunning, match=f"pid {proc.pid}"):
            InstanceLock(tmp_path).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    InstanceLock(tmp_path).acquire().release()
