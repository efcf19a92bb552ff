"""`inspector status`: the running service's health figures, read over its control socket.

    inspector status --config /etc/inspector/station.yaml          # Markdown table
    inspector status --config /etc/inspector/station.yaml --json   # the raw payload

The figures are the same ones the `stats` topic and the Prometheus endpoint carry
(inspector.runtime.health.stats_payload). Exit codes: 0 healthy, 1 running but a stage is
stuck, 2 bad config file, 3 no running service.
"""

from __future__ import annotations

import argparse
import json
import sys


def cmd_status(args: argparse.Namespace) -> int:
    """Ask the running service for its health figures and print them (table or JSON)."""
    from inspector.cli.main import load_config_or_report
    from inspector.runtime.control import call
    from inspector.runtime.health import status_table
    from inspector.runtime.service import control_path

    cfg = load_config_or_report(args.config)
    if cfg is None:
        return 2
    try:
        answer = call(control_path(cfg), {"cmd": "status"}, timeout=args.timeout)
    except (ConnectionError, TimeoutError, OSError) as exc:
        print(f"inspector status: {exc}", file=sys.stderr)
        return 3
    if not answer.get("ok"):
        print(f"inspector status: the service answered: {answer.get('error')}", file=sys.stderr)
        return 3
    stats = answer.get("stats", {})
    if args.json:
        print(json.dumps({"stats": stats, "state": answer.get("state")}, indent=2))
    else:
        print(status_table(stats))
    return 0 if stats.get("health", {}).get("ok", True) else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `status` verb to the parser."""
    s = sub.add_parser("status", help="health figures of the running service (control socket)")
    s.add_argument("--config", required=True, help="station config YAML of the service")
    s.add_argument("--json", action="store_true", help="print the raw payload as JSON")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
    s.set_defaults(func=cmd_status)
