"""`inspector demo --ui`: the demo with the station page, ready to teach a defect kind.

The demo recipe knows every synthetic defect kind; to show teaching, the page's demo runs
a copy of it (`<out>/recipes/demo-part/`) with one kind left out, `stain`: its parts come
out NG as `unknown` (or as a wrong class) until someone boxes a stain on the Teach page,
names the class and gives it a PLC code. The copy is made once and then kept, so what was
taught survives a restart of the demo (delete the folder to start over). A demo login is
made on first use and its password printed; the page binds 127.0.0.1 only.
"""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path

from inspector.recipes.files import edit_yaml

LEFT_OUT = "stain"
DEMO_USER = "demo"


def teachable_recipe(demo: Path, out: Path) -> Path:
    """A copy of the demo recipe without the `stain` class (made once, then kept)."""
    folder = out / "recipes" / demo.name
    if (folder / "recipe.yaml").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(demo, tmp, ignore=shutil.ignore_patterns("cache"))
    text = (tmp / "recipe.yaml").read_text(encoding="utf-8")

    def drop(doc) -> None:
        doc["classes"] = [c for c in doc["classes"] if c["name"] != LEFT_OUT]

    (tmp / "recipe.yaml").write_text(
        "# A copy of the demo recipe without the stain class, for teaching it on the\n"
        "# station page (inspector demo --ui).\n" + edit_yaml(text, drop), encoding="utf-8")
    bank_file = tmp / "prompts" / "prompts.json"
    bank = json.loads(bank_file.read_text(encoding="utf-8"))
    gone = {c["id"] for c in bank["categories"] if c["name"] == LEFT_OUT}
    bank["categories"] = [c for c in bank["categories"] if c["id"] not in gone]
    bank["annotations"] = [a for a in bank["annotations"] if a["category_id"] not in gone]
    bank_file.write_text(json.dumps(bank, indent=1) + "\n", encoding="utf-8")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(folder)
    return folder


def demo_login(users_file: Path) -> tuple[str, str | None]:
    """(user, password) of the demo's engineer login; the password only when just made."""
    from inspector.web.users import UserStore

    store = UserStore(users_file)
    if any(u.name == DEMO_USER for u in store.load()):
        return DEMO_USER, None
    password = secrets.token_urlsafe(9)
    store.add(DEMO_USER, "engineer", password)
    return DEMO_USER, password
