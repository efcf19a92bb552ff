"""Topic names of MQTT contract v1: `<prefix>/<site>/<line>/<station>/<name>`.

Every level is checked against `[A-Za-z0-9_-]`, so no wildcard, slash or space can
sneak into a topic from a station or camera name.
"""

from __future__ import annotations

from dataclasses import dataclass

from inspector.config.mqtt import LEVEL_RE


def check_level(what: str, value: str) -> str:
    """Return `value` if it is a valid single topic level, else raise ValueError."""
    if not isinstance(value, str) or not LEVEL_RE.match(value):
        raise ValueError(f"{what} {value!r}: topic levels must match [A-Za-z0-9_-]{{1,64}}")
    return value


@dataclass(frozen=True)
class Topics:
    """All topics of one station."""

    root: str  # ends with "/"

    @classmethod
    def for_station(cls, prefix: str, site: str, line: str, station: str) -> Topics:
        for i, lvl in enumerate(prefix.split("/")):
            check_level(f"prefix level {i}", lvl)
        check_level("site", site)
        check_level("line", line)
        check_level("station", station)
        return cls(f"{prefix}/{site}/{line}/{station}/")

    @property
    def status(self) -> str:
        return self.root + "status"

    @property
    def state(self) -> str:
        return self.root + "state"

    @property
    def plc(self) -> str:
        return self.root + "plc"

    @property
    def result(self) -> str:
        return self.root + "result"

    @property
    def stats(self) -> str:
        return self.root + "stats"

    @property
    def cmd_recipe(self) -> str:
        return self.root + "cmd/recipe"

    @property
    def cmd_recipe_ack(self) -> str:
        return self.root + "cmd/recipe/ack"

    def camera_status(self, camera: str) -> str:
        return f"{self.root}camera/{check_level('camera', camera)}/status"

    def schema_name(self, topic: str) -> str | None:
        """Which payload schema a topic of this station carries (None: not ours)."""
        if not topic.startswith(self.root):
            return None
        rest = topic[len(self.root):]
        fixed = {"status": "status", "state": "state", "plc": "plc", "result": "result",
                 "stats": "stats", "cmd/recipe": "cmd_recipe",
                 "cmd/recipe/ack": "cmd_recipe_ack"}
        if rest in fixed:
            return fixed[rest]
        parts = rest.split("/")
        if len(parts) == 3 and parts[0] == "camera" and parts[2] == "status":
            return "camera_status"
        return None
