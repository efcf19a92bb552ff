"""Image dimensions from the file header, read before anything is decoded.

Why: a 20000x20000 prompt image passed validation and then made an enrolment child
decode 400 megapixels. PNG, JPEG, BMP and TIFF (the recipe formats) are read here with
a few hundred bytes of I/O; a file whose header cannot be read is refused like one whose
size is over the cap.
"""

from __future__ import annotations

import struct
from pathlib import Path

from inspector.core.errors import InspectorError

MAX_SIDE = 16_384
MAX_PIXELS = 80_000_000


class ImageHeaderError(InspectorError, ValueError):
    """No readable header: never handed to a decoder."""


class ImageTooLarge(ImageHeaderError):
    """Over MAX_SIDE or MAX_PIXELS."""


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header; ValueError when it cannot be read."""
    with open(path, "rb") as f:
        head = f.read(32)
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head.startswith(b"BM") and len(head) >= 26:
            w, h = struct.unpack("<ii", head[18:26])
            return abs(w), abs(h)
        if head[:4] in (b"II*\x00", b"MM\x00*"):
            return _tiff(f, "<" if head[:2] == b"II" else ">")
        if head.startswith(b"\xff\xd8"):
            return _jpeg(f)
    raise ValueError("unknown image format (expected PNG, JPEG, BMP or TIFF)")


def check_image(path: Path) -> tuple[int, int]:
    """The image's (width, height) if within the caps; ImageTooLarge or ImageHeaderError
    otherwise."""
    try:
        w, h = image_size(path)
    except (ValueError, struct.error) as exc:
        raise ImageHeaderError(f"{path}: no readable image header ({exc})") from None
    if w <= 0 or h <= 0 or max(w, h) > MAX_SIDE or w * h > MAX_PIXELS:
        raise ImageTooLarge(f"{path}: image is {w}x{h}; the limit is {MAX_SIDE} px a side "
                            f"and {MAX_PIXELS // 1_000_000} megapixels")
    return w, h


def _jpeg(f) -> tuple[int, int]:
    f.seek(2)
    for _ in range(1000):  # markers before the frame header
        b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            break
        marker = b[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        (length,) = struct.unpack(">H", f.read(2))
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">xHH", f.read(5))
            return w, h
        f.seek(length - 2, 1)
    raise ValueError("JPEG without a frame header")


def _tiff(f, endian: str) -> tuple[int, int]:
    f.seek(4)
    (ifd,) = struct.unpack(endian + "I", f.read(4))
    f.seek(ifd)
    (count,) = struct.unpack(endian + "H", f.read(2))
    dims: dict[int, int] = {}
    for _ in range(min(count, 512)):
        tag, typ, _n, value = struct.unpack(endian + "HHI4s", f.read(12))
        if tag in (256, 257):
            fmt = "H2x" if typ == 3 else "I"
            dims[tag] = struct.unpack(endian + fmt, value)[0]
    if 256 not in dims or 257 not in dims:
        raise ValueError("TIFF without ImageWidth/ImageLength")
    return dims[256], dims[257]
