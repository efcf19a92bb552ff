"""A per-host secret that signs generated caches (HMAC-SHA256), so an edited cache is
rebuilt rather than trusted.

Why: the enrolment cache's meta lists sha256 values of what it was built from; anyone
who edits the arrays can recompute those. An HMAC under a key that lives in the state
dir (mode 0640, owned like the state dir, never in the recipe) cannot be recomputed by
editing the recipe folder. The key is `$INSPECTOR_CACHE_KEY` when set, else
`/var/lib/inspector/cache.key` (the unit's state dir) when this user can use it, else
`~/.local/state/inspector/cache.key` (development). The service, its enrolment children
and an admin's `inspector recipe enroll` thus share one key per host; a cache signed
with another key is rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

ENV = "INSPECTOR_CACHE_KEY"
SYSTEM_KEY = Path("/var/lib/inspector/cache.key")


def key_path() -> Path:
    """Where this host's cache key is: `$INSPECTOR_CACHE_KEY`, the system or the user file."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    if os.access(SYSTEM_KEY, os.R_OK) or (not SYSTEM_KEY.exists()
                                           and os.access(SYSTEM_KEY.parent, os.W_OK)):
        return SYSTEM_KEY
    return Path.home() / ".local" / "state" / "inspector" / "cache.key"


def load_key(path: Path | None = None) -> bytes:
    """The key, created (32 random bytes, hex, mode 0640) on first use; OSError if it
    can be neither read nor created."""
    path = path or key_path()
    try:
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    except FileExistsError:  # another process made it just now
        return bytes.fromhex(path.read_text(encoding="ascii").strip())
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    if os.geteuid() == 0:  # made by root for the service: owned like its folder
        st = os.stat(path.parent)
        os.chown(path, st.st_uid, st.st_gid)
    return bytes.fromhex(path.read_text(encoding="ascii").strip())


def _message(meta: dict) -> bytes:
    body = {k: v for k, v in meta.items() if k != "hmac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(meta: dict) -> str:
    """HMAC-SHA256 of a cache meta (its `hmac` field left out) under this host's key."""
    return hmac.new(load_key(), _message(meta), hashlib.sha256).hexdigest()


def verify(meta: dict) -> str:
    """Empty when `meta` carries a valid HMAC under this host's key, else why not."""
    mac = meta.get("hmac")
    if not isinstance(mac, str):
        return "stale: no hmac (an older or hand-made cache)"
    try:
        want = sign(meta)
    except (OSError, ValueError) as exc:
        return f"cannot check: cache key {key_path()}: {exc}"
    if not hmac.compare_digest(mac, want):
        return "stale: hmac does not match (edited, or built on another host)"
    return ""
