"""`inspector user add | list`: accounts of the station page (inspector.web).

    inspector user add anna --role engineer --config /etc/inspector/station.yaml
    echo "$PW" | inspector user add line3 --role operator --password-stdin --config ...

The password is asked twice on a terminal (never an argument: it would show in `ps` and
the shell history), or read from standard input with --password-stdin. Exit codes: 0
done, 1 refused (exists, too short, passwords differ), 2 bad config.
"""

from __future__ import annotations

import argparse
import getpass
import sys


def _users(config: str):
    from inspector.cli.main import load_config_or_report
    from inspector.web.users import UserStore

    cfg = load_config_or_report(config)
    if cfg is None:
        return None
    return UserStore(cfg.storage.resolve(cfg.web.users_file))


def cmd_add(args: argparse.Namespace) -> int:
    """Add a user (or replace one's password and role with --replace)."""
    from inspector.web.users import UserError

    store = _users(args.config)
    if store is None:
        return 2
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("inspector user add: the passwords differ", file=sys.stderr)
            return 1
    try:
        user = store.add(args.name, args.role, password, replace=args.replace)
    except UserError as exc:
        print(f"inspector user add: {exc}", file=sys.stderr)
        return 1
    print(f"user {user.name} ({user.role}) saved in {store.path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Print the users and their roles (never the hashes)."""
    store = _users(args.config)
    if store is None:
        return 2
    for u in store.load():
        print(f"{u.name}\t{u.role}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `user add` and `user list` to the parser."""
    u = sub.add_parser("user", help="accounts of the station page (web: in the station config)")
    usub = u.add_subparsers(dest="user_command", required=True)
    a = usub.add_parser("add", help="add a user of the station page")
    a.add_argument("name", help="login name (letters, digits, _ . -)")
    a.add_argument("--role", choices=["operator", "engineer"], required=True,
                   help="operator: view and review; engineer: also teach, thresholds, switch")
    a.add_argument("--config", required=True, help="station config YAML (where users live)")
    a.add_argument("--password-stdin", action="store_true",
                   help="read the password from standard input instead of asking")
    a.add_argument("--replace", action="store_true", help="set a new password and role")
    a.set_defaults(func=cmd_add)
    ls = usub.add_parser("list", help="list the users and their roles")
    ls.add_argument("--config", required=True, help="station config YAML")
    ls.set_defaults(func=cmd_list)
