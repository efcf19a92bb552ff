"""GenICam source against the real simulated GenTL producer viky.cti (genicam wheel).

viky.cti offers three devices "Viky" (serials 0, 1, 2; no user-defined names) streaming
Mono8 or RGBa8 up to 200 fps. It has no ExposureTime, Gain, OffsetX/Y, TriggerMode,
TriggerSoftware or device timestamps, its buffers are always sized for the largest
image (so it never delivers incomplete buffers), and it cannot be unplugged. Device
loss is therefore simulated three honest ways: the camera stops streaming
(AcquisitionStop from outside), the producer invalidates the device handle (the device
is closed underneath the acquirer), and the acquirer is destroyed from outside.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
import weakref
from pathlib import Path

import pytest

genicam = pytest.importorskip("genicam")
pytest.importorskip("harvesters")

from harvesters.core import ImageAcquirer  # noqa: E402

from inspector.acquisition.base import SourceError  # noqa: E402
from inspector.acquisition.genicam import GenicamSource, list_devices  # noqa: E402
from inspector.acquisition.genicam_features import FeatureError  # noqa: E402
from inspector.acquisition.genicam_producer import find_ctis  # noqa: E402
from inspector.config.sources import GenicamSourceConfig  # noqa: E402
from inspector.core.frames import FramePool  # noqa: E402

CTI = Path(genicam.__file__).parent / "viky.cti"
pytestmark = pytest.mark.skipif(not CTI.is_file(), reason=f"simulated producer {CTI} not found")

FAST = {"PixelFormat": "Mono8", "Width": 320, "Height": 240, "AcquisitionFrameRate": 200.0}


def config(**kw) -> GenicamSourceConfig:
    """A viky camera config: small Mono8 frames at 200 fps, quick loss detection."""
    base = dict(kind="genicam", cti=CTI, serial_number="0", features=dict(FAST),
                lost_after_timeouts=3, reconnect_backoff_s=(0.05, 0.2))  # fmt: skip
    base.update(kw)
    return GenicamSourceConfig(**base)


@pytest.fixture
def opened():
    """Factory for open sources; every one is closed after the test."""
    sources: list[GenicamSource] = []

    def make(pool_size: int = 8, **kw) -> GenicamSource:
        src = GenicamSource("cam", config(**kw))
        src.open(FramePool(pool_size))
        sources.append(src)
        return src

    yield make
    for src in sources:
        src.close()


def frames(src: GenicamSource, n: int, timeout: float = 0.5, limit_s: float = 5.0) -> list:
    """Grab n frames (released at once), failing if they do not come within limit_s."""
    out, end = [], time.monotonic() + limit_s
    while len(out) < n:
        assert time.monotonic() < end, f"only {len(out)} of {n} frames: {src.stats()}"
        f = src.grab(timeout)
        if f is not None:
            out.append((f.frame_id, f.image.shape, f.image.dtype, f.part_id, dict(f.meta)))
            f.done()
    return out


def until_status(src: GenicamSource, status: str, timeout: float = 0.05, limit_s: float = 5.0):
    """Grab until the source reports `status`; returns the number of grab calls."""
    end, calls = time.monotonic() + limit_s, 0
    while src.status() != status:
        assert time.monotonic() < end, f"never {status}: {src.stats()}"
        f = src.grab(timeout)
        calls += 1
        if f is not None:
            f.done()
    return calls


# -- producer and device selection ------------------------------------------------------


def test_producer_from_env_var(monkeypatch, tmp_path):
    monkeypatch.setenv("GENICAM_GENTL64_PATH", f"{tmp_path}{os.pathsep}{CTI.parent}")
    assert find_ctis() == [CTI.resolve()]
    monkeypatch.setenv("GENICAM_GENTL64_PATH", str(tmp_path))
    with pytest.raises(SourceError, match="GENICAM_GENTL64_PATH"):
        find_ctis()
    with pytest.raises(SourceError, match="does not exist"):
        find_ctis(tmp_path / "missing.cti")


def test_list_devices():
    devices = list_devices(str(CTI))
    assert [d.serial_number for d in devices] == ["0", "1", "2"]
    assert {d.model for d in devices} == {"Viky"} and devices[0].producer == "viky.cti"


def test_select_by_serial_and_by_model_plus_serial(opened):
    assert opened(serial_number="2").device.id_ == "VikyTL_DEV_blue"
    assert opened(serial_number="1", model="Viky").device.id_ == "VikyTL_DEV_green"


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"serial_number": "9"}, "no GenICam device matches serial_number='9'"),
        ({"serial_number": None, "user_defined_name": "top-cam"}, "user_defined_name='top-cam'"),
        ({"serial_number": None, "model": "Viky"}, "3 GenICam devices match model='Viky'"),
        ({"serial_number": "0", "model": "Other"}, "no GenICam device matches"),
    ],
)
def test_bad_selection_lists_devices(keys, message):
    src = GenicamSource("cam", config(**keys))
    with pytest.raises(SourceError, match=message) as err:
        src.open(FramePool(2))
    for serial in ("'0'", "'1'", "'2'"):  # every available device is listed
        assert f"serial={serial}" in str(err.value)
    assert src.status() == "offline"


# -- features ---------------------------------------------------------------------------


def test_features_applied_and_read_back(opened):
    features = {**FAST, "Width": 400, "Height": 300, "AcquisitionFrameRate": 150.0,
                "BouncingBallSize": 12}  # fmt: skip
    src = opened(features=features)
    info = {i["name"]: i for i in src.node_info(list(features))}
    assert {k: info[k]["value"] for k in features} == features
    assert info["Width"]["min"] == 100 and info["PixelFormat"]["entries"] == ["RGBa8", "Mono8"]
    assert frames(src, 1)[0][1] == (300, 400)


@pytest.mark.parametrize(
    "features, expected",
    [
        ({"ExposureTime": 100.0}, ["unknown node 'ExposureTime'", "100.0"]),
        ({"Widht": 640}, ["unknown node 'Widht'", "did you mean Width"]),
        ({"AspectRatio": 2.0}, ["AspectRatio=2.0", "read-only"]),
        ({"PayloadSize": 1}, ["PayloadSize=1", "read-only"]),
        ({"Width": 5000}, ["Width=5000", "range [100, 800]"]),
        ({"AcquisitionFrameRate": 500.0}, ["AcquisitionFrameRate=500.0", "[1.0, 200.0]", "Hz"]),
        ({"PixelFormat": "BayerRG8"}, ["PixelFormat='BayerRG8'", "entries RGBa8, Mono8"]),
        ({"Width": "640"}, ["Width='640'", "integer node"]),
        ({"ChunkModeActive": 1}, ["ChunkModeActive=1", "boolean"]),
    ],
)
def test_feature_errors_name_node_value_and_range(opened, features, expected):
    src = opened()
    before = {i["name"]: i["value"] for i in src.node_info(["Width", "Height"])}
    with pytest.raises(FeatureError) as err:
        src.apply_features({"Height": 200, **features})  # Height is valid and written first
    for text in expected:
        assert text in str(err.value)
    assert {i["name"]: i["value"] for i in src.node_info(["Width", "Height"])} == before
    assert frames(src, 1)[0][1] == (240, 320)  # still streaming, unchanged


def test_bad_feature_in_config_fails_open_and_releases_device():
    src = GenicamSource("cam", config(features={**FAST, "Width": 9999}))
    with pytest.raises(FeatureError, match=r"camera 'cam': Width=9999 .*\[100, 800\]"):
        src.open(FramePool(2))
    good = GenicamSource("cam", config())
    good.open(FramePool(2))  # the device was released: it opens again
    good.close()


def test_recipe_features_change_layout_and_revert(opened):
    src = opened()
    assert src.apply_features({"Width": 200, "BouncingBallSize": 5}) == {
        "Width": 200,
        "BouncingBallSize": 5,
    }
    assert frames(src, 2)[-1][1] == (240, 200)
    src.apply_features({})  # next recipe sets nothing: Width goes back to the config's 320
    assert frames(src, 2)[-1][1] == (240, 320)


def test_software_trigger_not_available_on_viky_is_a_clear_error():
    src = GenicamSource("cam", config(trigger={"mode": "software"}))
    with pytest.raises(FeatureError, match="unknown node 'TriggerMode'"):
        src.open(FramePool(2))


def test_software_trigger_delivers_exactly_the_triggered_frames(opened):
    src = opened()
    nm = src._ia.remote_device.node_map
    if not (nm.has_node("TriggerMode") and nm.has_node("TriggerSoftware")):
        pytest.skip("viky.cti has no TriggerMode/TriggerSoftware nodes: software trigger "
                    "is only exercised on a camera that has them")  # fmt: skip
    src.close()
    src = opened(trigger={"mode": "software"})
    assert src.grab(0.2) is None
    for _ in range(3):
        src.trigger()
    assert len(frames(src, 3)) == 3 and src.grab(0.3) is None


def test_trigger_ignored_in_free_run(opened):
    src = opened()
    src.trigger()
    assert src.counters["triggers"] == 0


# -- frames ----------------------------------------------------------------------------


def test_frames_arrive_in_pool_buffers_with_increasing_ids(opened):
    src = opened()
    got = frames(src, 30)
    ids = [g[0] for g in got]
    assert ids == list(range(ids[0], ids[0] + 30))
    assert all(g[1] == (240, 320) and g[2] == "uint8" for g in got)
    assert [g[3] for g in got] == [f"cam-{i}" for i in ids]
    dev_ids = [g[4]["device_frame_id"] for g in got]
    assert dev_ids == sorted(dev_ids) and len(set(dev_ids)) == 30
    assert got[0][4]["device_timestamp"] is None  # viky: "timestamps not supported"
    assert src.pool.in_use() == 0 and src.num_buffers == 8


def test_pool_exhaustion_drops_frames_and_never_blocks(opened):
    src = opened(pool_size=2)
    held = [src.grab(0.5) for _ in range(2)]
    assert all(f is not None for f in held)
    assert not any(f.image.base is not None and f.image.base is held[0].image for f in held[1:])
    t0 = time.monotonic()
    assert src.grab(0.5) is None and time.monotonic() - t0 < 0.5
    assert src.counters["pool_drops"] == 1 and src.pool.exhausted == 1
    for f in held:
        f.done()
    assert src.grab(0.5) is not None


@pytest.mark.parametrize("output, shape", [("mono", (240, 320)), ("rgb", (240, 320, 3))])
def test_rgba8_converted(opened, output, shape):
    src = opened(features={**FAST, "PixelFormat": "RGBa8"}, output=output)
    f = src.grab(0.5)
    assert (
        f.image.shape == shape
        and f.image.dtype.name == "uint8"
        and f.meta["pixel_format"] == "RGBa8"
    )
    f.done()


def test_num_buffers_at_least_pipeline_depth_plus_two():
    src = GenicamSource("cam", config(num_buffers=2), pipeline_depth=6)
    src.open(FramePool(2))
    try:
        assert src.num_buffers == 8 and src._ia.num_buffers == 8
    finally:
        src.close()


def test_part_id_from_chunk_node_or_fallback(opened):
    src = opened(part_id_node="ChunkNrBounces")  # viky's only chunk: a game counter
    _, _, _, part_id, _ = frames(src, 1)[0]
    assert part_id.isdigit()
    src2 = opened(serial_number="1", part_id_node="ChunkNoSuchNode")
    frame_id, _, _, part_id, _ = frames(src2, 1)[0]
    assert part_id == f"cam-{frame_id}" and src2.counters["part_id_errors"] == 1


def test_incomplete_buffers_counted(opened):
    # viky never delivers incomplete buffers; harvesters' own emission path is used.
    src = opened()
    src._ia._emit_callbacks(ImageAcquirer.Events.INCOMPLETE_BUFFER)
    assert src.counters["incomplete"] == 1


# -- device loss and reconnect ----------------------------------------------------------


def _stop_streaming(src):
    src._ia.remote_device.node_map.AcquisitionStop.execute()


def _close_device_handle(src):
    src._ia.device.module.close()


def _destroy_acquirer(src):
    src._ia.destroy()


@pytest.mark.parametrize("lose", [_stop_streaming, _close_device_handle, _destroy_acquirer])
def test_device_loss_goes_offline_then_reconnects(opened, lose):
    src = opened()
    last_id = frames(src, 3)[-1][0]
    lose(src)
    for _ in range(src.num_buffers + 1):  # frames the camera captured before the loss
        f = src.grab(0.05)                 # are still handed out, never dropped
        if f is None:
            break
        f.done()
    for _ in range(3):  # lost_after_timeouts=3: noticed within three grabs at most
        if src.counters["losses"]:
            break
        assert src.grab(0.05) is None
        if src.counters["losses"]:
            break
    assert src.counters["losses"] == 1 and src.status() == "offline"
    until_status(src, "online")
    assert src.counters["reconnects"] == 1 and src.last_error
    assert frames(src, 3)[0][0] > last_id  # ids keep increasing across the reconnect


def test_reconnect_backs_off_while_device_busy_and_never_blocks(opened):
    src = opened()
    _stop_streaming(src)
    until_status(src, "offline")
    blocker = src._hub.create_acquirer({"serial_number": "0"}, 3)  # someone else holds it
    try:
        end, longest = time.monotonic() + 1.0, 0.0
        while time.monotonic() < end:
            t0 = time.monotonic()
            assert src.grab(0.05) is None
            longest = max(longest, time.monotonic() - t0)
        failures = src.counters["reconnect_failures"]
        # backoff 0.05, 0.1, 0.2, 0.2 ...: about 6 tries in 1 s instead of 20
        assert 3 <= failures <= 8 and longest < 0.2
        assert "in use" in src.last_error.lower() or "resource" in src.last_error.lower()
    finally:
        src._hub.dispose(blocker)
    until_status(src, "online", limit_s=2.0)
    assert src.counters["reconnects"] == 1


@pytest.mark.parametrize("lose", [_stop_streaming, _destroy_acquirer])
def test_no_acquirer_or_thread_leaked_across_reconnects(opened, monkeypatch, lose):
    # harvesters logs fetch errors with exc_info; pytest's log capture keeps those records
    # (and through their tracebacks the acquirers), which a service's handlers do not.
    monkeypatch.setattr(logging.getLogger("harvesters"), "propagate", False)
    monkeypatch.setattr(logging.getLogger("harvesters"), "level", logging.CRITICAL)
    src = opened()
    threads = threading.active_count()
    refs = []
    for _ in range(5):
        frames(src, 1)
        refs.append(weakref.ref(src._ia))
        if lose is _stop_streaming:  # genicam's ChunkAdapter pins the node map otherwise
            refs.append(weakref.ref(src._ia._chunk_adapter))
        lose(src)
        until_status(src, "offline")
        until_status(src, "online")
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)
    assert src._hub.harvester.image_acquirers == [src._ia]
    assert threading.active_count() == threads
    assert src.counters["reconnects"] == 5 and src.counters["reconnect_failures"] == 0


# -- signals and shutdown ----------------------------------------------------------------


def test_sigint_handler_stays_installed(opened):
    caught = []

    def handler(signum, frame):
        caught.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        src = opened()
        assert signal.getsignal(signal.SIGINT) is handler
        _destroy_acquirer(src)  # the reconnect happens on this (main) thread too
        until_status(src, "offline")
        until_status(src, "online")
        src.close()
        assert signal.getsignal(signal.SIGINT) is handler
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        assert caught == [signal.SIGINT]
        # Control: harvesters itself does replace the handler, which is what is guarded.
        src = opened()
        ia = src._hub.harvester.create({"serial_number": "1"})
        try:
            assert type(signal.getsignal(signal.SIGINT)).__name__ == "_SignalHandler"
        finally:
            signal.signal(signal.SIGINT, handler)
            src._hub.dispose(ia)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_close_is_idempotent_and_releases_device(opened):
    src = opened()
    frames(src, 2)
    src.close()
    src.close()
    assert src.status() == "offline"
    with pytest.raises(SourceError, match="not open"):
        src.grab(0.01)
    again = opened()  # device and producer were released
    assert len(frames(again, 1)) == 1


def test_control_calls_are_not_starved_by_grab_loop(opened):
    src = opened()
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            f = src.grab(0.2)
            if f is not None:
                f.done()

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        time.sleep(0.05)
        t0 = time.monotonic()
        src.apply_features({"BouncingBallSize": 7})
        assert time.monotonic() - t0 < 0.5
    finally:
        stop.set()
        worker.join(2)
    assert not worker.is_alive()


def _python_loop_rate(seconds: float) -> float:
    """Iterations per second of a pure-Python loop: what the GIL lets this thread do."""
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(1000):
            n += 1
    return n / seconds


def test_waiting_for_frames_leaves_the_gil_to_other_threads(opened):
    """GenTL's buffer wait holds the GIL; the source polls and sleeps instead, so the
    inference thread keeps its speed while acquisition waits (with harvesters' own
    1 ms waits this loop ran at 0.44-0.62 of its speed, at 100 ms waits 0.06)."""
    src = opened(features={**FAST, "AcquisitionFrameRate": 2.0}, lost_after_timeouts=50)
    alone = _python_loop_rate(2.5)
    stop, got = threading.Event(), []

    def grab_loop() -> None:
        while not stop.is_set():
            f = src.grab(0.2)
            if f is not None:
                got.append(f.frame_id)
                f.done()

    t = threading.Thread(target=grab_loop)
    t.start()
    try:
        time.sleep(0.2)
        beside = _python_loop_rate(2.5)
    finally:
        stop.set()
        t.join(5)
    assert got, "the camera delivered no frame at 2 Hz"
    # measured after the change: 0.84-1.10 (noise of a shared 2-core machine)
    assert beside >= 0.7 * alone, f"{beside / alone:.2f} of the speed alone"
