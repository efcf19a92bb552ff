"""An OPC UA server for PLCs and SCADA: state, recipe, trigger, last result, counters.

asyncua serves it from the service's process on the thread `opcua`, off unless
`opcua.enabled`. The address space is a small subset of what OPC 40100 (Machine Vision)
describes, laid out so that a PLC programmer can use it by browsing, under
`Objects/Inspector` (namespace `urn:inspector:station`, string node ids `Inspector.<name>`):

- Variables: `SystemState` (String: `Ready`, `Busy` or `Error`, the MQTT `ready` state),
  `StateReason` (String), `ActiveRecipeId` (String), `ActiveRecipeRev` (Int32),
  `ActiveRecipeSha256` (String); the last result: `LastPartId`, `LastRequestId`,
  `LastVerdict` (Strings), `LastCode`, `LastDefectCount` (Int32), `LastTime` (DateTime);
  counters since start: `PartsTotal`, `PartsNG` (Int64).
- `Trigger(PartId: String) -> (Ok: Boolean, RequestId: String, Message: String)`: the
  trigger handshake, with the same checks and refusals as `cmd/trigger`.
- `SelectRecipe(RecipeId: String, Rev: Int32) -> (Ok: Boolean, Message: String)`: switch
  recipe with the same checks as `cmd/recipe` (Rev < 0: the folder's rev).
- `ResultReadyEventType`, emitted by `Inspector` on every result: PartId, RequestId,
  Verdict, Code, DefectCount.

Not implemented from OPC 40100: its state machine (Preoperational/Halted/Operational
with SingleExecution and ContinuousExecution), its Result and ResultManagement types,
ConfigurationManagement, SafetyStates and the companion types themselves.

Access: anonymous sessions are refused unless `allow_anonymous`; a user name and password
are checked against the station page's users (argon2), and only the users listed in
`opcua.users` may log in. Those are PLC accounts: each may trigger and select recipes,
whatever its role on the page, as a client allowed on `cmd/recipe` may over MQTT (the
page's roles are for people). Without `opcua.security` the only security policy is `None`
(no signing or encryption: keep the server on a trusted cell network). With it, the
endpoints are Basic256Sha256 Sign and/or SignAndEncrypt (`opcua/security.py`): the server's
own certificate (made on first start when missing), a folder of trusted client
certificates (an unknown client is refused and its certificate kept in the rejected
folder), and X509 user tokens for the users named in `opcua.certificate_users`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User as UaUser
from asyncua.crypto.permission_rules import UserRole

from inspector.config.station import StationConfig
from inspector.opcua.security import Certificates
from inspector.runtime.pipeline import Finished
from inspector.runtime.service import Service
from inspector.web.users import UserStore

log = logging.getLogger(__name__)
NAMESPACE = "urn:inspector:station"
POLL_S = 0.2  # how often state, recipe and counters are brought up to date
VARIABLES: dict[str, tuple[Any, ua.VariantType]] = {
    "SystemState": ("Error", ua.VariantType.String),
    "StateReason": ("starting", ua.VariantType.String),
    "ActiveRecipeId": ("", ua.VariantType.String),
    "ActiveRecipeRev": (0, ua.VariantType.Int32),
    "ActiveRecipeSha256": ("", ua.VariantType.String),
    "LastPartId": ("", ua.VariantType.String),
    "LastRequestId": ("", ua.VariantType.String),
    "LastVerdict": ("", ua.VariantType.String),
    "LastCode": (0, ua.VariantType.Int32),
    "LastDefectCount": (0, ua.VariantType.Int32),
    "LastTime": (datetime(1970, 1, 1, tzinfo=UTC), ua.VariantType.DateTime),
    "PartsTotal": (0, ua.VariantType.Int64),
    "PartsNG": (0, ua.VariantType.Int64),
}


class _Users:
    """asyncua's user manager: the page's users, the ones `opcua.users` names."""

    def __init__(self, store: UserStore, allowed: list[str], anonymous: bool,
                 certificates: Certificates | None = None) -> None:
        self.store, self.allowed, self.anonymous = store, set(allowed), anonymous
        self.certificates = certificates

    def get_user(self, iserver: Any, username: str | None = None,
                 password: str | None = None, certificate: Any = None) -> UaUser | None:
        if certificate is not None and username is None:
            name = self.certificates.user_of(certificate) if self.certificates else None
            if name is None:
                log.warning("opcua: a user certificate not in opcua.certificate_users: "
                            "refused")
                return None
            return UaUser(role=UserRole.User, name=name)
        if username is None:
            return UaUser(role=UserRole.User, name="anonymous") if self.anonymous else None
        if username not in self.allowed:
            log.warning("opcua: user %r is not in opcua.users: refused", username)
            return None
        user = self.store.verify(username, password or "")
        if user is None:
            log.warning("opcua: wrong password for %r: refused", username)
            return None
        return UaUser(role=UserRole.User, name=user.name)


class OpcUaServer:
    """The OPC UA face of one Service; `start()` returns once clients can connect."""

    def __init__(self, service: Service, cfg: StationConfig) -> None:
        self.service, self.cfg = service, cfg
        users_file = cfg.storage.resolve(cfg.web.users_file)
        assert users_file is not None
        self.certificates = (Certificates(cfg) if cfg.opcua.security is not None else None)
        self._users = _Users(UserStore(users_file), cfg.opcua.users, cfg.opcua.allow_anonymous,
                             self.certificates)
        self.port = cfg.opcua.port
        self.url = f"opc.tcp://{cfg.opcua.host}:{self.port}/inspector/"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._nodes: dict[str, Any] = {}
        self._event: Any = None
        self._last: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, name="opcua", daemon=True)

    def start(self) -> None:
        """Serve on the thread `opcua`; raise if the server cannot start."""
        self.service.observers.append(self._finished)
        self._thread.start()
        if not self._ready.wait(20) or self._error is not None:
            raise RuntimeError(f"the OPC UA server did not start on {self.url}: "
                               f"{self._error or 'timeout'}")
        log.info("OPC UA server at %s", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """End the server and its thread."""
        if self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        """Whether the server thread runs."""
        return self._thread.is_alive()

    # -- the server's thread -----------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start(), or logged after it
            self._error = exc
            self._ready.set()
            log.exception("the OPC UA server stopped")
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        server = Server(user_manager=self._users)
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(f"Inspector {self.cfg.station.station}")
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.certificates is None:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            await self.certificates.apply(server)
            if self.cfg.opcua.certificate_users:
                tokens.append(ua.X509IdentityToken)
        if self.cfg.opcua.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        idx = await server.register_namespace(NAMESPACE)
        obj = await server.nodes.objects.add_object(ua.NodeId("Inspector", idx),
                                                    ua.QualifiedName("Inspector", idx))
        for name, (value, vtype) in VARIABLES.items():
            self._nodes[name] = await obj.add_variable(
                ua.NodeId(f"Inspector.{name}", idx), ua.QualifiedName(name, idx),
                ua.Variant(value, vtype))
        await obj.add_method(ua.NodeId("Inspector.Trigger", idx),
                             ua.QualifiedName("Trigger", idx), self._trigger,
                             [ua.VariantType.String],
                             [ua.VariantType.Boolean, ua.VariantType.String,
                              ua.VariantType.String])
        await obj.add_method(ua.NodeId("Inspector.SelectRecipe", idx),
                             ua.QualifiedName("SelectRecipe", idx), self._select,
                             [ua.VariantType.String, ua.VariantType.Int32],
                             [ua.VariantType.Boolean, ua.VariantType.String])
        etype = await server.create_custom_event_type(
            idx, "ResultReadyEventType", ua.ObjectIds.BaseEventType,
            [("PartId", ua.VariantType.String), ("RequestId", ua.VariantType.String),
             ("Verdict", ua.VariantType.String), ("Code", ua.VariantType.Int32),
             ("DefectCount", ua.VariantType.Int32)])
        self._event = await server.get_event_generator(etype, obj)
        self._stop = asyncio.Event()
        async with server:
            self._ready.set()
            while not self._stop.is_set():
                await self._poll()
                try:
                    await asyncio.wait_for(self._stop.wait(), POLL_S)
                except TimeoutError:
                    pass

    async def _set(self, name: str, value: Any) -> None:
        if self._last.get(name) != value:
            self._last[name] = value
            await self._nodes[name].write_value(ua.Variant(value, VARIABLES[name][1]))

    async def _poll(self) -> None:
        svc = self.service
        desk, pipe = svc.trigger_desk, svc.pipeline
        if desk is not None:
            state = desk.state()
            await self._set("SystemState", state["state"].capitalize())
            await self._set("StateReason", state.get("reason", ""))
        if pipe is not None:
            ref = pipe.active.recipe.ref
            await self._set("ActiveRecipeId", ref["id"])
            await self._set("ActiveRecipeRev", int(ref["rev"]))
            await self._set("ActiveRecipeSha256", ref["sha256"])
            c = pipe.stats.counters
            await self._set("PartsTotal", int(c.get("results", 0)))
            await self._set("PartsNG", int(c.get("ng", 0)))

    async def _publish(self, doc: dict) -> None:
        # LastRequestId last: a client that watches it can read the verdict when it changes
        for name in ("LastPartId", "LastVerdict", "LastCode", "LastDefectCount", "LastTime",
                     "LastRequestId"):
            await self._set(name, doc[name])
        ev = self._event.event
        ev.PartId, ev.RequestId, ev.Verdict = doc["LastPartId"], doc["LastRequestId"], \
            doc["LastVerdict"]
        ev.Code, ev.DefectCount = doc["LastCode"], doc["LastDefectCount"]
        ev.Message = ua.LocalizedText(f"{doc['LastVerdict']} {doc['LastPartId']}")
        await self._event.trigger()

    # -- the result thread ---------------------------------------------------------------
    def _finished(self, item: Finished) -> None:
        """Every result: the last-result variables and a ResultReady event (non-blocking)."""
        r = item.result
        doc = {"LastPartId": r.part_id, "LastRequestId": r.request_id or "",
               "LastVerdict": r.verdict, "LastCode": int(r.code or 0),
               "LastDefectCount": sum(1 for d in r.defects if d.accepted),
               "LastTime": datetime.fromtimestamp(r.ts_done, UTC)}
        if self._loop.is_running() and self._event is not None:
            asyncio.run_coroutine_threadsafe(self._publish(doc), self._loop)

    # -- methods (on the server's loop) --------------------------------------------------
    async def _trigger(self, parent: Any, part_id: ua.Variant) -> list[ua.Variant]:
        rid = f"opcua-{uuid.uuid4().hex[:12]}"
        pid = str(part_id.Value or "") or None
        try:
            self.service.trigger(rid, pid)
            ok, msg = True, ""
        except (ValueError, RuntimeError) as exc:
            ok, msg = False, str(exc)
        log.info("opcua Trigger(%s): %s", pid, "accepted " + rid if ok else msg)
        return [ua.Variant(ok, ua.VariantType.Boolean), ua.Variant(rid if ok else "",
                                                                   ua.VariantType.String),
                ua.Variant(msg, ua.VariantType.String)]

    async def _select(self, parent: Any, recipe_id: ua.Variant,
                      rev: ua.Variant) -> list[ua.Variant]:
        rev_v = int(rev.Value) if rev.Value is not None and int(rev.Value) >= 0 else None
        t0 = time.monotonic()
        try:
            ref = await asyncio.get_running_loop().run_in_executor(
                None, self.service.switch_recipe, str(recipe_id.Value), rev_v)
            ok, msg = True, f"{ref['id']} rev {ref['rev']}"
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            ok, msg = False, "; ".join(getattr(exc, "errors", None) or [str(exc)])
        log.info("opcua SelectRecipe(%s, %s): %s in %.2f s", recipe_id.Value, rev_v, msg,
                 time.monotonic() - t0)
        return [ua.Variant(ok, ua.VariantType.Boolean), ua.Variant(msg, ua.VariantType.String)]
