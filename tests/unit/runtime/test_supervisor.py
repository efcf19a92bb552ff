"""Supervisor: watchdog pings only while stages progress, cameras and the MQTT publisher
restarted in the process first, every event counted; sd_notify datagrams received on a
real unix socket. The pipeline and the supervisor are real; source and detector are
stand-ins (tests/helpers/standins.py) or the real replay source on a folder the test changes.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.acquisition.replay import ReplaySource
from inspector.config.sections import SupervisorConfig
from inspector.config.sources import ReplaySourceConfig
from inspector.core.frames import FramePool
from inspector.core.result import Result
from inspector.decision.results import ResultBuilder
from inspector.recipes.recipe import load_recipe
from inspector.runtime.notify import Notifier
from inspector.runtime.pipeline import ActiveRecipe, Pipeline
from inspector.runtime.supervisor import Supervisor
from tests.helpers.standins import ListSink, ScratchDetector, TickSource

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A bound unix datagram socket, as systemd provides (short path: sun_path limit)."""
    folder = Path(tempfile.mkdtemp(prefix="nfy", dir="/tmp"))
    path = folder / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield sock, str(path)
    sock.close()
    shutil.rmtree(folder, ignore_errors=True)


def drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def run_ticks(sup: Supervisor, seconds: float, sock: socket.socket | None = None
              ) -> list[str]:
    """Tick like Service.run_until_stopped (every 0.05 s here); the datagrams sent."""
    got: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sup.tick()
        if sock is not None:
            got += drain(sock)
        time.sleep(0.05)
    return got


def pings(msgs: list[str]) -> int:
    return sum(m == "WATCHDOG=1" for m in msgs)


def make_pipeline(recipe_dir: Path, src, detector=None) -> tuple[Pipeline, ListSink]:
    sink = ListSink()
    src.open(FramePool(40))
    p = Pipeline([src], ActiveRecipe(load_recipe(recipe_dir), detector or ScratchDetector()),
                 [sink], ResultBuilder("test"), frame_queue=4, result_queue=8)
    return p, sink


def test_stuck_inference_stops_the_watchdog_until_it_progresses(
        recipe_dir: Path, notify_socket, caplog: pytest.LogCaptureFixture) -> None:
    sock, path = notify_socket
    detector = ScratchDetector()
    p, sink = make_pipeline(recipe_dir, TickSource("cam0", None, period=0.02), detector)
    sup = Supervisor(SupervisorConfig(infer_stuck_s=0.5), p, Notifier(path), interval_s=0.2)
    p.start()
    try:
        healthy = run_ticks(sup, 0.8, sock)
        assert pings(healthy) >= 3 and sup.healthy
        detector.gate.clear()  # the next frame hangs inside detect()
        with caplog.at_level(logging.ERROR, logger="inspector.runtime.supervisor"):
            settling = run_ticks(sup, 0.9, sock)  # limit 0.5 s + one ping period
            stuck = run_ticks(sup, 1.2, sock)
        assert pings(stuck) == 0
        assert list(sup.problems) == ["inference"]
        assert any(m.startswith("STATUS=STUCK") and "inference" in m
                   for m in settling + stuck), settling + stuck
        assert sup.problems["inference"].startswith("one frame in inference for")
        assert "inference stuck" in caplog.text and "thread infer is at" in caplog.text
        assert "detect" in caplog.text  # the stack shows where it waits
        done = len(sink.results)
        detector.gate.set()
        recovered = run_ticks(sup, 0.8, sock)
        assert pings(recovered) >= 2 and sup.healthy
        assert len(sink.results) > done
        assert p.stats.get("stuck.inference") == 1
        assert p.stats.get("watchdog_withheld") == 1
    finally:
        detector.gate.set()
        p.stop(2.0)


def test_blocked_sink_is_a_stuck_result_stage(recipe_dir: Path, notify_socket) -> None:
    sock, path = notify_socket

    class BlockingSink(ListSink):  # a sink that hangs (a full disk under a JSONL file)
        def __init__(self) -> None:
            super().__init__()
            self.gate = threading.Event()
            self.gate.set()

        def emit(self, result: Result) -> None:
            self.gate.wait()
            super().emit(result)

    src = TickSource("cam0", None, period=0.01)
    src.open(FramePool(40))
    sink = BlockingSink()
    p = Pipeline([src], ActiveRecipe(load_recipe(recipe_dir), ScratchDetector()), [sink],
                 ResultBuilder("test"), frame_queue=4, result_queue=2)
    sup = Supervisor(SupervisorConfig(emit_stuck_s=0.5, infer_stuck_s=0.5), p,
                     Notifier(path), interval_s=0.2)
    p.start()
    try:
        assert pings(run_ticks(sup, 0.6, sock)) >= 2
        sink.gate.clear()
        run_ticks(sup, 1.5, sock)
        assert sup.problems["results"].startswith("one result in the sinks for")
        # the result queue (2) filled up: inference cannot hand results on either
        assert sup.problems["inference"].startswith("frames arrive but none was taken")
        assert pings(run_ticks(sup, 0.6, sock)) == 0
        sink.gate.set()
        assert pings(run_ticks(sup, 0.8, sock)) >= 2 and sup.healthy
        assert p.stats.get("stuck.results") == 1 and p.stats.get("stuck.inference") == 1
    finally:
        sink.gate.set()
        p.stop(2.0)


def _images(folder: Path, names: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    for i, n in enumerate(names):
        cv2.imwrite(str(folder / n), np.full((64, 64), 80 + i, np.uint8))


def test_failed_camera_is_restarted_in_process_and_recovers(recipe_dir: Path,
                                                            tmp_path: Path) -> None:
    images = tmp_path / "images"
    _images(images, ["a.png", "b.png"])
    src = ReplaySource("cam0", ReplaySourceConfig(kind="replay", path=images, rate_hz=20))
    p, sink = make_pipeline(recipe_dir, src)
    sup = Supervisor(SupervisorConfig(frame_timeout_s=0.4, camera_restarts=3), p,
                     interval_s=None)
    p.start()
    try:
        run_ticks(sup, 0.5)
        assert p.stats.get("frames_in") >= 5
        # the files are replaced under new names: only a reopen (new listing) finds them
        for f in images.iterdir():
            f.unlink()
        _images(images, ["c.png", "d.png"])
        t_swap = time.monotonic()
        end = time.monotonic() + 8
        while time.monotonic() < end and not p.stats.get("camera_recovered.cam0"):
            sup.tick()
            time.sleep(0.05)
        assert p.stats.get("camera_restarts.cam0") >= 1
        assert p.stats.get("camera_recovered.cam0") == 1
        assert p.stats.get("source_errors.cam0") >= 1
        assert p.last_frame["cam0"] > t_swap and sup.healthy
        assert any(r["part_id"] in ("c", "d") for r in sink.results)
    finally:
        p.stop(2.0)


def test_camera_that_restarts_cannot_heal_stops_the_watchdog(recipe_dir: Path,
                                                             tmp_path: Path,
                                                             notify_socket) -> None:
    sock, path = notify_socket
    images = tmp_path / "images"
    _images(images, ["a.png"])
    src = ReplaySource("cam0", ReplaySourceConfig(kind="replay", path=images, rate_hz=20))
    p, _ = make_pipeline(recipe_dir, src)
    sup = Supervisor(SupervisorConfig(frame_timeout_s=0.3, camera_restarts=2), p,
                     Notifier(path), interval_s=0.2)
    p.start()
    try:
        assert pings(run_ticks(sup, 0.5, sock)) >= 2
        shutil.rmtree(images)  # the camera is gone for good
        got = run_ticks(sup, 2.0, sock)
        assert p.stats.get("camera_restarts.cam0") == 2
        assert p.stats.get("camera_restart_failures.cam0") == 2  # open() finds no images
        assert list(sup.problems) == ["camera cam0"]
        assert "after 2 restart(s)" in sup.problems["camera cam0"]
        late = run_ticks(sup, 0.6, sock)
        assert pings(late) == 0 and p.stats.get("stuck.camera") == 1
        assert any(m.startswith("STATUS=STUCK camera cam0") for m in got + late)
    finally:
        p.stop(2.0)


def test_ended_camera_is_not_a_stall(recipe_dir: Path, notify_socket) -> None:
    sock, path = notify_socket
    p, sink = make_pipeline(recipe_dir, TickSource("cam0", 3, period=0.01))
    sup = Supervisor(SupervisorConfig(frame_timeout_s=0.2, acq_stuck_s=0.2), p,
                     Notifier(path), interval_s=0.2)
    p.start()
    assert p.wait(5)
    msgs = run_ticks(sup, 0.6, sock)
    assert sup.healthy and pings(msgs) >= 2 and len(sink.results) == 3
    p.stop(1.0)


def test_dead_mqtt_publisher_is_replaced_on_the_same_outbox(recipe_dir: Path,
                                                            tmp_path: Path) -> None:
    from inspector.outputs.mqtt.sink import MqttSink
    from tests.helpers.mosquitto import Broker, mosquitto_binary
    from tests.helpers.mqtt_fixtures import TOPICS, Collector, config, make_result, wait_until

    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with Broker(tmp_path / "broker") as broker:
        collector = Collector(broker)
        sink = MqttSink(config(broker, tmp_path), "plant1", "line3", "st2", "sess",
                        state_dir=tmp_path)
        p, _ = make_pipeline(recipe_dir, TickSource("cam0", 1))
        sup = Supervisor(SupervisorConfig(publisher_restarts=1), p, mqtt=sink,
                         interval_s=None)
        p.start()
        try:
            sink.state_changed({"recipe": {"id": "test-part", "rev": 3, "sha256": "ab" * 32},
                                "mode": "inspecting", "since": time.time()})
            assert wait_until(lambda: sink.connected, 10)
            old = sink.publisher
            old.stop(10)  # the thread ends as if it had died
            assert not old.is_alive()
            sup.tick()
            assert sink.publisher is not old and sink.publisher.is_alive()
            assert p.stats.get("publisher_restarts") == 1 and sup.healthy
            r = make_result("sess", 0)
            sink.emit(r)
            assert wait_until(lambda: r.event_id in collector.event_ids(), 10)
            assert wait_until(lambda: sink.outbox.depth() == 0, 10)  # PUBACK reached it
            # the retained state (held by the dead publisher) went out from the new one
            def after_restart() -> list[tuple[str, bytes]]:
                with collector.lock:
                    msgs = [(t, pl) for t, pl, *_ in collector.messages]
                return msgs[msgs.index((TOPICS.status, b"stopped")) + 1:]

            assert wait_until(lambda: any(t == TOPICS.state and b"test-part" in pl
                                          for t, pl in after_restart()), 10)
            assert (TOPICS.status, b"online") in after_restart()
            assert collector.errors == []
            # a second death exceeds publisher_restarts=1: the watchdog is let go
            sink.publisher.stop(10)
            sup.tick()
            assert list(sup.problems) == ["mqtt publisher"]
            assert p.stats.get("publisher_restarts") == 1
        finally:
            p.stop(1.0)
            sink.close()
            collector.stop()
