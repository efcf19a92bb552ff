"""Station configuration: one YAML file per inspection station, validated with pydantic.

Unknown keys are errors (StrictModel), every error names file, line and field
(inspector.core.validation). Relative paths are resolved against the config file's folder,
so a development tree can live in one folder given on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator, model_validator

from inspector.config.mqtt import MqttConfig
from inspector.config.sections import (
    ArchiveConfig,
    HealthConfig,
    OpcUaConfig,
    SupervisorConfig,
    WebConfig,
)
from inspector.config.sources import SourceConfig
from inspector.core.strict import StrictModel
from inspector.core.validation import require_unique, validate_file

TopicLevel = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class StationIdentity(StrictModel):
    """Site, line and station: the topic levels every MQTT message of the station is under;
    `enterprise` and `area` add the other ISA-95 levels when a plant's namespace has them."""

    site: TopicLevel
    line: TopicLevel
    station: TopicLevel
    enterprise: TopicLevel | None = None
    area: TopicLevel | None = None


class CameraConfig(StrictModel):
    """One camera of the station: its name, where frames come from and its calibration."""

    name: TopicLevel
    enabled: bool = True
    source: SourceConfig
    calibration: Path | None = None  # inspector calibrate's file (flat field, lens, mm/px)


class StorageConfig(StrictModel):
    """Where state lives; defaults follow the design card, overridable for development."""

    state_dir: Path = Path("/var/lib/inspector")
    results_jsonl: Path | None = Path("results.jsonl")  # relative to state_dir; None: off

    def resolve(self, p: Path | None) -> Path | None:
        return None if p is None else (p if p.is_absolute() else self.state_dir / p)


class QueueConfig(StrictModel):
    """Bounded queues between stages: a full queue drops its oldest frame, counted."""

    frames: Annotated[int, Field(ge=1, le=256)] = 4  # acquisition -> inference
    results: Annotated[int, Field(ge=1, le=4096)] = 64  # inference -> sinks (never dropped)
    pool_spare: Annotated[int, Field(ge=2, le=64)] = 2  # extra frame buffers beyond depth


class StationConfig(StrictModel):
    """The whole station config file; relative paths are resolved against its folder."""

    station: StationIdentity
    cameras: Annotated[list[CameraConfig], Field(min_length=1)]
    recipe: Path  # active recipe folder (or its recipe.yaml)
    recipes_dir: Path | None = None  # where `cmd/recipe` looks up recipe ids; default: parent
    mqtt: MqttConfig | None = None  # None: no MQTT (results go to JSONL and console only)
    stats_interval_s: Annotated[float, Field(gt=0, le=3600)] = 10.0  # `stats` topic period
    storage: StorageConfig = Field(default_factory=StorageConfig)
    queues: QueueConfig = Field(default_factory=QueueConfig)
    console: bool = True  # one-line summary per part on stdout
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)  # images, retention
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig)  # stall limits
    health: HealthConfig = Field(default_factory=HealthConfig)  # Prometheus endpoint
    web: WebConfig = Field(default_factory=WebConfig)  # the operator's station page
    opcua: OpcUaConfig = Field(default_factory=OpcUaConfig)  # OPC UA server for PLCs

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, v: list[CameraConfig]) -> list[CameraConfig]:
        require_unique([c.name for c in v], "camera names")
        return v

    @model_validator(mode="after")
    def _resolve_paths(self, info: ValidationInfo) -> StationConfig:
        file = (info.context or {}).get("file")
        base = Path(file).parent if file else Path.cwd()

        def rel(p: Path) -> Path:
            return p if p.is_absolute() else (base / p)

        self.recipe = rel(self.recipe)
        if not self.recipe.exists():
            raise ValueError(f"recipe: not found: {self.recipe}")
        self.recipes_dir = rel(self.recipes_dir) if self.recipes_dir else self.recipe.parent
        self.storage.state_dir = rel(self.storage.state_dir)
        for cam in self.cameras:
            src = cam.source
            if src.kind == "replay":
                src.path = rel(src.path)
                if not src.path.exists():
                    raise ValueError(f"cameras[{cam.name}].source.path: not found: {src.path}")
            if src.kind == "genicam" and src.cti is not None:
                src.cti = rel(src.cti)
            if cam.calibration is not None:
                cam.calibration = rel(cam.calibration)
                _check_calibration(cam.name, cam.calibration)
        return self


def _check_calibration(camera: str, path: Path) -> None:
    """The camera's calibration file must exist, be valid and be this camera's."""
    from inspector.calibration.store import load_calibration
    from inspector.core.validation import InvalidFile

    if not path.is_file():
        raise ValueError(f"cameras[{camera}].calibration: not found: {path}")
    try:
        cal = load_calibration(path)
    except InvalidFile as exc:
        raise ValueError(f"cameras[{camera}].calibration: invalid: "
                         + "; ".join(exc.errors)) from None
    if cal.camera != camera:
        raise ValueError(f"cameras[{camera}].calibration: {path} is the calibration of "
                         f"camera {cal.camera!r}")


def load_config(path: Path) -> StationConfig:
    """Validate a station config file; raises inspector.core.validation.InvalidFile."""
    return validate_file(Path(path), StationConfig)
