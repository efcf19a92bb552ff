"""Apply SFNC features to a GenICam node map: validated, ordered, all or nothing.

Config and recipe files name camera features (`Width: 640`, `PixelFormat: Mono8`). A typo
or a value the camera cannot take must be a clear error that names the node, the value
and what the camera accepts, and must leave the camera as it was: every write is checked
against the node's live range or entries, and on the first failure the nodes already
written are restored in reverse order.

Writes follow a fixed order that works on real cameras: pixel format and binning before
the image size, the size before the offsets (offsets drop to their minimum first when a
larger size does not fit), auto modes before the values they govern, selectors before
the features they select, trigger selector before trigger mode and source.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from genicam import genapi

from inspector.acquisition.base import SourceError

# SFNC features written first, in this order; every other feature keeps the order given.
ORDER = (
    "PixelFormat",
    "BinningSelector",
    "BinningHorizontal",
    "BinningVertical",
    "DecimationHorizontal",
    "DecimationVertical",
    "Width",
    "Height",
    "OffsetX",
    "OffsetY",
    "ExposureAuto",
    "ExposureMode",
    "ExposureTime",
    "GainAuto",
    "GainSelector",
    "Gain",
    "AcquisitionFrameRateEnable",
    "AcquisitionFrameRate",
    "TriggerSelector",
    "TriggerMode",
    "TriggerSource",
    "TriggerActivation",
)
# Changing these alters the payload layout: acquisition must be stopped around the write.
LAYOUT_NODES = frozenset(ORDER[:10])

_ACCESS = {0: "not implemented", 1: "not available", 2: "write-only", 3: "read-only", 4: "RW"}
_TYPE = genapi.EInterfaceType


class FeatureError(SourceError, ValueError):
    """A feature cannot be applied; the message names node, value and what is allowed."""


def ordered(features: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Features in write order: ORDER first, then selectors, then the rest as given."""
    rank = {name: i for i, name in enumerate(ORDER)}
    items = list(features.items())
    return sorted(
        items,
        key=lambda kv: (
            rank.get(kv[0], len(ORDER) + (0 if kv[0].endswith("Selector") else 1)),
            items.index(kv),
        ),
    )


def feature_names(node_map: Any) -> list[str]:
    """Names of every feature node the device describes (for suggestions and listings)."""
    names = []
    for n in node_map.nodes:
        try:
            if n.node.is_feature():
                names.append(n.node.name)
        except genapi.GenericException:
            continue
    return names


def get_node(node_map: Any, name: str, value: Any = None) -> Any:
    """The node called `name`, or a FeatureError suggesting similar feature names."""
    try:
        return node_map.get_node(name)
    except genapi.LogicalErrorException:
        close = difflib.get_close_matches(name, feature_names(node_map), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise FeatureError(
            f"unknown node {name!r} (value {value!r}): the camera has no such feature{hint}"
        ) from None


def entries(node: Any) -> list[str]:
    """Enumeration entries that are available now (not NI/NA)."""
    out = []
    for entry in node.entries:
        if entry.node.get_access_mode() not in (genapi.EAccessMode.NI, genapi.EAccessMode.NA):
            out.append(entry.symbolic)
    return out


def describe(node: Any) -> dict[str, Any]:
    """Type, access, value and allowed range/entries of a node (errors and camera-info)."""
    itype = node.node.principal_interface_type
    access = int(node.get_access_mode())
    info: dict[str, Any] = {
        "name": node.node.name,
        "type": _TYPE(itype).name.removeprefix("intfI"),
        "access": _ACCESS.get(access, str(access)),
    }
    if access in (genapi.EAccessMode.RO, genapi.EAccessMode.RW):
        try:
            info["value"] = node.value
        except (genapi.GenericException, AttributeError):
            info["value"] = None
    if itype in (_TYPE.intfIInteger, _TYPE.intfIFloat):
        try:
            info["min"], info["max"] = node.min, node.max
            if itype == _TYPE.intfIInteger or node.has_inc():
                info["inc"] = node.inc
            if itype == _TYPE.intfIFloat and node.unit:
                info["unit"] = node.unit
        except genapi.GenericException:
            pass
    elif itype == _TYPE.intfIEnumeration:
        info["entries"] = entries(node)
    return info


def allowed(info: Mapping[str, Any]) -> str:
    """Human text for what a node accepts, from `describe`."""
    if "entries" in info:
        return "entries " + ", ".join(info["entries"])
    if "min" in info:
        step = f" step {info['inc']}" if info.get("inc") not in (None, 1) else ""
        unit = f" {info['unit']}" if info.get("unit") else ""
        return f"range [{info['min']}, {info['max']}]{step}{unit}"
    return f"type {info['type']}"


def check_value(node: Any, value: Any) -> Any:
    """Return `value` coerced for the node, or raise FeatureError naming what is allowed."""
    name = node.node.name
    itype = node.node.principal_interface_type
    access = int(node.get_access_mode())
    if itype == _TYPE.intfICommand:
        return _check_command(name, value, access)
    if access != genapi.EAccessMode.RW:
        info = describe(node)
        raise FeatureError(
            f"{name}={value!r}: node is {_ACCESS.get(access, access)}"
            + (f" (current value {info['value']!r})" if "value" in info else "")
        )
    info = describe(node)
    if itype in (_TYPE.intfIInteger, _TYPE.intfIFloat):
        return _check_number(name, itype, value, info)
    return _check_other(name, itype, value, info)


def _check_command(name: str, value: Any, access: int) -> bool:
    """A command node takes only `true`, and only while it is writable."""
    if value is not True:
        raise FeatureError(f"{name}={value!r}: command node, use true to execute it")
    if access not in (genapi.EAccessMode.WO, genapi.EAccessMode.RW):
        raise FeatureError(f"{name}: command is {_ACCESS.get(access)} now, cannot execute")
    return True


def _check_number(name: str, itype: Any, value: Any, info: Mapping[str, Any]) -> Any:
    """An integer (on the node's increment) or float value within the node's live range."""
    bad = f"{name}={value!r} not allowed: {allowed(info)}"
    if itype == _TYPE.intfIInteger:
        if isinstance(value, bool) or not isinstance(value, int):
            raise FeatureError(f"{name}={value!r}: integer node, {allowed(info)}")
        inc = info.get("inc") or 1
        if not info["min"] <= value <= info["max"] or (value - info["min"]) % inc:
            raise FeatureError(bad)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FeatureError(f"{name}={value!r}: number node, {allowed(info)}")
    if not info["min"] <= value <= info["max"]:
        raise FeatureError(bad)
    return float(value)


def _check_other(name: str, itype: Any, value: Any, info: Mapping[str, Any]) -> Any:
    """An enumeration entry, a boolean or a string; any other node type cannot be set."""
    if itype == _TYPE.intfIEnumeration:
        if not isinstance(value, str) or value not in info["entries"]:
            raise FeatureError(f"{name}={value!r} not allowed: {allowed(info)}")
        return value
    if itype == _TYPE.intfIBoolean:
        if not isinstance(value, bool):
            raise FeatureError(f"{name}={value!r}: boolean node, use true or false")
        return value
    if itype == _TYPE.intfIString:
        if not isinstance(value, str):
            raise FeatureError(f"{name}={value!r}: string node")
        return value
    raise FeatureError(f"{name}: a {info['type']} node cannot be set from a config")


def _write(node: Any, value: Any) -> None:
    """One checked write; device-side rejections become FeatureError."""
    name = node.node.name
    try:
        if node.node.principal_interface_type == _TYPE.intfICommand:
            node.execute()
        else:
            node.value = value
    except genapi.GenericException as e:
        info = describe(node)
        raise FeatureError(f"{name}={value!r} rejected by the camera ({allowed(info)}): {e}") from e


def _fit_offset(node_map: Any, size_node: Any, value: Any, undo: list) -> None:
    """Drop OffsetX/OffsetY to its minimum when a larger Width/Height needs the room."""
    offset_name = {"Width": "OffsetX", "Height": "OffsetY"}.get(size_node.node.name)
    if offset_name is None or not isinstance(value, int) or value <= size_node.max:
        return
    try:
        offset = node_map.get_node(offset_name)
    except genapi.LogicalErrorException:
        return
    if offset.get_access_mode() == genapi.EAccessMode.RW and offset.value != offset.min:
        undo.append((offset, offset.value))
        _write(offset, offset.min)


def apply_features(node_map: Any, features: Mapping[str, Any]) -> dict[str, Any]:
    """Write `features` in a working order; return the values read back.

    All or nothing: on the first error every node already written is restored (best
    effort, reverse order) and a FeatureError is raised naming node, value and range.
    """
    for name, value in features.items():  # cheap pass: unknown names fail before any write
        get_node(node_map, name, value)
    undo: list[tuple[Any, Any]] = []
    result: dict[str, Any] = {}
    try:
        for name, value in ordered(features):
            node = get_node(node_map, name, value)
            if node.node.principal_interface_type == _TYPE.intfIInteger:
                _fit_offset(node_map, node, value, undo)
            checked = check_value(node, value)
            is_command = node.node.principal_interface_type == _TYPE.intfICommand
            if not is_command:
                previous = node.value
                if previous == checked:
                    result[name] = previous
                    continue
                undo.append((node, previous))
            _write(node, checked)
            result[name] = True if is_command else node.value
    except FeatureError:
        for node, previous in reversed(undo):
            try:
                node.value = previous
            except genapi.GenericException:
                pass  # restoring is best effort; the original error is what matters
        raise
    return result
