"""Load YAML data files and turn validation failures into file:line: field messages.

Configs and recipes are data: parsed with `yaml.safe_load` semantics, validated with
pydantic, and every error names the file, the line and the dotted field path, so an
integrator can fix all problems in one pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class InvalidFile(ValueError):
    """A config or recipe file that cannot be used; `errors` lists every problem."""

    def __init__(self, path: Path, errors: list[str]) -> None:
        self.path = path
        self.errors = errors
        super().__init__("\n".join(errors))


def _line_of(root: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the deepest YAML node along `loc` (a pydantic error location)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    node, line = value, key.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


line_of = _line_of  # public name for callers outside this module


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def load_yaml(path: Path) -> tuple[object, yaml.Node | None]:
    """Parse a YAML file safely; returns (data, node tree) or raises InvalidFile."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidFile(path, [f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InvalidFile(path, [f"{where}: YAML syntax error: {exc}"]) from exc
    return data, node


def validate_file(path: Path, model: type[M], context: dict | None = None) -> M:
    """Load `path` and validate it against `model`; raise InvalidFile with every error."""
    path = Path(path)
    data, node = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidFile(path, [f"{path}:1: (top level): expected a mapping of keys"])
    try:
        return model.model_validate(data, context={"file": path, **(context or {})})
    except ValidationError as exc:
        raise InvalidFile(path, format_errors(path, exc, node)) from exc


def format_errors(
    path: Path, exc: ValidationError, node: yaml.Node | None, prefix: tuple = ()
) -> list[str]:
    """One `file:line: field: message (got value)` string per pydantic error.

    `prefix` is the location of the validated part inside the file, for sections that
    are validated by a model of their own.
    """
    out = []
    for err in exc.errors():
        loc = prefix + tuple(p for p in err["loc"] if not _is_union_tag(p))
        line = _line_of(node, loc)
        where = f"{path}:{line}" if line else str(path)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not allowed here; check the spelling)"
        got = ""
        if err["type"] not in ("missing", "extra_forbidden") and "input" in err:
            text = repr(err["input"])
            got = f" (got {text[:60]}{'...' if len(text) > 60 else ''})"
        out.append(f"{where}: {_field_path(loc)}: {msg}{got}")
    return out


def require_unique(names: list[str], what: str) -> None:
    """Raise ValueError naming every repeated entry (camera names, class names)."""
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"{what} must be unique; repeated: {', '.join(dup)}")


def _is_union_tag(part: object) -> bool:
    # pydantic puts the discriminator value (e.g. 'synthetic') into loc for tagged unions
    return isinstance(part, str) and part in ("synthetic", "replay", "genicam")
