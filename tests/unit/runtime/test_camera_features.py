"""apply_camera_features: a recipe's camera_features on every camera, all or nothing."""

from __future__ import annotations

import pytest

from inspector.acquisition.base import FrameSource, SourceError
from inspector.runtime.service import apply_camera_features


class Camera(FrameSource):
    """A camera that records the features it holds and can be told to refuse some."""

    kind = "test"

    def __init__(self, name: str, refuses: str | None = None) -> None:
        super().__init__(name)
        self.features: dict = {}
        self.refuses = refuses

    def grab(self, timeout: float):
        return None

    def apply_features(self, features):
        if self.refuses in features:
            raise SourceError(f"camera {self.name!r}: {self.refuses}: not writable")
        self.features = dict(features)
        return dict(features)


def test_every_camera_gets_the_features() -> None:
    cams = [Camera("a"), Camera("b")]
    apply_camera_features(cams, {"ExposureTime": 800}, {})
    assert [c.features for c in cams] == [{"ExposureTime": 800}] * 2


def test_a_refusal_restores_the_cameras_already_changed() -> None:
    cams = [Camera("a"), Camera("b"), Camera("c", refuses="Gain")]
    for c in cams:
        c.features = {"ExposureTime": 500}
    with pytest.raises(ValueError, match="camera_features: camera 'c': Gain"):
        apply_camera_features(cams, {"ExposureTime": 800, "Gain": 2}, {"ExposureTime": 500})
    assert [c.features for c in cams] == [{"ExposureTime": 500}] * 3


def test_sources_without_genicam_nodes_accept_features_as_nothing_to_set() -> None:
    from inspector.acquisition import build_source
    from inspector.config.station import CameraConfig

    cam = CameraConfig.model_validate({"name": "s", "source": {"kind": "synthetic"}})
    assert build_source(cam.name, cam.source).apply_features({"Width": 64}) == {}
