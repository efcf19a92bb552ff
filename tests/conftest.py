"""Shared fixtures (helpers that tests import live in tests/helpers/)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.files import write_recipe


@pytest.fixture
def recipe_dir(tmp_path: Path) -> Path:
    return write_recipe(tmp_path / "recipes" / "test-part")


@pytest.fixture(autouse=True)
def _no_log_handler_outlives_its_test() -> Iterator[None]:
    """A command run in-process installs the service's log handler on the test's captured
    stdout; pytest closes that stream after the test, so later tests' log records would
    end in 'I/O operation on closed file'. Remove what the test added."""
    root = logging.getLogger()
    before = list(root.handlers)
    yield
    for h in list(root.handlers):
        if h not in before:
            root.removeHandler(h)
