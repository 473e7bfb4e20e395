"""RFC 2047 encoded words and raw 8-bit header bytes, decoded to text."""

from __future__ import annotations

import binascii
import re

from ticketd.daemon.parsers.charsets import Hints, decode_text

# Lenient on purpose: real mail puts spaces and '?' inside Q words and omits B padding.
# The length bound keeps a header full of unterminated "=?" from costing quadratic time.
_WORD = re.compile(r"=\?([^?\s]{1,64})\?([bBqQ])\?(.{0,1000}?)\?=", re.DOTALL)
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_FOLD = re.compile(r"\r?\n(?=[ \t])|\r(?=[ \t])")
_NEWLINES = re.compile(r"[\r\n]+")


def unfold(value: str) -> str:
    """RFC 5322 2.2.3: remove the line breaks of folding, keep the whitespace."""
    return _NEWLINES.sub(" ", _FOLD.sub("", value))


def b_decode(text: str) -> bytes:
    """Base64 of an encoded word, tolerating junk and missing padding."""
    data = _B64_JUNK.sub(b"", text.encode("ascii", "replace"))
    if len(data) % 4 == 1:
        data = data[:-1]
    try:
        return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except binascii.Error:
        return b""


def q_decode(text: str) -> bytes:
    """Quoted-printable of an encoded word (RFC 2047 4.2: '_' is a space)."""
    data = text.encode("utf-8", "surrogateescape").replace(b"_", b" ")
    return _Q_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), data)


Segment = str | tuple[str, bytes]  # literal text, or (charset, bytes) of encoded words


def _segments(value: str) -> list[Segment]:
    """Split into literal runs and encoded runs (adjacent words of one charset joined)."""
    out: list[Segment] = []
    pos = 0
    for match in _WORD.finditer(value):
        literal = value[pos : match.start()]
        # RFC 2047 6.2: whitespace between adjacent encoded words is not displayed.
        if literal and not (out and isinstance(out[-1], tuple) and not literal.strip(" \t")):
            out.append(literal)
        charset, kind, text = match.groups()
        data = b_decode(text) if kind in "bB" else q_decode(text)
        charset = charset.split("*", 1)[0].lower()  # RFC 2231 language suffix
        last = out[-1] if out else None
        if isinstance(last, tuple) and last[0] == charset:
            # Same charset: join the bytes first, since senders split multi-byte characters.
            out[-1] = (charset, last[1] + data)
        else:
            out.append((charset, data))
        pos = match.end()
    if pos < len(value):
        out.append(value[pos:])
    return out


def decode_words(value: str, hints: Hints = ()) -> str:
    """Decode the RFC 2047 encoded words in ``value`` (text already unfolded)."""
    if "=?" not in value:
        return value
    return "".join(
        segment if isinstance(segment, str) else decode_text(segment[1], segment[0], hints).text
        for segment in _segments(value)
    )


def raw_header_text(raw: str, hints: Hints = ()) -> str:
    """Header value as stored by the compat32 parser (8-bit bytes kept as surrogates) to text."""
    if raw.isascii():
        return raw
    data = raw.encode("utf-8", "surrogateescape")
    # RFC 6532 allows UTF-8 headers; anything else is guessed from the message's charset.
    return decode_text(data, None, hints).text


def header_text(raw: str, hints: Hints = ()) -> str:
    """A header value fully decoded: 8-bit repaired, unfolded, encoded words decoded."""
    return decode_words(unfold(raw_header_text(raw, hints)), hints)
