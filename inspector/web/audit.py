"""Every change made from the station page, with who made it: one JSON line each.

`<state_dir>/web-audit.jsonl` (appended, flushed per line) and the service log. A line
integrator asks "who changed the threshold at 14:02?"; this file answers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from inspector.web.users import User

log = logging.getLogger(__name__)


class AuditLog:
    """Append-only record of logins, switches, teaching, threshold changes and reviews."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def record(self, user: User | str, action: str, **detail: object) -> None:
        """One line: time, user, role, action and its details."""
        name, role = (user.name, user.role) if isinstance(user, User) else (user, "")
        entry = {"t": round(time.time(), 3), "user": name, "role": role, "action": action,
                 **detail}
        log.info("web: %s %s %s", name, action,
                 json.dumps(detail, sort_keys=True, default=str))
        line = json.dumps(entry, default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)

    def tail(self, n: int = 50) -> list[dict]:
        """The last `n` entries, newest first."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()[-n:]
        except FileNotFoundError:
            return []
        return [json.loads(s) for s in reversed(lines) if s.strip()]
