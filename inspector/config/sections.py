"""The station config's `archive:`, `supervisor:`, `health:`, `web:` and `opcua:` sections.

They live here, not beside the archive, supervisor and health code that reads them, so
that loading a station config (`inspector validate`) imports no stage at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from inspector.core.strict import StrictModel


class ArchiveConfig(StrictModel):
    """The `archive:` section of the station config."""

    enabled: bool = True
    dir: Path = Path("archive")  # relative: under storage.state_dir
    ng_images: bool = True  # the NG frame as captured
    ng_overlays: bool = True  # the NG frame with its defects drawn (the result's image_uri)
    ok_sample_every: Annotated[int, Field(ge=0)] = 0  # keep every Nth OK image; 0: none
    format: Literal["png", "jpg"] = "png"
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 90
    max_age_days: Annotated[float, Field(gt=0)] | None = 30.0  # None: no age limit
    # free-disk watermark: the larger of the two; below it the oldest files are deleted,
    # and when nothing of the archive is left to delete, writes are dropped
    min_free_mb: Annotated[float, Field(ge=0)] = 1024.0
    min_free_pct: Annotated[float, Field(ge=0, le=90)] = 5.0
    queue: Annotated[int, Field(ge=1, le=4096)] = 32  # jobs waiting for the archive thread
    prune_interval_s: Annotated[float, Field(gt=0)] = 300.0

    @model_validator(mode="after")
    def _something_to_keep(self) -> ArchiveConfig:
        if self.enabled and not (self.ng_images or self.ng_overlays or self.ok_sample_every):
            raise ValueError("archive keeps nothing: set enabled: false, or keep ng_images, "
                             "ng_overlays or ok_sample_every")
        return self


class SupervisorConfig(StrictModel):
    """The `supervisor:` section: how long a stage may go without progress."""

    acq_stuck_s: Annotated[float, Field(gt=0)] = 30.0  # one grab() call may not take longer
    infer_stuck_s: Annotated[float, Field(gt=0)] = 120.0  # one frame in inference
    emit_stuck_s: Annotated[float, Field(gt=0)] = 60.0  # one result in the sinks
    frame_timeout_s: Annotated[float, Field(gt=0)] = 30.0  # free-running camera without frames
    camera_restarts: Annotated[int, Field(ge=0)] = 3  # in a row before giving up
    publisher_restarts: Annotated[int, Field(ge=0)] = 5  # per run
    outbox_fault_s: Annotated[float, Field(gt=0)] = 60.0  # commits failing: watchdog withheld
    sink_fault_s: Annotated[float, Field(gt=0)] = 60.0  # a sink error stays a fault this long


class HealthConfig(StrictModel):
    """The `health:` section."""

    prometheus_port: Annotated[int, Field(ge=1, le=65535)] | None = None  # None: off
    prometheus_addr: str = "127.0.0.1"  # "0.0.0.0" to let a remote Prometheus scrape


class WebConfig(StrictModel):
    """The `web:` section: the operator's station page (inspector.web), off by default.

    It binds the loopback address unless told otherwise: a page that switches recipes
    belongs on the plant network only on purpose, and then with TLS.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080  # 0: any free port (tests)
    users_file: Path = Path("users.json")  # relative: under storage.state_dir
    tls_cert: Path | None = None  # PEM certificate and key: both or neither
    tls_key: Path | None = None
    session_hours: Annotated[float, Field(gt=0, le=168)] = 12.0
    # the page's address as other machines reach it (results' image_uri points there);
    # default: scheme, host and port above (not usable off the box with 127.0.0.1/0.0.0.0)
    public_url: Annotated[str, Field(pattern=r"^https?://[^/\s]+/?$")] | None = None
    recent_parts: Annotated[int, Field(ge=1, le=1000)] = 60  # kept in memory for review

    def base_url(self) -> str | None:
        """Where other machines reach the page (None: port 0, known only once bound)."""
        if self.public_url:
            return self.public_url.rstrip("/") + "/"
        if self.port == 0:
            return None
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://{self.host}:{self.port}/"

    @model_validator(mode="after")
    def _tls_pair(self) -> WebConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        return self


class OpcUaSecurityConfig(StrictModel):
    """Signed and encrypted OPC UA (Basic256Sha256): the server's certificate, and the
    client certificates it trusts. Relative paths are under the station's state folder.

    A missing certificate or key is made on first start (self-signed, RSA 2048, for a
    year, with the server's application URI and host name): give its thumbprint (logged)
    to the PLC. A client whose certificate is not in `trusted_clients` is refused and its
    certificate is kept in `rejected_clients`, to be moved to `trusted_clients` once
    checked.
    """

    certificate: Path = Path("opcua/server-cert.der")
    private_key: Path = Path("opcua/server-key.pem")
    trusted_clients: Path = Path("opcua/trusted")
    rejected_clients: Path = Path("opcua/rejected")
    modes: Annotated[list[Literal["SignAndEncrypt", "Sign"]], Field(min_length=1)] = [
        "SignAndEncrypt"]
    allow_unencrypted: bool = False  # also keep the endpoint with security policy None


class OpcUaConfig(StrictModel):
    """The `opcua:` section: the OPC UA server for PLCs and SCADA (inspector.opcua)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 4840
    # the station page's users (web.users_file) who may log in over OPC UA, e.g. ["plc1"]
    users: list[str] = []
    allow_anonymous: bool = False  # anonymous sessions: off unless asked for
    # None: security policy None only (no signing or encryption); see OpcUaSecurityConfig
    security: OpcUaSecurityConfig | None = None
    # X509 user tokens: user name -> that user's certificate (DER or PEM; relative: under
    # the state folder); needs `security`
    certificate_users: dict[str, Path] = {}

    @model_validator(mode="after")
    def _certificate_users_need_security(self) -> OpcUaConfig:
        if self.certificate_users and self.security is None:
            raise ValueError("certificate_users needs security (a signed channel)")
        return self
