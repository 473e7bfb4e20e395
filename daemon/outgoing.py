"""Helpers for mail we write: Message-IDs, reply subjects, header-safe values."""

from __future__ import annotations

import binascii
import bisect
import email.base64mime
import email.quoprimime
import itertools
import operator
import os
import re
import secrets
from collections.abc import Iterator
from datetime import datetime, timezone
from email.charset import RFC2047_CHROME_LEN, SHORTEST, Charset
from email.header import MAXLINELEN, Header
from email.utils import formataddr
from typing import Any

_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw|wg|fwd?)\s*:\s*", re.IGNORECASE)
_TAG = re.compile(r"\[#\d+\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def one_line(value: str, limit: int = 900) -> str:
    """Collapse CR, LF and other controls so peer data can never start a new header."""
    # Most values are one clean line already: printable (no control, no whitespace but the
    # space) without a run of spaces or an outer one, which the collapsing would leave as it is.
    if value.isprintable() and "  " not in value and value[:1] != " " and value[-1:] != " ":
        return value[:limit]
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


def _unique_part() -> None:
    """A random prefix for this process and a counter after it: unique Message-IDs at no
    system call each (uuid4 read the kernel's random source for every mail we write). A
    Message-ID is no secret: replies are matched by signed addresses, never by guessing it."""
    global _PREFIX, _COUNTER
    _PREFIX, _COUNTER = secrets.token_hex(8), itertools.count(1)


_PREFIX, _COUNTER = "", itertools.count(1)
_unique_part()
os.register_at_fork(after_in_child=_unique_part)  # a forked child must not repeat its parent's


def new_message_id(ticket_number: int, from_address: str) -> str:
    domain = from_address.rpartition("@")[2] or "ticketd.invalid"
    return f"<ticketd.{ticket_number}.{_PREFIX}{next(_COUNTER):x}@{one_line(domain)}>"


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def date_value(instant: datetime) -> str:
    """An RFC 5322 date in UTC, "Thu, 03 Dec 2026 11:42:59 +0000", as email.utils.format_datetime
    writes it but without its strftime("%z"), which has the C library look up the local time
    zone each call."""
    t = instant.astimezone(timezone.utc)
    return "%s, %02d %s %04d %02d:%02d:%02d +0000" % (  # a third faster than an f-string's format specs
        _DAYS[t.weekday()], t.day, _MONTHS[t.month - 1], t.year, t.hour, t.minute, t.second)


def reply_subject(subject: str, ticket_number: int) -> str:
    """``Re: <subject> [#N]``, without piling up Re: or a second tag."""
    tag = f"[#{ticket_number}]"
    # Another ticket's tag in a new ticket's subject would invite replies onto the wrong ticket.
    text = one_line(_TAG.sub(lambda m: m.group(0) if m.group(0) == tag else "", subject)) or "(no subject)"
    if tag not in text:
        text = f"{text} {tag}"
    return text if _REPLY_PREFIX.match(text) else f"Re: {text}"


def header_line(name: str, value: str) -> bytes:
    """One folded header; RFC 2047-encoded when not ASCII; never more than one logical line."""
    value = one_line(value, 2000)
    if value.isascii():
        return _folded(name, value).encode("ascii")
    # email.header's first line holds MAXLINELEN characters, "Name: " included.
    encoded = _UTF8.one_word(value, MAXLINELEN - len(name) - 2) or \
        Header(value, _UTF8, header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _folded(name: str, value: str) -> str:
    """An ASCII header folded at spaces before 78 characters (RFC 5322 2.2.3), as email.header
    does it, at a tenth of the cost (References of a long thread, for each mail we write)."""
    if len(name) + len(value) <= 76:  # "Name: value" fits one line: the loop below would not fold
        return f"{name}: {value}\r\n"
    line, lines = f"{name}:", []
    for word in value.split(" "):  # one_line left single spaces only
        if len(line) + 1 + len(word) > 78 and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word
    return "\r\n".join([*lines, line]) + "\r\n"


def address_header(name: str, display: str, address: str) -> bytes:
    # _UTF8, not charset="utf-8": formataddr would build a Charset for each non-ASCII name.
    return f"{name}: {formataddr((one_line(display), one_line(address)), charset=_UTF8)}\r\n".encode("ascii")


class _Utf8Charset(Charset):
    """UTF-8 for email.header, whose encoded words come out exactly as the standard library's, in linear time.

    Charset.header_encode_lines splits a value into encoded words by encoding every prefix
    again (quadratic: ~90 µs for a 50-character non-ASCII subject, a notification's Subject).
    An encoded word's length only grows with each character, by its octets (base64: 4 per
    3 begun) or their Q-encoded length, so each word is the longest run that fits: found by
    bisection in the running sum of the characters' costs. A value whose one encoded word fits
    its first line needs none of email.header's formatting (one_word).
    """

    def __init__(self) -> None:
        super().__init__("utf-8")

    def header_encode_lines(self, string: str, maxlengths: Iterator[int]) -> list[str | None]:
        codec = self.output_codec or "us-ascii"
        encoder = self._get_encoder(string.encode(codec))
        qp = encoder is email.quoprimime
        costs = list(map(len, map(str.encode, string)))  # each character's octets in UTF-8, the codec
        if qp:  # Q: an ASCII character's own length (1, or 3 for =XX); 3 for each octet of any other
            costs = list(map(operator.mul, costs, map(_Q_ASCII.get, string, itertools.repeat(3))))
        total = [0, *itertools.accumulate(costs)]  # total[k]: the cost of string[:k]
        extra = len(self.get_output_charset()) + RFC2047_CHROME_LEN
        lines: list[str | None] = []
        start, end = 0, len(string)
        while True:
            maxlen = next(maxlengths) - extra
            budget = maxlen if qp else maxlen // 4 * 3  # in octets for base64
            stop = max(bisect.bisect_right(total, total[start] + budget, lo=start) - 1, start)
            if lines:  # as Charset does: a word after a split holds its first character, fitting or not
                stop = max(stop, start + 1)
            if stop == end:
                lines.append(encoder.header_encode(string[start:].encode(codec), codec))
                return lines
            # None: not even one character fits the first line (Charset's way of saying so).
            lines.append(encoder.header_encode(string[start:stop].encode(codec), codec) if stop > start else None)
            start = stop

    def one_word(self, string: str, room: int) -> str | None:
        """What email.header writes for ``string`` when one encoded word of it fits the ``room``
        of its first line: that word alone (the common short subject or name); else None."""
        codec = self.output_codec or "us-ascii"
        octets = string.encode(codec)
        encoder = self._get_encoder(octets)
        length = _q_length(octets) if encoder is email.quoprimime else -(-len(octets) // 3) * 4
        if length > room - len(self.get_output_charset()) - RFC2047_CHROME_LEN:
            return None
        return encoder.header_encode(octets, codec)  # type: ignore[no-any-return]

    def _get_encoder(self, header_bytes: bytes) -> Any:
        """Charset._get_encoder's choice, the Q length counted in C (formataddr asks it for a name)."""
        if self.header_encoding != SHORTEST:
            return super()._get_encoder(header_bytes)  # type: ignore[misc]
        if -(-len(header_bytes) // 3) * 4 < _q_length(header_bytes):
            return email.base64mime
        return email.quoprimime


def _q_length(octets: bytes) -> int:
    """email.quoprimime.header_length, counted in C: one character per plain octet, three per =XX."""
    return len(octets) + 2 * len(octets.translate(None, _Q_PLAIN))


_Q_PLAIN = bytes(octet for octet in range(256) if email.quoprimime.header_length(bytes([octet])) == 1)
_Q_ASCII = {chr(code): email.quoprimime.header_length(bytes([code])) for code in range(128)}  # 1, or 3 for =XX
_UTF8 = _Utf8Charset()


def text_message(headers: list[bytes], body: str) -> bytes:
    """A text/plain message from prepared header lines; quoted-printable when not ASCII.

    Built by hand: email.message with the default policy costs ~1.5 ms per acknowledgement.
    """
    text = body.replace("\r\n", "\n") if "\r" in body else body  # a one-character search is a memchr: far cheaper
    if text.isascii() and max(map(len, text.split("\n"))) <= 990:
        charset, encoding, payload = "us-ascii", "7bit", text.encode("ascii")
    else:
        charset, encoding = "utf-8", "quoted-printable"
        payload = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    head = b"".join(headers) + (
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"{charset}\"\r\n"
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode("ascii")
    return head + payload.replace(b"\n", b"\r\n")
