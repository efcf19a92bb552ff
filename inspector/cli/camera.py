"""`inspector cameras` and `inspector camera-info`: what an integrator checks first.

`cameras` lists the GenICam devices a producer (.cti) sees; `camera-info` opens one by
serial number and prints the key SFNC nodes with value, access and range or entries,
so the values for a station config can be chosen without a vendor tool.
"""

from __future__ import annotations

import argparse
import sys

KEY_NODES = ["DeviceVendorName", "DeviceModelName", "DeviceSerialNumber", "PixelFormat",
             "Width", "Height", "OffsetX", "OffsetY", "ExposureTime", "Gain",
             "AcquisitionFrameRate", "TriggerMode", "TriggerSource", "PayloadSize"]


def cmd_cameras(args: argparse.Namespace) -> int:
    """Print the GenICam devices the producer sees as a Markdown table; 2 on a source error."""
    from inspector.acquisition.base import SourceError
    from inspector.acquisition.genicam import list_devices

    try:
        devices = list_devices(args.cti)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("| vendor | model | serial | user name | producer |")
    print("|---|---|---|---|---|")
    for d in devices:
        print(f"| {d.vendor or ''} | {d.model or ''} | {d.serial_number or ''} | "
              f"{d.user_defined_name or ''} | {d.producer} |")
    if not devices:
        print("no devices found", file=sys.stderr)
    return 0


def cmd_camera_info(args: argparse.Namespace) -> int:
    """Open one camera by serial and print its key nodes: value, access, range or entries."""
    from inspector.acquisition.base import SourceError
    from inspector.acquisition.genicam import GenicamSource
    from inspector.config.sources import GenicamSourceConfig
    from inspector.core.frames import FramePool

    cfg = GenicamSourceConfig(kind="genicam", cti=args.cti, serial_number=args.serial)
    src = GenicamSource("info", cfg)
    try:
        src.open(FramePool(2))
        rows = src.node_info(args.nodes or KEY_NODES)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        src.close()
    print("| node | value | access | range / entries |")
    print("|---|---|---|---|")
    for r in rows:
        allowed = r.get("entries") or (
            f"[{r.get('min')}, {r.get('max')}]" if r.get("min") is not None else "")
        if isinstance(allowed, list):
            allowed = ", ".join(map(str, allowed))
        print(f"| {r.get('name')} | {r.get('value')} | {r.get('access', '')} | {allowed} |")
    return 0


def register(sub) -> None:
    """Add the `cameras` and `camera-info` verbs to the parser."""
    c = sub.add_parser("cameras", help="list GenICam devices (vendor, model, serial, producer)")
    c.add_argument("--cti", default=None, help="GenTL producer (.cti); default: "
                   "GENICAM_GENTL64_PATH")
    c.set_defaults(func=cmd_cameras)
    i = sub.add_parser("camera-info", help="key GenICam nodes of one camera, with ranges")
    i.add_argument("serial", help="device serial number (see `inspector cameras`)")
    i.add_argument("--cti", default=None, help="GenTL producer (.cti)")
    i.add_argument("--nodes", nargs="*", help="node names (default: the key SFNC nodes)")
    i.set_defaults(func=cmd_camera_info)
