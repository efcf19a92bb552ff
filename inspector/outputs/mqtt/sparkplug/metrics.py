"""Sparkplug B metrics: the data types, one metric in and out of protobuf, and the table
of what this station reports (names and types are the contract a SCADA host binds to).
"""

from __future__ import annotations

import time
from enum import IntEnum
from typing import Any

from inspector.outputs.mqtt.sparkplug import sparkplug_b_pb2 as pb

Payload = pb.Payload
Metric = pb.Payload.Metric


class DataType(IntEnum):
    """The Sparkplug 3.0 DataType enumeration (the types this station uses)."""

    Int32 = 3
    Int64 = 4
    UInt32 = 7
    UInt64 = 8
    Double = 10
    Boolean = 11
    String = 12


# node metrics (NBIRTH); `bdSeq` is also the whole NDEATH
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
NODE_METRICS: dict[str, DataType] = {
    BD_SEQ: DataType.UInt64,
    REBIRTH: DataType.Boolean,
    "Properties/Software": DataType.String,
    "Properties/Session": DataType.String,
    "Status": DataType.String,  # online | fault (results cannot be committed)
}

# device metrics (DBIRTH); DDATA carries any subset of them
DEVICE_METRICS: dict[str, DataType] = {
    "Result/EventId": DataType.String,
    "Result/Seq": DataType.UInt64,
    "Result/PartId": DataType.String,
    "Result/RequestId": DataType.String,
    "Result/Camera": DataType.String,
    "Result/Verdict": DataType.String,  # OK | NG
    "Result/Ok": DataType.Boolean,
    "Result/Code": DataType.UInt32,
    "Result/Score": DataType.Double,
    "Result/DefectCount": DataType.UInt32,
    "Result/LatencyMs": DataType.Double,
    "Result/ImageUri": DataType.String,
    "Result/Replayed": DataType.Boolean,
    "Result/Json": DataType.String,  # the whole inspector.result/1 document
    "Recipe/Id": DataType.String,
    "Recipe/Rev": DataType.Int32,
    "Recipe/Sha256": DataType.String,
    "Mode": DataType.String,
    "Ready/State": DataType.String,  # READY | BUSY | ERROR
    "Ready/Reason": DataType.String,
    "Ready/RequestId": DataType.String,
    "Counters/Results": DataType.UInt64,
    "Counters/OK": DataType.UInt64,
    "Counters/NG": DataType.UInt64,
    "Rates/PartsPerSecond": DataType.Double,
    "Rates/RejectRate": DataType.Double,  # NG / results since start
    "Latency/TotalP50Ms": DataType.Double,
    "Latency/TotalP99Ms": DataType.Double,
    "Outbox/Depth": DataType.UInt64,
    "Outbox/Dropped": DataType.UInt64,
    "Stats/Json": DataType.String,  # the whole stats document
    # written by a host with DCMD; the station answers on Command/Ack
    "Command/SelectRecipe": DataType.String,  # "<recipe id>" or "<recipe id>@<rev>"
    "Command/Trigger": DataType.String,  # the part id ("" for none)
    "Command/Thresholds": DataType.String,  # JSON, as `thresholds` of cmd/thresholds
    "Command/Ack": DataType.String,  # JSON: {command, request_id, ok, error?, ...}
}
COMMANDS = ("Command/SelectRecipe", "Command/Trigger", "Command/Thresholds")


def camera_metric(camera: str) -> str:
    """The status metric of one camera (declared in DBIRTH: configured cameras from the
    first one, any other once it reported)."""
    return f"Camera/{camera}/Status"


def now_ms() -> int:
    """Sparkplug timestamps: ms since the epoch, UTC."""
    return int(time.time() * 1000)


def add(payload: Any, name: str, dtype: DataType, value: object, ts_ms: int | None = None,
        historical: bool = False) -> None:
    """Append one metric; None becomes `is_null` (what a birth says of a value not seen
    yet)."""
    m = payload.metrics.add(name=name, datatype=int(dtype))
    if ts_ms is not None:
        m.timestamp = ts_ms
    if historical:
        m.is_historical = True
    if value is None:
        m.is_null = True
    elif dtype is DataType.Boolean:
        m.boolean_value = bool(value)
    elif dtype is DataType.String:
        m.string_value = str(value)
    elif dtype is DataType.Double:
        m.double_value = float(value)  # type: ignore[arg-type]
    elif dtype in (DataType.Int32, DataType.UInt32):
        m.int_value = int(value) & 0xFFFFFFFF  # type: ignore[call-overload]
    else:
        m.long_value = int(value) & 0xFFFFFFFFFFFFFFFF  # type: ignore[call-overload]


def value(m: Any) -> object:
    """A received metric's value as Python (None when null or absent)."""
    if m.is_null or m.WhichOneof("value") is None:
        return None
    dt = m.datatype
    if dt == DataType.Int32:
        v = m.int_value
        return v - (1 << 32) if v >= 1 << 31 else v
    if dt == DataType.Int64:
        v = m.long_value
        return v - (1 << 64) if v >= 1 << 63 else v
    return getattr(m, m.WhichOneof("value"))
