"""Hand-built PNG files for tests: huge images that take a few kB on disk."""

import struct
import zlib


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bilevel_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG, built by hand: large images compress to a few kB."""
    compressor = zlib.compressobj(9)
    rows = (b"\x00" * (1 + (width + 7) // 8)) * 100
    idat = b"".join(compressor.compress(rows) for _ in range(height // 100))
    idat += compressor.compress(rows[: (height % 100) * (1 + (width + 7) // 8)])
    idat += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )
