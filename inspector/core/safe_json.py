"""JSON from outside (MQTT commands, the control socket) with limits checked before
parsing, and error texts that are short and never carry a traceback.

Why: `json.loads` of 30,000 nested `[` raises RecursionError, which is no ValueError and
killed the thread that parsed it; and a raw traceback in an ack tells an operator nothing
while it may tell an attacker a lot.
"""

from __future__ import annotations

import json

from inspector.core.errors import InspectorError

MAX_DEPTH = 32
MAX_ERROR = 300  # characters of an error text sent back to a caller


class InputError(InspectorError, ValueError):
    """The input breaks a limit or is no JSON; the message is short and safe to send."""


def loads_limited(data: bytes, max_bytes: int, max_depth: int = MAX_DEPTH) -> object:
    """Parse `data` as UTF-8 JSON after checking its size and nesting depth."""
    if len(data) > max_bytes:
        raise InputError(f"too large ({len(data)} bytes > {max_bytes})")
    depth = _depth(data, max_depth)
    if depth > max_depth:
        raise InputError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"malformed JSON: not UTF-8 (byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        raise InputError(f"malformed JSON: {short_error(str(exc))}") from None


def _depth(data: bytes, limit: int) -> int:
    """Deepest `[`/`{` nesting outside strings; stops counting once past `limit`."""
    depth = deepest = 0
    in_str = esc = False
    for b in data:
        if in_str:
            if esc:
                esc = False
            elif b == 0x5C:  # backslash
                esc = True
            elif b == 0x22:  # quote
                in_str = False
        elif b == 0x22:
            in_str = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif b in (0x5D, 0x7D):
            depth -= 1
    return deepest


def short_error(text: str, limit: int = MAX_ERROR) -> str:
    """One line of at most `limit` characters; of a traceback, only its last line."""
    if "Traceback (most recent call last)" in text:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        text = lines[-1] if lines else "internal error"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
