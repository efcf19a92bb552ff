"""Station page accounts: slow salted hashes, 0600 file, clear refusals, no enumeration."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from inspector.cli.main import main as cli_main
from inspector.web.users import UserError, UserStore
from tests.helpers.files import write_config, write_recipe


def test_password_is_stored_as_an_argon2_hash_in_a_private_file(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("anna", "engineer", "correct horse")
    text = store.path.read_text()
    assert "correct horse" not in text
    (user,) = json.loads(text)["users"]
    assert user["hash"].startswith("$argon2id$")
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.verify("anna", "correct horse").role == "engineer"
    assert store.verify("anna", "wrong horse") is None
    assert store.verify("nobody", "correct horse") is None


def test_roles_decide_what_a_user_may_do(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    op = store.add("otto", "operator", "operator-pass")
    eng = store.add("eve", "engineer", "engineer-pass")
    for action in ("view", "review"):
        assert op.may(action) and eng.may(action)
    for action in ("teach", "switch", "thresholds"):
        assert not op.may(action) and eng.may(action)


def test_bad_users_are_refused_and_change_nothing(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("anna", "operator", "long enough")
    before = store.path.read_bytes()
    with pytest.raises(UserError, match="at least 8"):
        store.add("bob", "operator", "short")
    with pytest.raises(UserError, match="exists already"):
        store.add("anna", "engineer", "another one")
    with pytest.raises(UserError, match="role"):
        store.add("carl", "admin", "long enough")
    with pytest.raises(UserError, match="name"):
        store.add("carl smith", "operator", "long enough")
    assert store.path.read_bytes() == before
    store.add("anna", "engineer", "a new password", replace=True)
    assert store.verify("anna", "a new password").role == "engineer"


def test_a_broken_users_file_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text('{"users": [{"name": "x"}]}')
    with pytest.raises(UserError, match=str(path)):
        UserStore(path).load()


def test_user_add_command(tmp_path: Path, monkeypatch, capsys) -> None:
    cfg = write_config(tmp_path / "station.yaml", write_recipe(tmp_path / "r"))
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("s3cret-pass\n"))
    assert cli_main(["user", "add", "anna", "--role", "engineer", "--password-stdin",
                     "--config", str(cfg)]) == 0
    assert "user anna (engineer) saved" in capsys.readouterr().out
    assert UserStore(tmp_path / "state" / "users.json").verify("anna", "s3cret-pass")
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("s3cret-pass\n"))
    assert cli_main(["user", "add", "anna", "--role", "operator", "--password-stdin",
                     "--config", str(cfg)]) == 1
    assert "exists already" in capsys.readouterr().err
    assert cli_main(["user", "list", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == "anna\tengineer"
