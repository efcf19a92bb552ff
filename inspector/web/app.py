"""The station page's routes (FastAPI): live view, review, teach, recipes, login.

Pages are Jinja2 templates with a little plain JavaScript (static/app.js); live figures
arrive over Server-Sent Events. Every route that changes something goes through
`auth.require` (role and CSRF) and is written to the audit log. Long work (switching,
teaching) runs on worker threads so the event loop keeps serving the page.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import cv2
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from inspector.config.station import StationConfig
from inspector.decision.rejudge import preview
from inspector.outputs.archive import DAY_RE
from inspector.outputs.archive import KINDS as ARCHIVE_KINDS
from inspector.recipes.edit import NewClass
from inspector.recipes.rules import RuleChange
from inspector.runtime.service import Service
from inspector.web import auth
from inspector.web.audit import AuditLog
from inspector.web.live import EncodedImages, LiveView
from inspector.web.review import EVENT_ID_PATTERN, ReviewStore
from inspector.web.teach import Teacher
from inspector.web.users import User, UserStore

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
FILE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}\.(png|jpg)$")


@dataclass
class Station:
    """What the routes work on: the running service and the page's own state."""

    service: Service
    cfg: StationConfig
    users: UserStore
    live: LiveView
    audit: AuditLog
    teacher: Teacher
    reviews: ReviewStore
    images: EncodedImages = field(default_factory=EncodedImages)
    # the live snapshot as JSON, made once per part (and per SNAPSHOT_MAX_AGE_S) for all
    # viewers: (live version, monotonic time, text)
    snap: tuple[int, float, str] | None = None


class SwitchRequest(BaseModel):
    """`POST /api/switch`."""

    recipe_id: Annotated[str, Field(min_length=1, max_length=64)]
    rev: int | None = None


EventId = Annotated[str, Field(pattern=EVENT_ID_PATTERN)]


class TeachRequest(BaseModel):
    """`POST /api/teach`: a box (frame pixels) on a recent part, of a class old or new."""

    event_id: EventId
    box: Annotated[list[float], Field(min_length=4, max_length=4)]
    cls: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    plc_code: Annotated[int, Field(ge=1, le=65534)] | None = None  # given: a new class
    severity: Literal["minor", "major", "critical"] = "major"
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.25
    # the brushed defect pixels: a PNG data URL of the frame's size (white = defect)
    mask_png: Annotated[str, Field(max_length=20_000_000)] | None = None


class ReviewRequest(BaseModel):
    """`POST /api/review`: a reviewer's mark on a recent part."""

    event_id: EventId
    mark: Annotated[str, Field(pattern=r"^(true_defect|false_call)$")]
    # the right class of a true defect, when the call was wrong
    cls: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None


def create_app(station: Station) -> FastAPI:
    """The ASGI app for one running service."""
    st = station
    app = FastAPI(title="Inspector station", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SessionMiddleware, secret_key=auth.session_secret(
        st.cfg.storage.state_dir), session_cookie="inspector_session",
        max_age=int(st.cfg.web.session_hours * 3600), same_site="strict",
        https_only=st.cfg.web.tls_cert is not None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")

    @app.exception_handler(auth.LoginRequired)
    async def _to_login(request: Request, exc: auth.LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _error(request: Request, exc: StarletteHTTPException) -> Response:
        """JSON for scripts; a page a person can read (and leave) for the pages."""
        path = request.url.path
        if (path.startswith(("/api/", "/events", "/img/", "/static/", "/archive/"))
                or request.method != "GET"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                                headers=getattr(exc, "headers", None))
        resp = templates.TemplateResponse(request, "error.html", {
            "user": auth.current_user(request, st.users), "csrf": auth.csrf_token(request),
            "station": st.cfg.station, "status": exc.status_code, "detail": exc.detail})
        resp.status_code = exc.status_code
        resp.headers.update(getattr(exc, "headers", None) or {})
        return resp

    def page(request: Request, name: str, user: User | None, **ctx: object) -> HTMLResponse:
        return templates.TemplateResponse(request, name, {
            "user": user, "csrf": auth.csrf_token(request), "station": st.cfg.station,
            **ctx})

    def user_for(request: Request, action: str, page_: bool = False) -> User:
        return auth.require(request, st.users, action, page=page_)

    for routes in (_login, _live, _archive, _review, _teach, _recipes):
        routes(app, st, page, user_for)
    return app


def _login(app: FastAPI, st: Station, page: Callable[..., HTMLResponse],
           user_for: Callable[..., User]) -> None:
    """Log in (a fresh session and CSRF token) and out; every attempt is audited."""

    @app.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request, next: str = "/") -> HTMLResponse:
        return page(request, "login.html", None, next=next, error="")

    @app.post("/login")
    async def login(request: Request, name: Annotated[str, Form()],
                    password: Annotated[str, Form()], csrf: Annotated[str, Form()] = "",
                    next: Annotated[str, Form()] = "/") -> Response:
        auth.check_csrf(request, csrf)
        user = await run_in_threadpool(st.users.verify, name, password)
        if user is None:
            st.audit.record(name, "login refused")
            resp = page(request, "login.html", None, next=next,
                        error="wrong name or password")
            resp.status_code = 401
            return resp
        request.session.clear()  # a fresh session and token after login
        request.session["user"] = user.name
        auth.csrf_token(request)
        st.audit.record(user, "login")
        return RedirectResponse(next if next.startswith("/") and not next.startswith("//")
                                else "/", status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        user = user_for(request, "view")
        st.audit.record(user, "logout")
        request.session.clear()
        return RedirectResponse("/login", status_code=303)


def _live(app: FastAPI, st: Station, page: Callable[..., HTMLResponse],
          user_for: Callable[..., User]) -> None:
    """The live page, its event stream and the part images (overlay drawn on request)."""

    @app.get("/", response_class=HTMLResponse)
    async def live_page(request: Request) -> HTMLResponse:
        return page(request, "live.html", user_for(request, "view", True))

    @app.get("/api/live")
    async def live_now(request: Request) -> JSONResponse:
        user_for(request, "view")
        return Response(snapshot_text(st), media_type="application/json")

    @app.get("/events")
    async def events(request: Request) -> StreamingResponse:
        user_for(request, "view")

        async def stream():
            seen, last = -1, 0.0
            while not await request.is_disconnected():
                now = time.monotonic()
                if st.live.version != seen or now - last > 2.0:
                    seen, last = st.live.version, now
                    yield f"data: {snapshot_text(st)}\n\n"
                await asyncio.sleep(0.25)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    @app.get("/img/{event_id}.jpg")
    async def image(request: Request, event_id: str, overlay: int = 1,
                    candidates: int = 0) -> Response:
        user_for(request, "view")
        part = st.live.part(event_id) or st.reviews.part(event_id)
        if part is None:
            raise HTTPException(404, f"part {event_id} is no longer in memory")
        data = await run_in_threadpool(st.images.get, part, bool(overlay), bool(candidates))
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})


def _archive(app: FastAPI, st: Station, page: Callable[..., HTMLResponse],
             user_for: Callable[..., User]) -> None:
    """The archived images a result's image_uri names, for people and machines."""

    @app.get("/archive/{kind}/{day}/{name}")
    async def archived(request: Request, kind: str, day: str, name: str) -> Response:
        user_for(request, "view")
        root = st.cfg.storage.resolve(st.cfg.archive.dir)
        if (root is None or kind not in ARCHIVE_KINDS or not DAY_RE.match(day)
                or not FILE_RE.match(name)):
            raise HTTPException(404, "no such archived image")
        path = root / kind / day / name
        if not path.is_file():  # pruned by retention, or never written (disk full)
            raise HTTPException(404, f"{kind}/{day}/{name} is not in the archive (any more)")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=86400"})


def _review(app: FastAPI, st: Station, page: Callable[..., HTMLResponse],
            user_for: Callable[..., User]) -> None:
    """The review gallery, marks and the COCO export of what was marked."""

    @app.get("/review", response_class=HTMLResponse)
    async def review_page(request: Request, cls: str = "", camera: str = "",
                          minutes: float = 0, ok: int = 0) -> HTMLResponse:
        user = user_for(request, "review", True)
        chosen = st.live.recent_ng() + (st.live.sampled_ok() if ok else [])
        if minutes > 0:
            chosen = [p for p in chosen if p.t >= time.time() - 60 * minutes]
        parts = [p.summary() for p in sorted(chosen, key=lambda p: -p.t)]
        classes = sorted({d["class"] for p in parts for d in p["defects"] if d["accepted"]})
        cameras = sorted({p["camera"] for p in parts})
        if cls:
            parts = [p for p in parts if any(d["class"] == cls and d["accepted"]
                                             for d in p["defects"])]
        if camera:
            parts = [p for p in parts if p["camera"] == camera]
        marks = st.reviews.marks()
        recipe = st.service.pipeline.active.recipe if st.service.pipeline else None
        names = [c.name for c in recipe.classes] if recipe else []
        return page(request, "review.html", user, parts=parts, marks=marks, classes=classes,
                    cameras=cameras, cls=cls, camera=camera, recipe_classes=names,
                    minutes=minutes, ok=ok)

    @app.post("/api/review")
    async def review(request: Request, body: ReviewRequest) -> JSONResponse:
        user = user_for(request, "review")
        part = st.live.part(body.event_id)
        if part is None and st.reviews.part(body.event_id) is None:
            raise HTTPException(404, f"part {body.event_id} is no longer in memory")
        mark = await run_in_threadpool(st.reviews.mark, part, body.event_id, body.mark,
                                       body.cls, user.name)
        st.audit.record(user, "review", event_id=body.event_id, mark=body.mark, cls=body.cls)
        return JSONResponse({"ok": True, "mark": mark})

    @app.get("/api/review/export.json")
    async def review_export(request: Request) -> JSONResponse:
        user_for(request, "review")
        return JSONResponse(await run_in_threadpool(st.reviews.coco),
                            headers={"Content-Disposition":
                                     'attachment; filename="reviewed-parts.coco.json"'})


def _teach(app: FastAPI, st: Station, page: Callable[..., HTMLResponse],
           user_for: Callable[..., User]) -> None:
    """The teach page, teaching jobs and their progress."""

    @app.get("/teach", response_class=HTMLResponse)
    async def teach_page(request: Request, event: str = "") -> HTMLResponse:
        user = user_for(request, "teach", True)
        part = st.live.part(event) if event else next(iter(st.live.latest().values()), None)
        recipe = st.service.pipeline.active.recipe if st.service.pipeline else None
        return page(request, "teach.html", user, part=part.summary() if part else None,
                    classes=[(c.name, c.plc_code) for c in recipe.classes] if recipe else [])

    @app.post("/api/teach")
    async def teach(request: Request, body: TeachRequest) -> JSONResponse:
        user = user_for(request, "teach")
        part = st.live.part(body.event_id)
        if part is None:
            raise HTTPException(404, f"part {body.event_id} is no longer in memory")
        new = None
        if body.plc_code is not None:
            new = NewClass(body.cls, body.plc_code, threshold=body.threshold,
                           severity=body.severity)
        x, y, w, h = body.box
        mask = None
        if body.mask_png is not None:
            mask = _png_from_data_url(body.mask_png)
        job = st.teacher.start(user.name, part, (x, y, w, h), body.cls, new, mask)
        st.audit.record(user, "teach", event_id=body.event_id, box=body.box, cls=body.cls,
                        plc_code=body.plc_code, job=job.id)
        return JSONResponse(job.view())

    @app.get("/api/jobs/{job_id}")
    async def job(request: Request, job_id: str) -> JSONResponse:
        user_for(request, "view")
        found = st.teacher.jobs.get(job_id)
        if found is None:
            raise HTTPException(404, f"no job {job_id}")
        return JSONResponse(found.view())


def _recipes(app: FastAPI, st: Station, page: Callable[..., HTMLResponse],
             user_for: Callable[..., User]) -> None:
    """The recipe list, contact sheets, switching, thresholds, and the change log."""

    @app.get("/recipes", response_class=HTMLResponse)
    async def recipes_page(request: Request) -> HTMLResponse:
        from inspector.recipes.store import list_recipes

        user = user_for(request, "view", True)
        rows = await run_in_threadpool(list_recipes, st.cfg.recipes_dir)
        active = st.service.pipeline.active.recipe if st.service.pipeline else None
        return page(request, "recipes.html", user, rows=rows, active=active,
                    rules=[c.model_dump() for c in active.classes] if active else [],
                    recent=len(st.live.recent_results()))

    @app.get("/recipes/{name}/sheet.png")
    async def contact_sheet(request: Request, name: str) -> Response:
        from inspector.recipes.contact_sheet import render
        from inspector.recipes.recipe import load_recipe
        from inspector.recipes.store import find_recipe

        user_for(request, "view")
        try:
            recipe = load_recipe(find_recipe(st.cfg.recipes_dir, name))
        except (FileNotFoundError, ValueError) as exc:
            raise HTTPException(404, str(exc)) from None
        sheet = await run_in_threadpool(render, recipe)
        ok, png = cv2.imencode(".png", sheet)
        if not ok:
            raise HTTPException(500, f"cannot encode the contact sheet of {name}")
        return Response(png.tobytes(), media_type="image/png")

    @app.post("/api/switch")
    async def switch(request: Request, body: SwitchRequest) -> JSONResponse:
        user = user_for(request, "switch")
        try:
            ref = await run_in_threadpool(st.service.switch_recipe, body.recipe_id, body.rev)
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            msg = "; ".join(getattr(exc, "errors", None) or [str(exc)])
            st.audit.record(user, "switch refused", recipe_id=body.recipe_id, rev=body.rev,
                            error=msg)
            return JSONResponse({"ok": False, "error": msg}, status_code=409)
        st.audit.record(user, "switch", recipe=ref)
        return JSONResponse({"ok": True, "recipe": ref})

    @app.post("/api/thresholds/preview")
    async def thresholds_preview(request: Request, body: RuleChange) -> JSONResponse:
        user_for(request, "thresholds")
        active = st.service.pipeline.active.recipe
        return JSONResponse(preview(active, body, st.live.recent_results()))

    @app.post("/api/thresholds")
    async def thresholds(request: Request, body: RuleChange) -> JSONResponse:
        user = user_for(request, "thresholds")
        classes = body.model_dump(exclude_none=True)["classes"]
        try:  # the same path as cmd/thresholds: saved as rev + 1 and switched to
            ref = await run_in_threadpool(st.service.change_thresholds, classes)
        except (ValueError, FileNotFoundError, RuntimeError) as exc:
            msg = "; ".join(getattr(exc, "errors", None) or [str(exc)])
            st.audit.record(user, "thresholds refused", change=classes, error=msg)
            return JSONResponse({"ok": False, "error": msg}, status_code=409)
        st.audit.record(user, "thresholds", change=classes, recipe=ref)
        return JSONResponse({"ok": True, "recipe": ref})

    @app.get("/audit", response_class=HTMLResponse)
    async def audit_page(request: Request) -> HTMLResponse:
        user = user_for(request, "view", True)
        return page(request, "audit.html", user, entries=st.audit.tail(100))


def _png_from_data_url(url: str) -> bytes:
    """The bytes of a `data:image/png;base64,...` URL (422 when it is anything else)."""
    head, _, data = url.partition(",")
    if head != "data:image/png;base64":
        raise HTTPException(422, "mask_png: expected a data:image/png;base64 URL")
    try:
        png = base64.b64decode(data, validate=True)
    except ValueError:
        raise HTTPException(422, "mask_png: not valid base64") from None
    if not png.startswith(b"\x89PNG"):
        raise HTTPException(422, "mask_png: not a PNG")
    return png


SNAPSHOT_MAX_AGE_S = 0.25


def snapshot_text(st: Station) -> str:
    """`snapshot(st)` as JSON; the figures (outbox and disk queries among them) are
    gathered once per part and per SNAPSHOT_MAX_AGE_S, not once per viewer."""
    now, version = time.monotonic(), st.live.version
    if st.snap is not None and st.snap[0] == version and now - st.snap[1] < SNAPSHOT_MAX_AGE_S:
        return st.snap[2]
    text = json.dumps(snapshot(st))
    st.snap = (version, now, text)
    return text


def snapshot(st: Station) -> dict:
    """Everything the live page shows, as one JSON object."""
    svc = st.service
    stats = svc.stats() if svc.pipeline is not None else {}
    active = svc.pipeline.active.recipe if svc.pipeline is not None else None
    parts = {cam: p.summary() for cam, p in st.live.latest().items()}
    return {"parts": parts, "stats": stats,
            "recipe": active.ref if active else None,
            "recipe_product": active.product if active else "",
            "ng_rate": st.live.ng_rate()}
