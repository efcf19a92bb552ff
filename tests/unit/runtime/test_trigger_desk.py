"""The trigger desk on its own: one part in flight, the ids on the right frame, READY /
BUSY / ERROR with reasons, and a part that never comes is given up."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from inspector.acquisition.base import FrameSource
from inspector.core.frames import Frame
from inspector.outputs.mqtt.topics import Topics
from inspector.runtime.trigger import TriggerDesk, TriggerRefused


class Cam(FrameSource):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.fired = 0
        self.state = "online"

    def grab(self, timeout: float) -> Frame | None:
        return None

    def trigger(self) -> None:
        self.fired += 1

    def status(self) -> str:
        return self.state


def _frame(camera: str, t: float) -> Frame:
    return Frame(image=np.zeros((4, 4), np.uint8), camera=camera, frame_id=0,
                 part_id="camera-own", ts_capture=t, t_arrival=time.monotonic())


def test_one_part_in_flight_with_its_ids_on_the_first_frame_after_the_trigger() -> None:
    published: list[dict] = []
    cams = [Cam("cam0"), Cam("cam1")]
    desk = TriggerDesk(cams, published.append)
    desk.announce()
    assert published[-1]["state"] == "READY"
    early = _frame("cam0", time.time() - 1)  # captured before the trigger
    assert desk.fire("r1", "PN-1", None) == {"camera": "cam0", "part_id": "PN-1"}
    assert cams[0].fired == 1 and published[-1]["state"] == "BUSY"
    assert published[-1]["request_id"] == "r1"
    with pytest.raises(TriggerRefused, match="busy: inspecting part PN-1 of trigger r1"):
        desk.fire("r2", None, "cam1")
    other, right, later = _frame("cam1", time.time()), _frame("cam0", time.time()), \
        _frame("cam0", time.time())
    for f in (early, other, right, later):
        desk.tag(f)
    assert [f.part_id for f in (early, other, right, later)] == [
        "camera-own", "camera-own", "PN-1", "camera-own"]
    assert right.meta == {"request_id": "r1"} and later.meta == {}
    desk.finished(SimpleNamespace(result=SimpleNamespace(request_id="r1")))
    assert published[-1]["state"] == "READY" and len(desk.latencies) == 1


def test_busy_while_switching_error_while_a_camera_is_offline() -> None:
    published: list[dict] = []
    cam = Cam("cam0")
    desk = TriggerDesk([cam], published.append)
    desk.switching(True)
    with pytest.raises(TriggerRefused, match="busy: switching recipe"):
        desk.fire("r1", None, None)
    desk.switching(False)
    cam.state = "offline"
    desk.tick()
    assert published[-1] == {**published[-1], "state": "ERROR",
                             "reason": "camera cam0 is offline"}
    with pytest.raises(TriggerRefused, match="error: camera cam0 is offline"):
        desk.fire("r2", None, None)
    with pytest.raises(TriggerRefused, match="unknown camera 'cam7'"):
        desk.fire("r3", None, "cam7")
    assert cam.fired == 0


def test_a_part_that_never_comes_is_given_up() -> None:
    published: list[dict] = []
    desk = TriggerDesk([Cam("cam0")], published.append, timeout_s=0.1)
    desk.fire("lost", None, None)
    time.sleep(0.15)
    desk.tick()
    assert published[-1]["state"] == "READY"
    assert "trigger lost was given up: no frame within 0.1 s" in published[-1]["reason"]
    desk.fire("next", None, None)  # the station takes the next trigger


def test_isa95_topic_root_and_the_v1_default() -> None:
    assert Topics.for_station("inspector/v1", "p1", "l3", "s2").root == "inspector/v1/p1/l3/s2/"
    t = Topics.for_station("inspector/v1", "p1", "l3", "s2", enterprise="acme", area="press")
    assert t.root == "inspector/v1/acme/p1/press/l3/s2/"
    assert t.schema_name(t.ready) == "ready" and t.schema_name(t.cmd_trigger) == "cmd_trigger"
    with pytest.raises(ValueError, match="area"):
        Topics.for_station("inspector/v1", "p1", "l3", "s2", area="a/b")
