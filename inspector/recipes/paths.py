"""Recipe paths stay inside the recipe folder."""

from __future__ import annotations

from pathlib import Path


def outside(folder: Path, rel: Path | str, base: Path | None = None) -> str | None:
    """Why `rel` does not name something inside `folder`, or None.

    Why: a recipe is closed. Every file it uses lies in its folder, so copying the folder
    copies the recipe and its sha256 covers every byte that judges a part; absolute paths,
    `..` and symlinks that lead out are refused. `rel` is relative to `base` (default
    `folder`).
    """
    rel = Path(rel)
    if rel.is_absolute():
        return f"{rel} is an absolute path; recipe paths are relative to the recipe folder"
    if ".." in rel.parts:
        return f"{rel} leads out of the recipe folder (..)"
    target = (base or folder) / rel
    try:
        target.resolve().relative_to(folder.resolve())
    except ValueError:
        return f"{rel} resolves to {target.resolve()}, outside the recipe folder"
    return None
