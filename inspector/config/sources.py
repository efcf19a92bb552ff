"""Validated settings of each frame-source kind; `kind` selects both code and schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, model_validator

from inspector.core.strict import YAML_WORD, StrictModel

DefectKind = Literal["scratch", "pit", "crack", "stain", "missing_print"]
DEFECT_KINDS: tuple[DefectKind, ...] = get_args(DefectKind)


class SyntheticSourceConfig(StrictModel):
    """Procedurally textured parts with seeded defects and ground truth."""

    kind: Literal["synthetic"]
    seed: int = 0
    width: Annotated[int, Field(ge=64, le=8192)] = 512
    height: Annotated[int, Field(ge=64, le=8192)] = 512
    rate_hz: Annotated[float, Field(gt=0)] | None = None  # None: as fast as possible
    defect_rate: Annotated[float, Field(ge=0, le=1)] = 0.5  # share of parts with defects
    kinds: list[DefectKind] = Field(
        default_factory=lambda: list(DEFECT_KINDS)
    )
    max_defects: Annotated[int, Field(ge=1, le=10)] = 2
    count: Annotated[int, Field(ge=1)] | None = None  # None: endless
    # render only this many different parts (frame k shows part k % distinct) and copy
    # them afterwards, so a benchmark measures the pipeline, not the part renderer
    distinct: Annotated[int, Field(ge=1)] | None = None
    # software trigger: a part only when triggered (cmd/trigger), like a camera in
    # TriggerMode On with TriggerSource Software; rate_hz is then ignored
    triggered: bool = False


class ReplaySourceConfig(StrictModel):
    """A folder of images or a COCO dataset, looping, at a set rate or flat out."""

    kind: Literal["replay"]
    path: Path  # folder of images, or a COCO annotations .json
    images_dir: Path | None = None  # COCO only; default: `images/` beside the json
    loop: bool = True
    rate_hz: Annotated[float, Field(gt=0)] | None = None
    grayscale: bool = True


class TriggerConfig(StrictModel):
    """How frames are started: free-run, software trigger (tests, PLC over MQTT) or a line."""

    mode: Annotated[Literal["off", "software", "hardware"], YAML_WORD] = "off"
    source: str | None = None  # SFNC TriggerSource for hardware mode, e.g. Line0
    selector: str = "FrameStart"  # SFNC TriggerSelector the mode/source apply to
    activation: str | None = None  # SFNC TriggerActivation for hardware mode, e.g. RisingEdge
    timeout_s: Annotated[float, Field(gt=0)] = 10.0  # no frame within this: stalled

    @model_validator(mode="after")
    def _hardware_needs_source(self) -> TriggerConfig:
        if self.mode == "hardware" and not self.source:
            raise ValueError("trigger.mode 'hardware' needs trigger.source (e.g. Line0)")
        return self


class GenicamSourceConfig(StrictModel):
    """A GenICam camera through harvesters and a GenTL producer (.cti)."""

    kind: Literal["genicam"]
    cti: Path | None = None  # default: every .cti on GENICAM_GENTL64_PATH
    serial_number: str | None = None
    user_defined_name: str | None = None
    model: str | None = None
    features: dict[str, Any] = Field(default_factory=dict)  # SFNC node name -> value
    num_buffers: Annotated[int, Field(ge=2, le=64)] = 8
    pipeline_depth: Annotated[int, Field(ge=1, le=62)] = 4  # GenTL buffers >= this + 2
    fetch_timeout_s: Annotated[float, Field(gt=0, le=10)] = 0.5
    trigger: TriggerConfig = Field(default_factory=TriggerConfig)
    lost_after_timeouts: Annotated[int, Field(ge=1)] = 10
    reconnect_backoff_s: tuple[float, float] = (0.5, 10.0)  # first, max
    output: Literal["mono", "rgb"] = "mono"  # colour formats -> HxW mono or HxWx3 RGB
    part_id_node: str | None = None  # e.g. a chunk or counter node holding the part id

    @model_validator(mode="after")
    def _backoff_order(self) -> GenicamSourceConfig:
        first, most = self.reconnect_backoff_s
        if not 0 < first <= most:
            raise ValueError("reconnect_backoff_s must be (first, max) with 0 < first <= max")
        return self


SourceConfig = Annotated[
    SyntheticSourceConfig | ReplaySourceConfig | GenicamSourceConfig,
    Field(discriminator="kind"),
]
