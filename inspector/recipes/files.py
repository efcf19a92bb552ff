"""All-or-nothing edits of a recipe folder, for the `inspector recipe` verbs.

An edit stages every new file under a temporary name beside its target, then renames
them into place (new images first, recipe.yaml, the prompt bank last, so that a
service reading the folder meanwhile sees a valid recipe at every step), and finally
runs a check (load_recipe). If staging, renaming or the check fails, every target gets
its old bytes back and new files are removed: a bad edit changes nothing.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

from ruamel.yaml import YAML

from inspector.core.atomic import temp_beside


class RecipeEdit:
    """Staged writes to a recipe folder; use as a context manager, call commit()."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._staged: list[tuple[Path, Path]] = []  # (temporary file, target)
        self._removals: list[Path] = []

    def __enter__(self) -> RecipeEdit:
        return self

    def __exit__(self, *exc) -> None:
        for tmp, _ in self._staged:  # never committed: drop what was staged
            tmp.unlink(missing_ok=True)
        self._staged = []

    def write_bytes(self, target: Path, data: bytes) -> None:
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(target)  # keeps the target's mode, else follows the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self._staged.append((Path(tmp), target))

    def write_json(self, target: Path, doc: dict) -> None:
        self.write_bytes(target, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))

    def remove(self, target: Path) -> None:
        """Delete `target` on commit (restored if the commit fails)."""
        self._removals.append(Path(target))

    def commit(self, check: Callable[[], object] | None = None) -> None:
        """Rename everything into place in staging order, then run `check`; undo on error."""
        undo: list[tuple[Path, bytes | None]] = []
        try:
            for tmp, target in self._staged:
                undo.append((target, target.read_bytes() if target.exists() else None))
                os.replace(tmp, target)
            for target in self._removals:
                if target.exists():
                    undo.append((target, target.read_bytes()))
                    target.unlink()
            if check is not None:
                check()
        except BaseException:
            for target, old in reversed(undo):
                if old is None:
                    target.unlink(missing_ok=True)
                else:
                    target.write_bytes(old)
            raise
        finally:
            for tmp, _ in self._staged:
                tmp.unlink(missing_ok=True)
            self._staged = []


def _yaml_rt(text: str) -> YAML:
    """A round-trip YAML that keeps comments and the file's own list indentation."""
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 100
    seq, offset = 4, 2  # the style of recipes/demo
    lines = text.splitlines()
    for prev, line in zip(lines, lines[1:], strict=False):
        stripped = line.lstrip(" ")
        if stripped.startswith("- ") and prev.rstrip().endswith(":"):
            parent = len(prev) - len(prev.lstrip(" "))
            offset = len(line) - len(stripped) - parent
            seq = offset + 2
            break
    y.indent(mapping=2, sequence=seq, offset=offset)
    return y


def edit_yaml(text: str, change: Callable[[dict], None]) -> str:
    """`text` with `change(doc)` applied, comments and layout kept (ruamel.yaml)."""
    y = _yaml_rt(text)
    doc = y.load(text)
    change(doc)
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()
