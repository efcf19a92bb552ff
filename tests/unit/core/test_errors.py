"""Every exception class Inspector defines derives from core.errors.InspectorError, so the
CLI and the service can tell a refusal meant for the user apart from a bug."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import inspector
from inspector.core.errors import InspectorError
from inspector.core.validation import InvalidFile

# control flow, not an error: a finite source has delivered its last frame
NOT_ERRORS = {"inspector.acquisition.base.EndOfStream"}
# modules that need NVIDIA hardware or the training extra to import
SKIP = ("tensorrt", "cuda_kernel", "gpu_search", "simcheck", "training", "torch_ref")


def test_every_inspector_exception_is_an_inspector_error():
    found = []
    for m in pkgutil.walk_packages(inspector.__path__, "inspector."):
        if any(s in m.name for s in SKIP) or m.name.endswith(".__main__"):
            continue  # (__main__ runs the CLI when imported)
        mod = importlib.import_module(m.name)
        for name, obj in vars(mod).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == mod.__name__):
                found.append(f"{mod.__name__}.{name}")
                if f"{mod.__name__}.{name}" not in NOT_ERRORS:
                    assert issubclass(obj, InspectorError), f"{mod.__name__}.{name}"
    assert len(found) >= 15  # the walk did see the package's errors
    # the built-in each error always was is kept: old `except ValueError` still works
    assert issubclass(InvalidFile, ValueError)
