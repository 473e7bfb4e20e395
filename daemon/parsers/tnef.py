"""Outlook winmail.dat (application/ms-tnef) unpacked with tnefparse."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass

from tnefparse import TNEF

from ticketd.daemon.parsers.charsets import decode_text
from ticketd.daemon.parsers.model import Attachment
from ticketd.daemon.parsers.rtf import decompress, rtf_to_text

TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
MAX_TNEF_ATTACHMENTS = 200


class TnefError(Exception):
    """The winmail.dat could not be unpacked."""


@dataclass(frozen=True)
class Unpacked:
    """What a winmail.dat held."""

    attachments: tuple[Attachment, ...]
    text: str
    html: str


def is_tnef(content_type: str, filename: str) -> bool:
    return content_type in TNEF_TYPES or filename.lower() == "winmail.dat"


def unpack(data: bytes) -> Unpacked:
    """The files and body inside a TNEF blob; raises TnefError when it is not readable."""
    try:
        tnef = TNEF(data, do_checksum=False)
        files = tuple(_attachment(item) for item in tnef.attachments[:MAX_TNEF_ATTACHMENTS])
        text, html = _text(tnef.body), _text(tnef.htmlbody)
        # Not tnef.rtfbody: with compressed_rtf installed it decompresses without a size bound
        # (~8x the input, 20x slower than ours) and refuses streams without a CRC.
        compressed = getattr(tnef, "_rtfbody", None)
        if not text and not html and isinstance(compressed, bytes):
            text = _rtf_text(compressed)
    # tnefparse reads attacker bytes with struct/indexing and raises whatever it hits.
    except Exception as exc:  # noqa: BLE001
        raise TnefError(f"{type(exc).__name__}: {exc}") from exc
    if not files and not text and not html:
        raise TnefError("no attachments and no body")
    return Unpacked(files, text, html)


def _attachment(item: object) -> Attachment:
    name = _text(item.long_filename())  # type: ignore[attr-defined]
    data = bytes(item.data or b"")  # type: ignore[attr-defined]
    guessed = mimetypes.guess_type(name, strict=False)[0] if name else None
    return Attachment(filename=name, content_type=guessed or "application/octet-stream", content=data)


def _rtf_text(value: bytes) -> str:
    """Outlook's usual body: compressed RTF; "" when broken, so the files still come through."""
    try:
        rtf = value if value.lstrip().startswith(b"{\\rtf") else decompress(value)
    except ValueError:
        return ""
    return rtf_to_text(rtf)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return decode_text(value.rstrip(b"\x00"), None).text
    return str(value).rstrip("\x00") if value else ""
