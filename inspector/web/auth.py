"""Who is asking: session cookies, CSRF tokens and roles for the station page.

The session is a cookie signed with a key kept in the state folder (starlette's
SessionMiddleware with itsdangerous): it holds the user's name and a random CSRF token.
Every request that changes something must echo the token (header `X-CSRF-Token`, or a
`csrf` form field for the login form), so another site cannot make an operator's browser
switch a recipe. Roles are read from the users file on every request, so removing a user
or changing a role takes effect at once.

Machines (an MES fetching the archived image a result's `image_uri` names) send HTTP Basic
credentials of a page user instead of a session; a verified pair is remembered for a
minute so that a burst of image fetches costs one argon2 verify. Basic requests may read,
never change anything (changes need the session's CSRF token). Use TLS off the box.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import secrets
import threading
import time
from pathlib import Path

from fastapi import HTTPException, Request

from inspector.core.atomic import write_bytes_atomic
from inspector.core.errors import InspectorError
from inspector.web.users import User, UserStore

log = logging.getLogger(__name__)
CSRF_HEADER = "X-CSRF-Token"


def session_secret(state_dir: Path) -> str:
    """The cookie signing key: made once (0600) and kept, so sessions survive a restart."""
    path = Path(state_dir) / "web-session.key"
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        key = secrets.token_hex(32)
        write_bytes_atomic(path, key.encode(), mode=0o600)
        return key


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf(request: Request, sent: str | None) -> None:
    """Refuse (403) a change whose token is missing or not this session's."""
    token = request.session.get("csrf")
    if not token or not sent or not secrets.compare_digest(str(sent), token):
        raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again")


class LoginRequired(InspectorError):
    """A page asked for without a session: the handler redirects to /login."""


BASIC_TTL_S = 60.0
_basic_seen: dict[str, tuple[str, float]] = {}  # sha256 of the header -> (name, until)
_basic_lock = threading.Lock()


def current_user(request: Request, users: UserStore) -> User | None:
    """The logged-in user (session, else HTTP Basic), or None (none, wrong, or removed)."""
    name = request.session.get("user") or _basic_name(request, users)
    if not name:
        return None
    return next((u for u in users.load() if u.name == name), None)


def _basic_name(request: Request, users: UserStore) -> str | None:
    header = request.headers.get("authorization", "")
    if not header[:6].lower() == "basic ":
        return None
    key = hashlib.sha256(header.encode()).hexdigest()
    now = time.monotonic()
    with _basic_lock:
        hit = _basic_seen.get(key)
    if hit is not None and hit[1] > now:
        return hit[0]
    try:
        name, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = users.verify(name, password)
    if user is None:
        log.warning("web: HTTP Basic login refused for %r", name)
        return None
    with _basic_lock:
        _basic_seen[key] = (user.name, now + BASIC_TTL_S)
    return user.name


def require(request: Request, users: UserStore, action: str, page: bool = False) -> User:
    """The user, if allowed to `action`; else 401 (or a redirect for pages) or 403."""
    user = current_user(request, users)
    if user is None:
        if page:
            raise LoginRequired()
        raise HTTPException(401, "log in first (a session, or HTTP Basic with a page user)",
                            headers={"WWW-Authenticate": 'Basic realm="inspector"'})
    if not user.may(action):
        log.warning("web: %s (%s) was refused %s", user.name, user.role, action)
        raise HTTPException(403, f"{action} needs the engineer role; {user.name} is "
                                 f"{user.role}")
    if request.method not in ("GET", "HEAD"):
        check_csrf(request, request.headers.get(CSRF_HEADER))  # Basic requests have none
    return user
