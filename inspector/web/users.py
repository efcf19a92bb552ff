"""The station page's users: name, role and an argon2 hash of the password, in one JSON file.

Why argon2 (argon2-cffi): a slow, salted, memory-hard hash, so a copied users file does not
give the passwords away. The file is written atomically with mode 0600; `inspector user
add` is the only writer. Roles: `operator` sees the live view and reviews parts;
`engineer` may also teach, change thresholds and switch recipes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import Field, ValidationError

from inspector.core.atomic import write_bytes_atomic
from inspector.core.errors import InspectorError
from inspector.core.strict import StrictModel

Role = Literal["operator", "engineer"]
UserName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
MIN_PASSWORD = 8
_HASHER = PasswordHasher()
# verified against when the name is unknown, so that a wrong name takes as long as a
# wrong password (no user enumeration by timing)
_DUMMY = _HASHER.hash("not a password of anyone")


class UserError(InspectorError, ValueError):
    """A user that cannot be added, or a users file that cannot be read (names the file)."""


class User(StrictModel):
    """One account of the station page."""

    name: UserName
    role: Role
    hash: str

    def may(self, action: str) -> bool:
        """Whether this user may do `action` (`view`, `review`, `teach`, `switch`,
        `thresholds`)."""
        return action in ("view", "review") or self.role == "engineer"


class UsersFile(StrictModel):
    """The file's content: `{"users": [...]}`."""

    users: list[User] = []


class UserStore:
    """The users file, read again whenever it changed (so `inspector user add` needs no
    restart) and not on every request that asks who is logged in."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._seen: tuple[tuple[int, int, int], list[User]] | None = None  # stat, users

    def load(self) -> list[User]:
        """Every user; an absent file means no user (nobody can log in)."""
        try:
            st = self.path.stat()
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
            if self._seen is not None and self._seen[0] == key:
                return self._seen[1]
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise UserError(f"{self.path}: cannot read the users file: {exc}") from None
        try:
            users = UsersFile.model_validate(json.loads(text)).users
        except (json.JSONDecodeError, ValidationError) as exc:
            raise UserError(f"{self.path}: not a valid users file: {exc}") from None
        self._seen = (key, users)
        return users

    def add(self, name: str, role: str, password: str, replace: bool = False) -> User:
        """Add (or with `replace`, reset) a user; the file is rewritten atomically, 0600."""
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password: at least {MIN_PASSWORD} characters")
        try:
            user = User(name=name, role=role, hash=_HASHER.hash(password))  # type: ignore[arg-type]
        except ValidationError as exc:
            raise UserError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                      for e in exc.errors())) from None
        users = self.load()
        if any(u.name == name for u in users) and not replace:
            raise UserError(f"user {name!r} exists already (--replace to set a new password "
                            "or role)")
        users = [u for u in users if u.name != name] + [user]
        data = UsersFile(users=users).model_dump_json(indent=1).encode()
        write_bytes_atomic(self.path, data, mode=0o600)
        return user

    def verify(self, name: str, password: str) -> User | None:
        """The user when name and password match, else None (same cost either way)."""
        user = next((u for u in self.load() if u.name == name), None)
        try:
            _HASHER.verify(user.hash if user else _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return None
        return user
