"""Serve the station page from the running service's process, on its own thread.

uvicorn runs its event loop on a thread named `web`; `stop()` asks it to finish and joins
it within the service's stop deadline. Why in-process: the page shows the frames the
service holds in memory and switches the recipe the service runs, with no second copy of
either and no IPC to keep in step. Off unless the station config says `web.enabled`.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from inspector.config.station import StationConfig
from inspector.runtime.service import Service
from inspector.web.app import Station, create_app
from inspector.web.audit import AuditLog
from inspector.web.live import LiveView
from inspector.web.review import ReviewStore
from inspector.web.teach import Teacher
from inspector.web.users import UserStore

log = logging.getLogger(__name__)


class WebServer:
    """The station page of one Service: build with `attach`, then `start()` / `stop()`."""

    def __init__(self, station: Station) -> None:
        self.station = station
        web = station.cfg.web
        self._sock = socket.create_server((web.host, web.port))  # bound now: port errors early
        self.port = self._sock.getsockname()[1]
        self.scheme = "https" if web.tls_cert else "http"
        config = uvicorn.Config(create_app(station), log_level="warning", access_log=False,
                                ssl_certfile=str(web.tls_cert) if web.tls_cert else None,
                                ssl_keyfile=str(web.tls_key) if web.tls_key else None,
                                timeout_graceful_shutdown=1, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="web", daemon=True)

    @classmethod
    def attach(cls, service: Service, cfg: StationConfig) -> WebServer:
        """The page for `service`: its live view observes every finished part."""
        state = cfg.storage.state_dir
        live = LiveView(cfg.web.recent_parts)
        service.observers.append(live.observe)
        users_file = cfg.storage.resolve(cfg.web.users_file)
        assert users_file is not None
        station = Station(service, cfg, UserStore(users_file), live,
                          AuditLog(state / "web-audit.jsonl"),
                          Teacher(service, live, state / "teach"),
                          ReviewStore(state / "review"))
        return cls(station)

    @property
    def url(self) -> str:
        """Where a browser finds the page."""
        host = self.station.cfg.web.host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"{self.scheme}://{host}:{self.port}/"

    def start(self) -> None:
        """Serve on the thread `web`; returns once it accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError("the station page did not start within 10 s")
            time.sleep(0.02)
        if not self._server.started:
            raise RuntimeError("the station page failed to start (see the log)")
        if not self.station.users.load():
            log.warning("station page at %s: no users yet; add one with `inspector user add "
                        "NAME --role engineer --config STATION.yaml`", self.url)
        log.info("station page at %s", self.url)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except Exception:
            log.exception("the station page stopped")

    def is_alive(self) -> bool:
        """Whether the page is still being served."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 3.0) -> None:
        """Finish open requests (event streams end) and join the thread."""
        self._server.should_exit = True
        self._server.force_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._sock.close()
