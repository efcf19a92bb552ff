"""The base of every config model (station, recipe, detector parameters)."""

from __future__ import annotations

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _yaml_word(v: object) -> object:
    """YAML 1.1 reads a bare `on` / `off` as true / false; a field that takes the words
    (a Literal with "on" or "off") means the words."""
    return ("on" if v else "off") if isinstance(v, bool) else v


# Annotated[Literal["off", ...], YAML_WORD]: `mode: off` in a YAML file is "off", not false
YAML_WORD = BeforeValidator(_yaml_word)


class StrictModel(BaseModel):
    """Base for every config model: a misspelt key is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")
