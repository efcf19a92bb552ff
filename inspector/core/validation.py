"""Load YAML data files and turn validation failures into file:line: field messages.

Configs and recipes are data: parsed with `yaml.safe_load` semantics, validated with
pydantic, and every error names the file, the line and the dotted field path, so an
integrator can fix all problems in one pass.

Hostile or careless files are reported, never crash or exhaust the process: a file over
MAX_YAML_BYTES, non-UTF-8 or binary bytes (named by line), and aliases that would expand
to more than MAX_YAML_NODES nodes (a "billion laughs" bomb) are errors found before any
value is built; an error message quotes at most a short, bounded repr of the input.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from inspector.core.errors import InspectorError

M = TypeVar("M", bound=BaseModel)
MAX_YAML_BYTES = 4 * 1024 * 1024
MAX_YAML_NODES = 200_000  # after alias expansion
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: faster
_REPR = reprlib.Repr()  # bounded repr for messages (keyword arguments need Python 3.12)
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple = 2, 4, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 50, 50, 40


class InvalidFile(InspectorError, ValueError):
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
        with open(path, "rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise InvalidFile(path, [f"{path}: cannot read: {exc.strerror or exc}"]) from exc
    return parse_yaml(path, raw)


def parse_yaml(path: Path, raw: bytes) -> tuple[object, yaml.Node | None]:
    """`raw` as YAML, within the limits above; raises InvalidFile naming file:line."""
    if len(raw) > MAX_YAML_BYTES:
        raise InvalidFile(path, [f"{path}: larger than {MAX_YAML_BYTES} bytes; not a config"])
    nul = raw.find(b"\0")
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise InvalidFile(path, [f"{path}:{line}: binary data (NUL byte); expected a YAML "
                                 "text file"])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InvalidFile(path, [f"{path}:{line}: not UTF-8 (byte 0x{raw[exc.start]:02x}); "
                                 "save the file as UTF-8"]) from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                _check_expansion(path, node)
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise InvalidFile(path, [f"{where}: YAML syntax error: {_REPR.repr(str(exc))[1:-1]}"
                                 ]) from None
    except RecursionError:
        raise InvalidFile(path, [f"{path}: YAML nested too deeply"]) from None
    return data, node


def _check_expansion(path: Path, root: yaml.Node) -> None:
    """Raise InvalidFile if aliases would make the document larger than MAX_YAML_NODES;
    names the line of the smallest node that is over the limit (the bomb's alias)."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        sizes[key] = 1  # a cycle counts once (SafeLoader rejects recursive aliases anyway)
        n = 1
        if isinstance(node, yaml.SequenceNode):
            n += sum(size(v) for v in node.value)
        elif isinstance(node, yaml.MappingNode):
            n += sum(size(k) + size(v) for k, v in node.value)
        sizes[key] = min(n, 10 * MAX_YAML_NODES)
        return sizes[key]

    if size(root) <= MAX_YAML_NODES:
        return
    node = root
    while True:  # descend to the deepest node still over the limit
        children = (node.value if isinstance(node, yaml.SequenceNode) else
                    [v for kv in node.value for v in kv] if isinstance(node, yaml.MappingNode)
                    else [])
        big = next((c for c in children if sizes.get(id(c), 0) > MAX_YAML_NODES), None)
        if big is None:
            break
        node = big
    raise InvalidFile(path, [f"{path}:{node.start_mark.line + 1}: YAML aliases expand to "
                             f"more than {MAX_YAML_NODES} values (an alias bomb?)"])


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
            text = _REPR.repr(err["input"])  # bounded: never re-serialise a huge input
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
