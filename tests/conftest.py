"""Shared fixtures (helpers that tests import live in tests/helpers/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.files import write_recipe


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    return write_recipe(tmp_path / "recipes" / "test-part")
