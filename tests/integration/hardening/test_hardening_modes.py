"""Issue 16, deliverable 7: file modes follow the umask. Atomic writes keep the target's
mode; new files get 0666 minus the umask (0640 under the unit's UMask=0027), not
mkstemp's 0600, so the service's group can read what an admin wrote."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.core.atomic import write_bytes_atomic
from tests.helpers.files import write_recipe
from tests.helpers.hardening import cli


@pytest.fixture
def umask_0027() -> Iterator[None]:
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_atomic_writes_follow_the_umask_and_keep_modes(tmp_path: Path, umask_0027) -> None:
    new = tmp_path / "new.bin"
    write_bytes_atomic(new, b"x")
    assert mode(new) == 0o640
    kept = tmp_path / "kept.bin"
    kept.write_bytes(b"old")
    kept.chmod(0o664)
    write_bytes_atomic(kept, b"new")
    assert mode(kept) == 0o664 and kept.read_bytes() == b"new"


def test_recipe_edits_keep_modes_and_new_images_are_group_readable(tmp_path: Path,
                                                                   umask_0027) -> None:
    folder = write_recipe(tmp_path / "r")
    (folder / "recipe.yaml").chmod(0o664)
    (folder / "prompts" / "prompts.json").chmod(0o644)
    img = tmp_path / "ng.png"
    cv2.imwrite(str(img), np.full((64, 64), 100, np.uint8))
    assert cli("recipe", "add-prompt", str(folder), str(img), "--box", "10,10,8,8",
               "--class", "burr", "--plc-code", "17") == 0
    assert mode(folder / "recipe.yaml") == 0o664
    assert mode(folder / "prompts" / "prompts.json") == 0o644
    added = [p for p in (folder / "prompts").iterdir() if p.name not in
             {"prompts.json", "p0.png", "p1.png", "p2.png"}]
    assert added and all(mode(p) == 0o640 for p in added), [(p, oct(mode(p))) for p in added]
    print("NOW recipe edit under UMask=0027: recipe.yaml keeps 0664, new image 0640")
