"""Topic names of MQTT contract v1: `<prefix>/<site>/<line>/<station>/<name>`.

With the optional ISA-95 levels of the station identity the root is
`<prefix>/<enterprise>/<site>/<area>/<line>/<station>/` (each of the two only when set);
without them it is the v1 layout, unchanged.

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
    def for_station(cls, prefix: str, site: str, line: str, station: str,
                    enterprise: str | None = None, area: str | None = None) -> Topics:
        for i, lvl in enumerate(prefix.split("/")):
            check_level(f"prefix level {i}", lvl)
        levels = [("enterprise", enterprise), ("site", site), ("area", area), ("line", line),
                  ("station", station)]
        path = [check_level(what, value) for what, value in levels if value is not None]
        return cls(f"{prefix}/{'/'.join(path)}/")

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

    @property
    def cmd_trigger(self) -> str:
        return self.root + "cmd/trigger"

    @property
    def cmd_trigger_ack(self) -> str:
        return self.root + "cmd/trigger/ack"

    @property
    def cmd_thresholds(self) -> str:
        return self.root + "cmd/thresholds"

    @property
    def cmd_thresholds_ack(self) -> str:
        return self.root + "cmd/thresholds/ack"

    @property
    def ready(self) -> str:
        return self.root + "ready"

    @property
    def spb_sync(self) -> str:
        """Sparkplug mode: the QoS 1 message that confirms the DDATA before it."""
        return self.root + "spb/sync"

    def camera_status(self, camera: str) -> str:
        return f"{self.root}camera/{check_level('camera', camera)}/status"

    def camera_thumbnail(self, camera: str) -> str:
        """The last part's JPEG (mqtt.thumbnail), retained."""
        return f"{self.root}camera/{check_level('camera', camera)}/thumbnail"

    def schema_name(self, topic: str) -> str | None:
        """Which payload schema a topic of this station carries (None: not ours)."""
        if not topic.startswith(self.root):
            return None
        rest = topic[len(self.root):]
        fixed = {"status": "status", "state": "state", "plc": "plc", "result": "result",
                 "stats": "stats", "ready": "ready", "cmd/recipe": "cmd_recipe",
                 "cmd/recipe/ack": "cmd_recipe_ack", "cmd/trigger": "cmd_trigger",
                 "cmd/trigger/ack": "cmd_trigger_ack", "cmd/thresholds": "cmd_thresholds",
                 "cmd/thresholds/ack": "cmd_thresholds_ack", "spb/sync": "spb_sync"}
        if rest in fixed:
            return fixed[rest]
        parts = rest.split("/")
        if len(parts) == 3 and parts[0] == "camera" and parts[2] == "status":
            return "camera_status"
        if len(parts) == 3 and parts[0] == "camera" and parts[2] == "thumbnail":
            return "camera_thumbnail"
        return None
