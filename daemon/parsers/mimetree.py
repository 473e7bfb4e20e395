"""The stdlib MIME parser, bounded, plus per-part helpers (transfer decoding, names, types)."""

from __future__ import annotations

import binascii
import email.message
import quopri
import re
from collections.abc import Iterator
from email.feedparser import BytesFeedParser
from email.policy import compat32
from typing import Any

from ticketd.daemon.parsers.charsets import Hints, decode_text
from ticketd.daemon.parsers.encoded_words import decode_words, raw_header_text, unfold
from ticketd.daemon.parsers.uuencode import uudecode

MAX_DEPTH = 20  # multipart nesting; real mail stays under 10, deeper is an attack
MAX_PARTS = 500  # MIME entities per message; parts beyond are not parsed as multiparts

_OPAQUE = "application/octet-stream"
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_B64_JUNK_KEEP_PAD = re.compile(rb"[^A-Za-z0-9+/=]")
_BOUNDARY = re.compile(r"""boundary\s*=\s*(?:"([^"]+)"|([^\s;"]+))""", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN_TYPE = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+/[!#$%&'*+.^_`|~0-9a-z-]+$")


class Part(email.message.Message):
    """A compat32 message whose message/* bodies stay raw bytes.

    While parsing, the parser asks ``get_content_type`` how to read the body. For
    message/* we answer "opaque" so an attached mail is kept byte for byte (and never
    recursed into), and past the depth/part limits multiparts are kept opaque too.
    ``true_type`` always gives the declared type.
    """

    parsing = False
    depth = 0
    over_limit = False

    def get_content_type(self) -> str:
        real = super().get_content_type()
        if self.parsing and (real.startswith("message/") or (self.over_limit and real.startswith("multipart/"))):
            return _OPAQUE
        return real

    def get_boundary(self, failobj: Any = None) -> Any:
        """The boundary, also when the Content-Type lacks the ';' before it (RFC 2045 5.1
        requires it; MUAs do not always write it)."""
        found = super().get_boundary(failobj)
        if isinstance(found, str):
            return unfold(found).strip()  # a boundary folded onto the next line
        match = _BOUNDARY.search(unfold(str(self.get("content-type", ""))))
        return (match.group(1) or match.group(2)).strip() if match else failobj

    def true_type(self) -> str:
        """The declared content type, lower case, with the RFC 2045 defaults."""
        return super().get_content_type()


class _BoundedParser(BytesFeedParser):
    """Records depth on every part and stops nesting past the limits."""

    def __init__(self) -> None:
        super().__init__(_factory=Part, policy=compat32)
        self.parts: list[Part] = []
        self.truncated = False

    def _new_message(self) -> None:  # the stdlib hook that creates every part
        super()._new_message()  # type: ignore[misc]
        part: Part = self._cur  # type: ignore[attr-defined]
        part.parsing = True
        part.depth = len(self._msgstack) - 1  # type: ignore[attr-defined]
        part.over_limit = part.depth >= MAX_DEPTH or len(self.parts) >= MAX_PARTS
        self.truncated = self.truncated or part.over_limit
        self.parts.append(part)


def parse_tree(raw: bytes) -> tuple[Part, bool]:
    """Parse ``raw`` into a part tree; True when the limits cut it short."""
    parser = _BoundedParser()
    parser.feed(raw)
    root = parser.close()
    for part in parser.parts:
        part.parsing = False
    assert isinstance(root, Part)
    return root, parser.truncated


def raw_payload(part: email.message.Message) -> bytes:
    """The part's body bytes as on the wire (the parser keeps 8-bit bytes as surrogates)."""
    # Not get_payload(): for 8-bit bodies compat32 returns them charset-decoded with U+FFFD.
    payload = part._payload  # type: ignore[attr-defined]  # noqa: SLF001
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogateescape")
    return b""


def transfer_encoding(part: email.message.Message) -> str:
    return unfold(str(part.get("content-transfer-encoding", ""))).strip().strip("\"'").lower()


def decode_body(part: email.message.Message) -> tuple[bytes, str]:
    """Transfer-decoded body bytes and a defect ("" when clean)."""
    data = raw_payload(part)
    cte = transfer_encoding(part)
    if cte == "base64":
        return b64_decode(data)
    if cte == "quoted-printable":
        return quopri.decodestring(data), ""
    if cte in ("x-uuencode", "uuencode", "x-uue", "uue"):
        decoded = uudecode(data)
        return (decoded, "") if decoded is not None else (data, "uuencoded body unreadable: kept raw")
    if cte in ("", "7bit", "8bit", "binary"):
        return data, ""
    return data, f"unknown transfer encoding {cte!r}: body kept as is"


def b64_decode(data: bytes) -> tuple[bytes, str]:
    """Base64 body, tolerating line noise and bad padding (RFC 2045 6.8: ignore junk)."""
    body = data.rstrip(b" \t\r\n=")
    if b"=" not in body:
        try:
            return binascii.a2b_base64(data), ""
        except binascii.Error:
            return _b64_chunk(_B64_JUNK.sub(b"", body)), "base64 body damaged: repaired"
    # Padding before the end: encoders that pad every line, or text after the data.
    return b"".join(_b64_chunk(chunk) for chunk in _padded_chunks(data)), "base64 padding inside the body"


def _padded_chunks(data: bytes) -> Iterator[bytes]:
    """The base64 runs of ``data``, each ending at its own padding."""
    pending: list[bytes] = []
    for line in data.splitlines():
        clean = _B64_JUNK_KEEP_PAD.sub(b"", line)
        pad = clean.find(b"=")
        if pad < 0:
            pending.append(clean)
            continue
        # What follows the padding on that line is not base64 data.
        pending.append(clean[:pad])
        yield b"".join(pending)
        pending = []
    yield b"".join(pending)


def _b64_chunk(chunk: bytes) -> bytes:
    if len(chunk) % 4 == 1:
        chunk = chunk[:-1]  # a lone trailing sextet carries no whole byte
    try:
        return binascii.a2b_base64(chunk + b"=" * (-len(chunk) % 4))
    except binascii.Error:
        return b""


def content_type(part: email.message.Message) -> str:
    """The part's content type; an unparseable Content-Type counts as text/plain (RFC 2045 5.2)."""
    real = part.true_type() if isinstance(part, Part) else part.get_content_type()
    return real if _TOKEN_TYPE.match(real) else "text/plain"


def disposition(part: email.message.Message) -> str:
    value = part.get_content_disposition()
    return value.strip().lower() if value else ""


def first_raw(part: email.message.Message, name: str) -> str | None:
    """First raw value of header ``name`` (compat32 keeps 8-bit bytes as surrogates)."""
    lname = name.lower()
    for key, value in part.raw_items():
        if key.lower() == lname:
            return str(value)
    return None


def _param_view(part: email.message.Message, hints: Hints) -> email.message.Message:
    """Content-Type and -Disposition with 8-bit bytes decoded, for the stdlib's parameter
    parser (which would turn them into U+FFFD)."""
    view = email.message.Message()
    for key in ("content-type", "content-disposition"):
        value = first_raw(part, key)
        if value is not None:
            view[key] = unfold(raw_header_text(value, hints))
    return view


def filename(part: email.message.Message, hints: Hints) -> str:
    """Decoded attachment name (RFC 2231 parameters, RFC 2047 words, raw 8-bit), display only."""
    view = _param_view(part, hints)
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        try:
            value = view.get_param(param, None, header)
        except (ValueError, LookupError, UnicodeError):  # broken RFC 2231 continuations
            continue
        if isinstance(value, tuple):  # RFC 2231: (charset, language, percent-decoded text)
            label, _, text = value
            value = decode_text(text.encode("raw-unicode-escape"), label or "us-ascii", hints).text
        if value:
            # RFC 2047 words are not allowed in parameters, yet most MUAs write them there.
            return _CONTROL.sub("", decode_words(str(value), hints)).strip()
    return ""


def charset(part: email.message.Message) -> str | None:
    try:
        value = part.get_param("charset")
    except (ValueError, LookupError, UnicodeError):
        return None
    if isinstance(value, tuple):  # RFC 2231 form
        value = value[2]
    return str(value) if value else None


def content_id(part: email.message.Message) -> str:
    value = first_raw(part, "content-id")
    if value is None:
        return ""
    return unfold(raw_header_text(value)).strip().strip("<>").strip()
