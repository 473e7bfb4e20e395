"""Reading a bounce: RFC 3464 delivery-status reports, MTA notification text, the returned message.

Split from daemon.filters.bounce, which decides whether a message is a bounce at all; here is
what one says: which recipients failed, how (RFC 3463 status, diagnostic), and which of our
messages it returns. Every reader is bounded (see the limits): bounces are hostile input.
"""

from __future__ import annotations

import binascii
import dataclasses
import email.policy
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from typing import Any

from ticketd.daemon.parsers.model import ParsedMessage

# Bounds for hostile input. A bounce of our own mail is a few KB; the delivery-status part comes
# before the returned message, so the head of a big bounce holds everything we read. Several
# flufl.bounce patterns are quadratic in the line length, hence the line cap.
SCAN_BYTES = 128 * 1024
SCAN_LINE = 500
MAX_PARTS = 200
MAX_TEXT = 64 * 1024
DIAGNOSTIC_CHARS = 200

POLICY = email.policy.compat32  # flufl.bounce walks compat32 Messages
_ADDRESS = re.compile(r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?"
                      r"(?:\.[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?)+$")
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
# "550 5.1.1 ..." as MTAs quote the remote reply, or qmail's "(#5.1.1)".
_TEXT_STATUS = re.compile(r"(?:(?<!\d)[45]\d\d[ -]+|\(#)([45]\.\d{1,3}\.\d{1,3})(?![\d.]*\d)")
_REPLY_CODE = re.compile(r"^\s*([245])\d\d\b")
_MSGID = re.compile(r"<[^<>\s]{1,250}>")
_MSGID_LINE = re.compile(r"^[ \t>]*Message-ID:[ \t]*\r?\n?[ \t]*(<[^<>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_LONG_LINE = re.compile(rb"[^\r\n]{%d}[^\r\n]*" % SCAN_LINE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_FAILED, _DELAYED = "failed", "delayed"
REPORTS = ("message/delivery-status", "message/global-delivery-status")
_RETURNED = ("message/rfc822", "message/global", "message/rfc822-headers", "message/global-headers")
_HEADERS = "text/rfc822-headers"


@dataclass(frozen=True)
class Failure:
    """One failed recipient as a DSN per-recipient block (or a heuristic) reports it."""

    address: str
    permanent: bool
    status: str = ""
    diagnostic: str = ""
    aliases: tuple[str, ...] = ()  # the Original- and Final-Recipient forms of the address


def bounded_head(raw: bytes) -> bytes:
    """The head of the message with every line cut to SCAN_LINE characters (RFC 5322 allows 998)."""
    return _LONG_LINE.sub(lambda m: m.group(0)[:SCAN_LINE], raw[:SCAN_BYTES])


def outer_parts(msg: Message) -> Iterator[Message]:
    """Every part of the report itself, not descending into returned or forwarded messages."""
    stack, seen = [msg], 0
    while stack and seen < MAX_PARTS:
        part = stack.pop()
        seen += 1
        yield part
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            stack.extend(reversed([p for p in part.get_payload() if isinstance(p, Message)]))


def plain_address(text: str) -> str:
    """A plain addr-spec, lower case, or "" (flufl's loosest detectors find uuencode lines too)."""
    value = text.strip().strip("<>").strip().lower()
    return value if len(value) <= 254 and _ADDRESS.match(value) else ""


def merge_failures(found: dict[str, bool], reported: list[Failure]) -> list[Failure]:
    """flufl's addresses, with the status and diagnostic of the DSN block naming each."""
    by_address = {alias: failure for failure in reported for alias in failure.aliases}
    rank = {failure.address: i for i, failure in enumerate(reported)}
    merged = []
    for address, permanent in found.items():
        block = by_address.get(address)
        if block is not None and block.status:  # RFC 3463 class beats the Action field
            merged.append(dataclasses.replace(block, address=address))
        elif block is not None:
            merged.append(dataclasses.replace(block, address=address, permanent=permanent or block.permanent))
        else:
            merged.append(Failure(address, permanent))
    # A block flufl skipped (no address type, no Action) still names a failed recipient.
    merged += [f for f in reported if not set(f.aliases) & found.keys()]
    return sorted(merged, key=lambda f: (rank.get(f.address, len(rank)), f.address))


def read_reports(texts: list[str]) -> tuple[list[Failure], str, int]:
    """RFC 3464 reports: the failed and delayed recipients, an X-Original-Message-ID if given, and
    how many recipients were delivered, relayed or expanded."""
    failures: list[Failure] = []
    original, delivered = "", 0
    for text in texts:
        for block in _field_blocks(text):
            original = original or _first_id(block.get("x-original-message-id", "")
                                             or block.get("original-message-id", ""))
            failure = _recipient_failure(block)
            if failure is not None:
                failures.append(failure)
            elif block.get("action", "").strip().lower().startswith(("delivered", "relayed", "expanded")):
                delivered += 1
    return failures, original, delivered


def report_text(part: Message) -> str:
    """The delivery-status body as text; compat32 has already split it into header blocks."""
    payload = part.get_payload()
    if isinstance(payload, str):
        data = part.get_payload(decode=True)
        return data[:MAX_TEXT].decode("utf-8", "replace") if isinstance(data, bytes) else ""
    # Relays that re-encode reports (seen behind Exchange Online) base64 the whole part, or one
    # field group, announced by a Content-Transfer-Encoding "field" in the group before it.
    # compat32 splits the encoded lines as if they were fields: decode them back.
    chunks, encoding, pending = [], _encoding(part), ""
    for block in payload[:MAX_PARTS] if isinstance(payload, list) else ():
        if not isinstance(block, Message):
            continue
        chunks.append("\n".join(f"{k}: {_text(v)}" for k, v in block.items() if k.lower() != "content-length"))
        inner = block.get_payload()
        if isinstance(inner, str) and inner.strip():  # text that is no field: global-delivery-status, base64
            chunks.append(_decoded(inner, encoding or _encoding(block) or pending))
        pending = _encoding(block)
    return "\n\n".join(chunks)[:MAX_TEXT]


def _encoding(part: Message) -> str:
    value = _text(part.get("content-transfer-encoding", "")).strip().lower()
    return value if value in ("base64", "quoted-printable") else ""


def _decoded(text: str, encoding: str) -> str:
    data = text[:MAX_TEXT * 2].encode("ascii", "ignore")
    try:
        if encoding == "base64":
            return binascii.a2b_base64(data).decode("utf-8", "replace")
        if encoding == "quoted-printable":
            return quopri.decodestring(data).decode("utf-8", "replace")
    except (binascii.Error, ValueError):  # bad padding: read what is there as it is
        pass
    return text


def unsplit_texts(parts: list[Message]) -> list[str]:
    """The bodies of multiparts compat32 could not split (no or a wrong boundary)."""
    texts = []
    for part in parts:
        payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, str):
            texts.append(payload[:MAX_TEXT])
    return texts


def _field_blocks(text: str) -> Iterator[dict[str, str]]:
    """RFC 3464 field groups: ``Name: value`` lines, folded lines joined, blank lines between groups."""
    for chunk in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        fields: dict[str, str] = {}
        name = ""
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t") and name:
                fields[name] += " " + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                name = key.strip().lower()
                if name in fields:  # the first occurrence counts
                    name = ""
                    continue
                fields[name] = value.strip()
            else:
                name = ""
        if fields:
            yield fields


def _recipient_failure(block: dict[str, str]) -> Failure | None:
    original = _typed_address(block.get("original-recipient", ""))
    final = _typed_address(block.get("final-recipient", "")) or _typed_address(block.get("x-actual-recipient", ""))
    address = original or final
    if not address:
        return None
    action = block.get("action", "").strip().lower()
    status = _status(block.get("status", "")) or _status(block.get("diagnostic-code", ""))
    diagnostic = _diagnostic(block.get("diagnostic-code", ""))
    if not diagnostic and status and "(" in block.get("status", ""):  # "5.0.0 (recipient reached disk quota)"
        diagnostic = one_line(block["status"])
    if action.startswith(("fail", "error")):  # opensmtpd writes "error"
        kind = _FAILED
    elif action.startswith("delayed"):
        kind = _DELAYED
    elif action:  # delivered, relayed, expanded: not a failure
        return None
    elif status[:1] in ("4", "5"):
        kind = _FAILED if status[0] == "5" else _DELAYED
    else:
        return None
    if status[:1] in ("4", "5"):
        permanent = status[0] == "5"
    elif (code := _REPLY_CODE.match(diagnostic)) and code.group(1) in "45":
        permanent = code.group(1) == "5"
    else:
        permanent = kind == _FAILED
    aliases = tuple(a for a in (original, final) if a)
    return Failure(address, permanent, status, diagnostic, aliases)


def _typed_address(value: str) -> str:
    """``rfc822; user@example.com`` (address type optional, angle brackets and a comment tolerated)."""
    kind, sep, rest = value.partition(";")
    words = (rest if sep else kind).split()
    return plain_address(words[0]) if words else ""


def _status(value: str) -> str:
    match = _STATUS.search(value)
    return ".".join(match.groups()) if match and match.group(1) != "2" else ""


def _diagnostic(value: str) -> str:
    kind, sep, rest = value.partition(";")
    text = rest if sep and len(kind) < 20 else value  # "smtp; 550 5.1.1 ..." -> "550 5.1.1 ..."
    return one_line(text)


def one_line(text: str) -> str:
    """Peer text for a log line or `tickets show`: no controls, whitespace collapsed, bounded."""
    line = " ".join(_CONTROL.sub(" ", text[:MAX_TEXT]).split())
    if len(line) <= DIAGNOSTIC_CHARS:
        return line
    cut = line[:DIAGNOSTIC_CHARS - 1]
    return (cut.rpartition(" ")[0] or cut) + "…"


def status_in_text(parts: list[Message]) -> tuple[str, str]:
    """The first ``550 5.1.1 ...`` line in the report's own text parts, for formats without a DSN."""
    for text in _texts(parts):
        for line in text.splitlines():
            match = _TEXT_STATUS.search(line)
            if match:
                return match.group(1), one_line(line)
    return "", ""


def _texts(parts: list[Message]) -> Iterator[str]:
    budget = MAX_TEXT
    for part in parts:
        if budget <= 0:
            return
        if part.get_content_maintype() != "text" or part.is_multipart() or part.get_content_type() == _HEADERS:
            continue
        data = part.get_payload(decode=True)
        if isinstance(data, bytes):
            text = data[:budget].decode("utf-8", "replace")
            budget -= len(text)
            yield text


# --- which of our messages bounced ----------------------------------------------------------

def returned_id(parts: list[Message]) -> str:
    """The Message-ID of the returned message or of its returned header block."""
    for part in parts:
        ctype = part.get_content_type()
        headers: Message | None = None
        if ctype == _HEADERS:
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                headers = BytesHeaderParser(policy=POLICY).parsebytes(data[:MAX_TEXT])
        elif ctype in _RETURNED:
            headers = _returned_headers(part)
        if headers is not None:
            found = _first_id(_text(headers.get("message-id", "")))
            if found:
                return found
    return ""


def _returned_headers(part: Message) -> Message | None:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload and isinstance(payload[0], Message) else None
    if inner is None or inner.get("message-id") is not None:
        return inner
    # Some MTAs base64 the returned message; compat32 then sees no headers, only the encoded text.
    encoded = inner.get_payload()
    if isinstance(encoded, str) and str(part.get("content-transfer-encoding", "")).strip().lower() == "base64":
        try:
            data = binascii.a2b_base64(encoded[:MAX_TEXT * 2].encode("ascii", "ignore"))
        except (binascii.Error, ValueError):
            return inner
        return BytesHeaderParser(policy=POLICY).parsebytes(data)
    return inner


def reply_id(message: ParsedMessage) -> str:
    """Some MTAs (Gmail among them) thread the bounce onto the message that bounced."""
    if message.in_reply_to:
        return _first_id(message.in_reply_to[0])
    if message.references:
        return _first_id(message.references[-1])
    return ""


def body_id(parts: list[Message]) -> str:
    """A ``Message-ID:`` line quoted in the notification text (formats that inline the headers)."""
    for text in _texts(parts):
        match = _MSGID_LINE.search(text)
        if match:
            return match.group(1)
    return ""


def _first_id(value: str) -> str:
    match = _MSGID.search(value)
    return match.group(0) if match else ""


def _text(value: Any) -> str:
    """A compat32 header value as str (8-bit headers come back as Header objects)."""
    try:
        return str(value)
    except (UnicodeError, LookupError, ValueError, TypeError):
        return ""
