"""The optional JPEG thumbnail on MQTT: off by default, capped in size, the overlay of the
part whose `result` went out just before it; validated by the Collector (a whole JPEG)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from inspector.config.mqtt import MqttConfig, ThumbnailConfig
from inspector.config.station import load_config
from inspector.core.result import Result
from inspector.outputs.mqtt.thumbnail import encode
from inspector.runtime.service import Service
from tests.helpers.files import write_config
from tests.helpers.mosquitto import Broker
from tests.helpers.mqtt_fixtures import TOPICS, Collector, make_result, needs_mosquitto, wait_until
from tests.helpers.standins import fast_recipe


def test_encode_keeps_to_the_caps() -> None:
    noise = np.random.default_rng(0).integers(0, 255, (2048, 1536), np.uint8)  # worst case
    doc = make_result("s", 4).payload()  # NG: a scratch box is drawn
    del doc["defects"][0]["mask"]  # (the fixture's mask is for a 480x640 frame)
    result = Result.from_payload(doc)
    for cap in (2048, 8192, 65536):
        jpeg = encode(noise, result, ThumbnailConfig(max_side=320, max_bytes=cap))
        assert jpeg is not None and len(jpeg) <= cap
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert max(img.shape[:2]) <= 320
    big = encode(noise, result, ThumbnailConfig(max_side=320, max_bytes=262_144))
    assert big is not None
    # the overlay (banner and legend added to the frame) scaled to a 320 px longer side
    assert max(cv2.imdecode(np.frombuffer(big, np.uint8), cv2.IMREAD_COLOR).shape[:2]) == 320


def test_thumbnail_is_off_by_default_and_not_for_sparkplug() -> None:
    assert MqttConfig().thumbnail.enabled is False
    with pytest.raises(ValidationError, match="thumbnail.enabled"):
        MqttConfig.model_validate({"mode": "sparkplug", "thumbnail": {"enabled": True}})


@needs_mosquitto
@pytest.mark.timeout(120)
def test_service_publishes_a_retained_thumbnail_per_part(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker") as broker:
        col = Collector(broker)
        cfg = write_config(
            tmp_path / "station.yaml", fast_recipe(tmp_path / "recipes" / "part"),
            console=False,
            cameras=[{"name": "cam0", "source": {"kind": "synthetic", "width": 640,
                                                 "height": 480, "count": 4, "seed": 5}}],
            mqtt={"host": "127.0.0.1", "port": broker.port,
                  "thumbnail": {"enabled": True, "max_side": 200, "max_bytes": 12000}})
        service = Service(load_config(cfg))
        service.start()
        topic = TOPICS.camera_thumbnail("cam0")
        try:
            assert wait_until(lambda: len(col.results()) == 4 and col.count(topic) >= 1, 60)
        finally:
            service.stop()
        assert col.errors == []
        jpeg = col.docs(topic)[-1]
        assert len(jpeg) <= 12000
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert max(img.shape[:2]) == 200 and img.shape[2] == 3  # the overlay, scaled
        # retained: a dashboard that connects later still gets the last part's picture
        late = Collector(broker)
        assert wait_until(lambda: late.count(topic) == 1, 10)
        assert late.docs(topic)[0] == jpeg
        late.stop()
        col.stop()
