"""JSON Schemas of every MQTT payload, loaded from the package (importlib.resources).

`status` and `camera/<cam>/status` carry plain UTF-8 text (a retained word that any
dashboard can show), `camera/<cam>/thumbnail` a JPEG; every other topic carries a JSON
object.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from jsonschema import Draft202012Validator

NAMES = ("result", "plc", "status", "state", "camera_status", "stats", "cmd_recipe",
         "cmd_recipe_ack", "cmd_trigger", "cmd_trigger_ack", "ready", "cmd_thresholds",
         "cmd_thresholds_ack", "spb_sync", "spb_command_ack")
TEXT_PAYLOADS = frozenset({"status", "camera_status"})
# binary payloads have no JSON Schema; `first_error` checks their format instead
JPEG_PAYLOADS = frozenset({"camera_thumbnail"})


@cache
def load(name: str) -> dict:
    """The schema document for payload `name` (one of NAMES)."""
    if name not in NAMES:
        raise KeyError(f"no schema named {name!r}; known: {', '.join(NAMES)}")
    text = resources.files("inspector.outputs.schemas").joinpath(f"{name}.schema.json").read_text(
        encoding="utf-8")
    return json.loads(text)


@cache
def validator(name: str) -> Draft202012Validator:
    """Validator for the payload schema `name`; the schema itself is checked first. Cached."""
    schema = load(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def decode(name: str, payload: bytes) -> object:
    """The payload as the schema sees it: text for status topics, parsed JSON otherwise."""
    if name in JPEG_PAYLOADS:
        return bytes(payload)
    text = payload.decode("utf-8")
    return text if name in TEXT_PAYLOADS else json.loads(text)


def first_error(name: str, doc: object) -> str | None:
    """A one-line description of the most relevant schema error, or None if valid."""
    from jsonschema.exceptions import best_match

    if name in JPEG_PAYLOADS:
        ok = isinstance(doc, bytes) and doc[:3] == b"\xff\xd8\xff" and doc[-2:] == b"\xff\xd9"
        return None if ok else "not a complete JPEG (no FFD8FF start or FFD9 end)"
    err = best_match(validator(name).iter_errors(doc))
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path)
    return f"{where}: {err.message}" if where else err.message
