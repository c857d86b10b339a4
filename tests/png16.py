"""A 16-bit PNG writer from the PNG specification (W3C PNG, 2nd ed.: IHDR, filtered
scanlines deflated in IDAT, CRC-32 per chunk), independent of the readers under test:
Pillow and imageio cannot write 16-bit RGB. Rows cycle through the five filter types
(None, Sub, Up, Average, Paeth), so a reader's unfiltering is exercised on 6-byte pixels."""

import struct
import zlib

import numpy as np


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filtered(rows: list[bytes], bpp: int) -> bytes:
    out, prior = [], bytes(len(rows[0]))
    for r, row in enumerate(rows):
        kind = r % 5
        line = bytearray([kind])
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b, c = prior[i], (prior[i - bpp] if i >= bpp else 0)
            pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]
            line.append((x - pred) % 256)
        out.append(bytes(line))
        prior = row
    return b"".join(out)


def write_png16(path, samples) -> None:
    """``samples``: uint16 (H, W, 3) (colour type 2) or (H, W) (grayscale, type 0)."""
    a = np.asarray(samples, dtype=">u2")
    h, w = a.shape[:2]
    color = a.ndim == 3
    rows = [a[r].tobytes() for r in range(h)]  # big-endian samples, as PNG stores them
    data = zlib.compress(_filtered(rows, 6 if color else 2))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 16, 2 if color else 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
