"""The base of every config model (station, recipe, detector parameters)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base for every config model: a misspelt key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")
