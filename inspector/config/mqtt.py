"""Configuration of the MQTT link (the `mqtt:` section of the station config).

The password never lives in the model: only where to read it from (a file or an
environment variable), so neither `repr`, `model_dump` nor a log line can leak it.
Relative TLS and password paths are resolved against the config file's folder; a
relative outbox path is resolved by the sink against the station's state folder.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from inspector.core.errors import InspectorError
from inspector.core.strict import StrictModel

LEVEL_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class TlsConfig(StrictModel):
    """Server verification with `ca`; a client certificate needs both `cert` and `key`."""

    ca: Path | None = None  # None: the system trust store
    cert: Path | None = None
    key: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls.cert and tls.key go together: give both or neither")
        return self


class OutboxConfig(StrictModel):
    """The durable outbox; caps drop the oldest rows, each drop counted and logged."""

    path: Path = Path("outbox.sqlite")  # relative: under the station's state folder
    max_rows: Annotated[int, Field(ge=10)] = 200_000
    max_age_s: Annotated[float, Field(gt=0)] = 7 * 24 * 3600.0
    # FULL: a result survives power loss once emit() returned; NORMAL: survives a crash only.
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # While a commit fails (disk full, I/O error) results wait in memory, in order, and are
    # retried every retry_s; when pending_max are waiting, emit() holds the result thread
    # (frames are then dropped at acquisition, counted) rather than drop a result.
    pending_max: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    retry_s: Annotated[float, Field(gt=0, le=60)] = 1.0


class SparkplugConfig(StrictModel):
    """Sparkplug B identity: `spBv1.0/<group_id>/<type>/<edge_node_id>[/<device_id>]`.

    Left out, the group is the site (with the enterprise before it when set) and the edge
    node is `<line>-<station>` (with the area before it when set), so that two stations of
    one plant never share an edge node id.
    """

    group_id: Annotated[str, Field(pattern=LEVEL_RE.pattern)] | None = None
    edge_node_id: Annotated[str, Field(pattern=LEVEL_RE.pattern)] | None = None
    device_id: Annotated[str, Field(pattern=LEVEL_RE.pattern)] = "vision"
    # where bdSeq is kept across restarts (relative: under the station's state folder)
    state_file: Path = Path("sparkplug.json")


class ThumbnailConfig(StrictModel):
    """A small JPEG of each part (its overlay) retained on `camera/<cam>/thumbnail`, for
    dashboards that cannot reach the station page. Off by default; made on a worker thread
    from a copy of the frame, so the result thread never waits for it (a part that comes
    while the previous one is still being encoded replaces it)."""

    enabled: bool = False
    max_side: Annotated[int, Field(ge=32, le=1024)] = 320  # px, the longer side
    max_bytes: Annotated[int, Field(ge=2048, le=262_144)] = 32_768  # quality drops, then size
    quality: Annotated[int, Field(ge=30, le=95)] = 75
    only_ng: bool = False  # only rejected parts


class MqttConfig(StrictModel):
    """Broker, TLS, credentials (by reference only), reconnect and in-flight limits, outbox."""

    enabled: bool = True
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    client_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    protocol: Literal[5, 311] = 5  # MQTT 5 (reason codes on PUBACK) or 3.1.1
    keepalive: Annotated[int, Field(ge=5, le=3600)] = 30
    prefix: str = "inspector/v1"
    tls: TlsConfig | None = None
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    reconnect_min_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    max_inflight: Annotated[int, Field(ge=2, le=1000)] = 100  # unacked QoS 1 publishes
    # on close(): time to publish what is left; the rest stays in the outbox for next start.
    # Short by default so that SIGTERM ends the service within 5 s.
    drain_timeout_s: Annotated[float, Field(ge=0, le=300)] = 1.0
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    # v1: the JSON topics of contract v1 (docs/DESIGN.md); sparkplug: Sparkplug B 3.0 (an
    # edge node with one device; NBIRTH/DBIRTH, DDATA per part, NDEATH as the will)
    mode: Literal["v1", "sparkplug"] = "v1"
    sparkplug: SparkplugConfig = Field(default_factory=SparkplugConfig)
    thumbnail: ThumbnailConfig = Field(default_factory=ThumbnailConfig)

    @field_validator("prefix")
    @classmethod
    def _prefix_levels(cls, v: str) -> str:
        levels = v.split("/")
        bad = [lvl for lvl in levels if not LEVEL_RE.match(lvl)]
        if bad:
            raise ValueError(
                f"prefix {v!r}: every topic level must match [A-Za-z0-9_-]{{1,64}}; bad: {bad}")
        return v

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> MqttConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        if (self.password_file or self.password_env) and not self.username:
            raise ValueError("a password needs a username")
        if self.thumbnail.enabled and self.mode == "sparkplug":
            raise ValueError("thumbnail.enabled: thumbnails are a topic of contract v1; in "
                             "Sparkplug mode Result/ImageUri names the image")
        file = (info.context or {}).get("file")
        base = Path(file).parent if file else None
        if base is not None:
            def rel(p: Path | None) -> Path | None:
                return p if p is None or p.is_absolute() else base / p

            self.password_file = rel(self.password_file)
            if self.tls is not None:
                self.tls.ca, self.tls.cert, self.tls.key = (
                    rel(self.tls.ca), rel(self.tls.cert), rel(self.tls.key))
        return self

    def effective_client_id(self, site: str, line: str, station: str) -> str:
        """Stable across restarts (the broker replaces a stale session), unique per station."""
        return self.client_id or f"inspector-{site}-{line}-{station}"

    def read_password(self) -> str | None:
        """Read the secret now (each connect attempt, so a fixed file takes effect).

        Raises PasswordError naming the source, never the value.
        """
        if self.password_file is not None:
            try:
                text = self.password_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise PasswordError(
                    f"password_file {self.password_file}: {exc.strerror or exc}") from None
            return text.rstrip("\r\n")
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise PasswordError(f"password_env {self.password_env}: variable is not set")
            return value
        return None

    def password_source(self) -> str:
        """Where the password comes from, for error messages."""
        if self.password_file is not None:
            return f"password_file {self.password_file}"
        if self.password_env is not None:
            return f"password_env {self.password_env}"
        return "no password"


class PasswordError(InspectorError, RuntimeError):
    """The configured password source could not be read."""
