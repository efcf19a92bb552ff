"""GenTL producers, device selection and acquirer lifetime on top of harvesters.

Why a shared hub: a GenTL producer can be opened once per process. A second harvesters
`Harvester` that loads the same .cti sees no devices (measured with viky.cti), so every
camera of a station that uses the same producers shares one Harvester, reference-counted.
`Harvester.update()` destroys every acquirer of that Harvester, so a reconnect refreshes
device lists per interface instead while other cameras are open.

Two harvesters behaviours are contained here (harvesters 1.4.3, read in its source):
- `ImageAcquirer.__init__` installs its own SIGINT handler when it runs on the main
  thread (genicam/harvesters#463: Ctrl+C stops working) and never restores it; the
  handler also keeps the acquirer alive. `create_acquirer` puts the previous handler back.
- `ImageAcquirer.destroy()` leaves a `weakref.finalize` holding the acquirer and leaves
  it in `Harvester.image_acquirers`; its genicam `ChunkAdapter` has the same kind of
  finalizer and pins the whole node map (about 0.2-0.4 MB native memory per acquirer);
  destroy can also raise half-way when the device handle is already gone. `dispose`
  exits the acquirer through its context manager (which runs and detaches the
  finalizer), runs the chunk adapter's finalizer, closes the device if destroy failed,
  and unlists the acquirer.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvesters.core import DeviceInfo, Harvester, ImageAcquirer, ParameterKey, ParameterSet

from inspector.acquisition.base import SourceError

log = logging.getLogger(__name__)

ENV_VAR = "GENICAM_GENTL64_PATH"
SEARCH_KEYS = ("serial_number", "user_defined_name", "model")
ENUMERATION_TIMEOUT_MS = 500  # per interface; GigE discovery needs a few hundred ms


def find_ctis(cti: Path | str | None = None) -> list[Path]:
    """The producer files to load: `cti` itself, else every .cti on GENICAM_GENTL64_PATH."""
    if cti is not None:
        path = Path(cti)
        if not path.is_file():
            raise SourceError(f"GenTL producer {path} does not exist")
        return [path.resolve()]
    found: list[Path] = []
    for folder in filter(None, os.environ.get(ENV_VAR, "").split(os.pathsep)):
        path = Path(folder)
        candidates = [path] if path.is_file() else sorted(path.glob("*.cti"))
        found += [c.resolve() for c in candidates if c.suffix == ".cti" and c.is_file()]
    if not found:
        raise SourceError(
            f"no GenTL producer: set `cti` in the config or put .cti files on {ENV_VAR}"
        )
    return list(dict.fromkeys(found))


@contextmanager
def keep_sigint() -> Iterator[None]:
    """Restore the process's SIGINT handler if harvesters replaced it inside the block."""
    on_main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT) if on_main else None
    try:
        yield
    finally:
        if before is not None and signal.getsignal(signal.SIGINT) is not before:
            signal.signal(signal.SIGINT, before)


@dataclass(frozen=True)
class DeviceEntry:
    """What `inspector cameras` prints, and what selection errors list."""

    vendor: str | None
    model: str | None
    serial_number: str | None
    user_defined_name: str | None
    id_: str | None
    tl_type: str | None
    access_status: int | None
    producer: str

    def __str__(self) -> str:
        return (
            f"{self.vendor} {self.model} serial={self.serial_number!r} "
            f"user_defined_name={self.user_defined_name!r} id={self.id_!r} ({self.producer})"
        )


def _info(info: DeviceInfo, key: str) -> Any:
    """One DeviceInfo property; producers may not implement every one."""
    try:
        return getattr(info, key)
    except Exception:  # GenTL raises its own family, or AttributeError
        return None


class ProducerHub:
    """One Harvester per set of producer files, shared by the cameras that use it."""

    _hubs: dict[tuple[str, ...], ProducerHub] = {}
    _hubs_lock = threading.Lock()

    def __init__(self, ctis: list[Path]) -> None:
        self.ctis = ctis
        self.lock = threading.RLock()  # serialises harvesters calls on shared lists
        self.refs = 0
        self.harvester = Harvester(
            config=ParameterSet({ParameterKey.LOGGER: logging.getLogger("harvesters")})
        )
        self.harvester.timeout_for_update = ENUMERATION_TIMEOUT_MS
        for cti in ctis:
            self.harvester.add_file(str(cti))
        self.harvester.update()

    @classmethod
    def acquire(cls, ctis: list[Path]) -> ProducerHub:
        """The hub for these producer files, created on first use."""
        key = tuple(str(c) for c in ctis)
        with cls._hubs_lock:
            hub = cls._hubs.get(key)
            if hub is None:
                hub = cls._hubs[key] = cls(ctis)
            hub.refs += 1
            return hub

    def release(self) -> None:
        """Drop one reference; the last one resets the Harvester and closes producers."""
        with self._hubs_lock:
            self.refs -= 1
            if self.refs > 0:
                return
            self._hubs.pop(tuple(str(c) for c in self.ctis), None)
        with self.lock:
            gc.collect()  # native objects of disposed acquirers go before the producer
            try:
                self.harvester.reset()
            except Exception as e:  # a lost device must not block shutdown
                log.warning("harvester reset failed: %s", e)

    def devices(self) -> list[DeviceEntry]:
        """Every device the producers currently list."""
        with self.lock:
            out = []
            for info in self.harvester.device_info_list:
                producer = "?"
                try:
                    producer = Path(info.parent.parent.parent.path_name).name
                except Exception:  # best effort label only
                    producer = ", ".join(c.name for c in self.ctis)
                out.append(
                    DeviceEntry(
                        vendor=_info(info, "vendor"),
                        model=_info(info, "model"),
                        serial_number=_info(info, "serial_number"),
                        user_defined_name=_info(info, "user_defined_name"),
                        id_=_info(info, "id_"),
                        tl_type=_info(info, "tl_type"),
                        access_status=_info(info, "access_status"),
                        producer=producer,
                    )
                )
            return out

    def refresh(self) -> None:
        """Re-enumerate devices (after an unplug) without destroying other cameras.

        Per interface (GenTL IFUpdateDeviceList): `Harvester.update()` would destroy every
        acquirer of this hub and re-open the producers, which also leaks native memory
        (about 0.16 MB per call with viky.cti). It is used only when no device is listed.
        """
        with self.lock:
            if not self.harvester.device_info_list and not self.harvester.image_acquirers:
                self.harvester.update()
                return
            interfaces = {id(i.parent): i.parent for i in self.harvester.device_info_list}
            fresh: list[DeviceInfo] = []
            for iface in interfaces.values():
                iface.module.update_device_info_list(ENUMERATION_TIMEOUT_MS)
                fresh += [DeviceInfo(module=m, parent=iface) for m in iface.module.device_info_list]
            self.harvester.device_info_list[:] = fresh

    def select(self, search: dict[str, str | None]) -> DeviceInfo:
        """The one device matching every given key; otherwise an error listing devices."""
        keys = {k: v for k, v in search.items() if v is not None}
        with self.lock:
            infos = list(self.harvester.device_info_list)
            matches = [i for i in infos if all(_info(i, k) == v for k, v in keys.items())]
            if len(matches) == 1:
                return matches[0]
            listing = "; ".join(str(d) for d in self.devices()) or "none"
            wanted = ", ".join(f"{k}={v!r}" for k, v in keys.items()) or "no key"
            if not matches:
                raise SourceError(f"no GenICam device matches {wanted}; available: {listing}")
            raise SourceError(
                f"{len(matches)} GenICam devices match {wanted}; add serial_number or "
                f"user_defined_name to pick one; available: {listing}"
            )

    def create_acquirer(self, search: dict[str, str | None], num_buffers: int) -> ImageAcquirer:
        """Open the selected device, keeping the service's SIGINT handler installed."""
        with self.lock:
            info = self.select(search)
            with keep_sigint():
                ia = self.harvester.create(info)
            try:
                ia.num_buffers = max(num_buffers, ia.min_num_buffers)
            except Exception:
                self.dispose(ia)
                raise
            return ia

    def dispose(self, ia: ImageAcquirer) -> None:
        """Stop and release an acquirer completely; never raises."""
        with self.lock:
            try:
                ia.remove_callbacks()
            except Exception as e:  # best effort: the device may be gone already
                log.debug("acquirer: removing callbacks failed: %s", e)
            chunk_adapter = getattr(ia, "_chunk_adapter", None)
            failed = False
            try:
                ia.__exit__(None, None, None)  # runs + detaches the weakref finalizer
            except Exception as e:
                failed = True  # device already gone: close what is left
                log.info("acquirer destroy failed (%s); closing the device handle", e)
                try:
                    if ia.device is not None and ia.device.is_open():
                        ia.device.module.close()
                except Exception as e2:  # best effort, as above
                    log.debug("acquirer: closing the device handle failed: %s", e2)
            if chunk_adapter is not None:  # its finalizer pins it and the node map
                try:
                    chunk_adapter._finalizer()
                except Exception as e:  # best effort: release what can be released
                    log.debug("acquirer: chunk adapter finalizer failed: %s", e)
            try:
                self.harvester.image_acquirers.remove(ia)
            except ValueError:
                pass
            if failed:
                # The acquirer sits in reference cycles; a half-destroyed one must be
                # collected while the producer is still open, or its native data stream
                # aborts the process when the final GC at exit runs it after the close.
                del ia
                gc.collect()
