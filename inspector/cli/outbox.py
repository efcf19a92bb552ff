"""`inspector outbox salvage`: keep the rows of a damaged outbox, start with a fresh one.

    inspector outbox salvage --config /etc/inspector/station.yaml

Takes the state dir's lock (so the service must be stopped), moves the outbox aside as
`<name>.damaged-<time>` and copies every readable row into a fresh file; the next run
publishes them with `"replayed": true` (inspector.outputs.mqtt.salvage). Exit codes: 0 done,
2 bad config or no MQTT outbox, 3 the service is running.
"""

from __future__ import annotations

import argparse
import sys


def cmd_salvage(args: argparse.Namespace) -> int:
    """Salvage the configured outbox under the state dir's lock; 3 while the service runs."""
    from inspector.cli.main import load_config_or_report
    from inspector.outputs.mqtt.salvage import salvage
    from inspector.runtime.instance_lock import AlreadyRunning, InstanceLock
    from inspector.runtime.state_check import outbox_path

    cfg = load_config_or_report(args.config)
    if cfg is None:
        return 2
    path = outbox_path(cfg)
    if path is None:
        print(f"inspector outbox salvage: {args.config} has no mqtt outbox", file=sys.stderr)
        return 2
    try:
        with InstanceLock(cfg.storage.state_dir, "inspector outbox salvage"):
            report = salvage(path)
    except AlreadyRunning as exc:
        print(f"inspector outbox salvage: {exc}", file=sys.stderr)
        return 3
    print(report.text())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `outbox salvage` to the parser."""
    o = sub.add_parser("outbox", help="maintenance of the MQTT outbox")
    osub = o.add_subparsers(dest="outbox_command", required=True)
    s = osub.add_parser("salvage", help="move a damaged outbox aside, keep its readable rows")
    s.add_argument("--config", required=True, help="station config YAML")
    s.set_defaults(func=cmd_salvage)
