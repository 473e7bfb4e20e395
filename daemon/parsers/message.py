"""parse_message: raw bytes in, one normalized ParsedMessage out."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ticketd.daemon.parsers import body, headerblock, mimetree
from ticketd.daemon.parsers.charsets import Hints, message_hints
from ticketd.daemon.parsers.encoded_words import header_text
from ticketd.daemon.parsers.reply_text import new_text
from ticketd.daemon.parsers.headers import message_ids, name_only, parse_addresses, parse_date
from ticketd.daemon.parsers.model import Address, ParsedMessage

MAX_HEADERS = 1000  # header fields kept in ParsedMessage.headers
MAX_AUTH_RESULTS = 20  # each MTA on the way adds one; the trusted one is the topmost
MAX_HEADER_CHARS = 100_000  # per header value; the longest real References run to ~10 KB

HINT_SCAN_BYTES = 1_000_000  # the start of a message is where its charsets are declared
# Two patterns, not one alternation under re.I: each then starts with a literal the regex
# engine can skip to, which made the scan of a message with a 1 MB attachment 2x faster.
_CHARSET_PARAM = re.compile(rb"""[cC][hH][aA][rR][sS][eE][tT]\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""")
_ENCODED_WORD_CHARSET = re.compile(rb"""=\?([A-Za-z0-9_.:-]{1,40})(?:\*[^?]{0,20})?\?[bBqQ]\?""")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]+")

RawHeaders = list[tuple[str, str]]


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse one RFC 5322 message; raises UnreadableMessage only when it is not a message at all."""
    defects: list[str] = []
    data = headerblock.repair(headerblock.message_bytes(raw, defects), defects)
    root, truncated = mimetree.parse_tree(data)
    if truncated:
        defects.append("MIME structure too deep or too many parts: the rest kept opaque")
    hints = _message_hints(data)
    raw_headers = _raw_headers(root, defects)
    found = body.walk(root, hints)

    def addresses(name: str) -> tuple[Address, ...]:
        value = _first(raw_headers, name)
        return tuple(parse_addresses(value, hints, defects, name)) if value else ()

    author, reply_to, to, cc = (
        _author(raw_headers, hints, defects),
        addresses("reply-to"),
        addresses("to"),
        addresses("cc"),
    )
    date = parse_date(_first(raw_headers, "date"), defects)
    return ParsedMessage(
        from_=author,
        reply_to=reply_to,
        to=to,
        cc=cc,
        subject=_CONTROL.sub(" ", header_text(_first(raw_headers, "subject") or "", hints)).strip(),
        date=date,
        message_id=next(iter(message_ids(_first(raw_headers, "message-id"))), ""),
        in_reply_to=message_ids(_first(raw_headers, "in-reply-to")),
        references=message_ids(_first(raw_headers, "references")),
        text=found.text,
        html=found.html,
        new_text=new_text(found.text, found.html or None),
        attachments=found.attachments,
        headers=tuple((name, header_text(value, hints)) for name, value in raw_headers),
        defects=tuple(dict.fromkeys([*defects, *found.defects])),
        sender=next(iter(addresses("sender")), None),
        # Undecoded: an encoded word the MTA copied in could otherwise spell a forged "dkim=pass".
        auth_results=tuple(_all(raw_headers, "authentication-results"))[:MAX_AUTH_RESULTS],
    )


def _raw_headers(root: mimetree.Part, defects: list[str]) -> RawHeaders:
    items = [(name.strip(), str(value)) for name, value in root.raw_items()]
    if len(items) > MAX_HEADERS:
        defects.append(f"{len(items)} header fields: kept the first {MAX_HEADERS}")
        items = items[:MAX_HEADERS]
    if any(len(value) > MAX_HEADER_CHARS for _, value in items):
        defects.append(f"header value over {MAX_HEADER_CHARS} characters: truncated")
        items = [(name, value[:MAX_HEADER_CHARS]) for name, value in items]
    return items


def _first(raw_headers: RawHeaders, name: str) -> str | None:
    return next(_all(raw_headers, name), None)


def _all(raw_headers: RawHeaders, name: str) -> Iterator[str]:
    return (value for key, value in raw_headers if key.lower() == name)


def _author(raw_headers: RawHeaders, hints: Hints, defects: list[str]) -> Address | None:
    """First usable From mailbox (a message may carry several From fields); then a From that
    gives a name but no address. Sender is not the author: ParsedMessage.requester falls back."""
    for value in _all(raw_headers, "from"):
        found = parse_addresses(value, hints, defects, "from")
        if found:
            return found[0]
    first_from = _first(raw_headers, "from")
    return name_only(first_from, hints) if first_from else None


def _message_hints(data: bytes) -> Hints:
    """Charsets the message declares anywhere (parts, attached mails, encoded words): the
    best guesses for its unlabelled 8-bit header bytes."""
    head = data[:HINT_SCAN_BYTES]
    found = sorted((m.start(), m.group(1)) for pattern in (_CHARSET_PARAM, _ENCODED_WORD_CHARSET)
                   for m in pattern.finditer(head))
    return message_hints([label.decode("ascii") for _, label in found])
