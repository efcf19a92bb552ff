"""The result of one inspected part (schema `inspector.result/1`) as a typed model.

Why a model and not a dict: the decision stage builds it once, validated; the pipeline
hands the same object to the archive and to every sink, which read typed fields; it
becomes JSON only at the edge (`payload()`: the JSONL line, the outbox row, the MQTT
message). `tests/unit/core/test_result.py` checks it against
`inspector/outputs/schemas/result.schema.json`, the contract MES consumers see.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA: Final = "inspector.result/1"
ERROR_CODE: Final = 65535  # PLC code of a part that could not be inspected (always NG)


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RecipeRef(_Part):
    """Which recipe (and model) judged the part."""

    id: str
    rev: int
    sha256: str
    model_sha256: str


class RleMask(_Part):
    """COCO RLE (compressed counts) over the full frame."""

    size: Annotated[list[int], Field(min_length=2, max_length=2)]
    counts: str


class Defect(_Part):
    """One detection in frame coordinates; `accepted`: it counted for the verdict."""

    cls: str = Field(alias="class")
    score: Annotated[float, Field(ge=0, le=1)]
    bbox: Annotated[list[float], Field(min_length=4, max_length=4)]
    area_px: Annotated[float, Field(ge=0)]
    area_mm2: Annotated[float, Field(ge=0)]
    prompt_id: str | None = None
    unknown: bool = False
    accepted: bool = False
    mask: RleMask | None = None


class Latency(_Part):
    """Milliseconds per pipeline stage; `total` is acquisition to decision."""

    model_config = ConfigDict(extra="allow")  # the schema lets a stage be added
    acq: float
    queue: float | None = None
    preprocess: float
    infer: float
    decide: float
    total: float

    def stages(self) -> dict[str, float]:
        """The figures as a dict (for the rolling latency statistics)."""
        return self.model_dump(exclude_none=True)


class Result(_Part):
    """One inspected part, as published on `result` (see docs/DESIGN.md)."""

    schema_id: Literal["inspector.result/1"] = Field(SCHEMA, alias="schema")
    event_id: Annotated[str, Field(min_length=8)]
    session: Annotated[str, Field(min_length=1)]
    seq: Annotated[int, Field(ge=0)]
    ts_capture: float
    ts_done: float
    camera: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    frame_id: Annotated[int, Field(ge=0)]
    part_id: str
    request_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None  # trigger
    recipe: RecipeRef
    verdict: Literal["OK", "NG"]
    code: Annotated[int, Field(ge=0)] | None = None
    score: Annotated[float, Field(ge=0, le=1)]
    reasons: list[str]
    defects: list[Defect]
    latency_ms: Latency
    image_uri: str | None
    replayed: bool = False

    def payload(self) -> dict:
        """The JSON object consumers get: wire names (`schema`, `class`); the optional
        `code`, `request_id` (no trigger asked for the part), a defect's `mask` and the
        `queue` stage are left out when None, as the schema allows (a `prompt_id` of None
        stays: null means "no prompt explains it")."""
        doc = self.model_dump(mode="json", by_alias=True)
        if doc["code"] is None:
            del doc["code"]
        if doc["request_id"] is None:
            del doc["request_id"]
        if doc["latency_ms"].get("queue", 0) is None:
            del doc["latency_ms"]["queue"]
        for d in doc["defects"]:
            if d["mask"] is None:
                del d["mask"]
        return doc

    @classmethod
    def from_payload(cls, doc: dict) -> Result:
        """Validate a payload (a JSONL line, a test's fixture) into a Result."""
        return cls.model_validate(doc)
