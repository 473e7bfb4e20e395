"""Attachment bodies of a requested size: PDF-like, PNG, CSV, log text, ZIP-like."""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable

_PDF_HEAD = (
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n"
    b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
    b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n"
    b"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>\n"
    b"endobj\n4 0 obj\n<< /Length LENGTH /Filter /FlateDecode >>\nstream\n"
)
_PDF_TAIL = (
    b"\nendstream\nendobj\nxref\n0 5\n0000000000 65535 f \ntrailer\n<< /Size 5 /Root 1 0 R >>\n"
    b"startxref\n0\n%%EOF\n"
)


def pdf(rng: random.Random, size: int) -> bytes:
    """A PDF-shaped file of exactly ``size`` bytes with a random (compressed-looking) stream."""
    overhead = len(_PDF_HEAD) + len(_PDF_TAIL) + 8
    stream = rng.randbytes(max(size - overhead, 16))
    data = _PDF_HEAD.replace(b"LENGTH", str(len(stream)).encode()) + stream + _PDF_TAIL
    return data[:size] if len(data) > size else data + b"\n" * (size - len(data))


def png(rng: random.Random, size: int) -> bytes:
    """A valid RGB PNG of noise, close to ``size`` bytes."""
    width = 200 if size < 100_000 else 800
    row = 1 + width * 3
    height = max(1, (size - 80) // row)
    raw = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 0))
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def csv(rng: random.Random, size: int) -> bytes:
    """CSV of invoice lines, LF line endings, at most ``size`` bytes."""
    lines = ["date,invoice,description,quantity,unit_price,currency"]
    total = len(lines[0]) + 1
    items = ("Seat licence", "Storage add-on 50 GB", "Premium support", "API calls 10k",
             "Onboarding package", "Extra workspace")
    while True:
        line = (
            f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d},"
            f"INV-2024-{rng.randint(1000, 99999):05d},{rng.choice(items)},"
            f"{rng.randint(1, 250)},{rng.randint(5, 900)}.{rng.randint(0, 99):02d},EUR"
        )
        if total + len(line) + 1 > size:
            break
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode("ascii")


def log(rng: random.Random, size: int) -> bytes:
    """An application log excerpt, LF line endings, at most ``size`` bytes."""
    levels = ("INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG")
    events = ("request completed", "upload started", "upload failed: timeout after 30s",
              "retrying connection to api.example.test", "session expired for user",
              "cache miss", "job finished in 1.2s", "HTTP 503 from upstream")
    lines: list[str] = []
    total = 0
    second = 0
    while True:
        second += rng.randint(0, 5)
        line = (
            f"2024-03-04T{8 + second // 3600 % 14:02d}:{second // 60 % 60:02d}:"
            f"{second % 60:02d}Z {rng.choice(levels):5s} [worker-{rng.randint(1, 8)}] "
            f"{rng.choice(events)} id={rng.getrandbits(48):012x}"
        )
        if total + len(line) + 1 > size:
            break
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode("ascii")


def zip_like(rng: random.Random, size: int) -> bytes:
    """Bytes that start like a ZIP archive, exactly ``size`` bytes."""
    head = b"PK\x03\x04\x14\x00\x00\x00\x08\x00"
    return head + rng.randbytes(max(size - len(head), 0))


# extension -> (content type, builder, is text)
BUILDERS: dict[str, tuple[str, Callable[[random.Random, int], bytes], bool]] = {
    "pdf": ("application/pdf", pdf, False),
    "png": ("image/png", png, False),
    "csv": ("text/csv", csv, True),
    "txt": ("text/plain", log, True),
    "zip": ("application/zip", zip_like, False),
}
