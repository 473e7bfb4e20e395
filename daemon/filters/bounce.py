"""The bounce filter: recognise delivery failures (RFC 3464 DSNs and the common MTA formats)."""

from __future__ import annotations

import binascii
import dataclasses
import email
import email.policy
import logging
import quopri
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import Any

from daemon.config import Section
from daemon.filters import ACCEPT, FilterContext, Verdict
from daemon.parsers.model import ParsedMessage

log = logging.getLogger("ticketd.bounce")

# Bounds for hostile input. A bounce of our own mail is a few KB; the delivery-status part comes
# before the returned message, so the head of a big bounce holds everything we read. Several
# flufl.bounce patterns are quadratic in the line length, hence the line cap.
SCAN_BYTES = 128 * 1024
SCAN_LINE = 500
MAX_PARTS = 200
MAX_BOUNDARIES = 50
MAX_RECIPIENTS = 100
MAX_TEXT = 64 * 1024
DIAGNOSTIC_CHARS = 200

_POLICY = email.policy.compat32  # flufl.bounce walks compat32 Messages
_NULL_PATHS = {"", "<>", "<mailer-daemon>", "mailer-daemon"}
_DAEMON_LOCAL = re.compile(r"^mail(?:er)?[-_.]?daemon$", re.IGNORECASE)
_DAEMON_NAME = re.compile(r"\bmail(?:er)?[-_ ]?daemon\b", re.IGNORECASE)
_POSTMASTER_LOCAL = re.compile(r"^postmaster$", re.IGNORECASE)
_SYSTEM_NAME = re.compile(
    r"\b(?:mail delivery (?:sub)?system|mail delivery service|mail administrator|internet mail delivery"
    r"|post office|mail system)\b", re.IGNORECASE)
# Subjects MTAs put on bounces; anchored, so "Re: undeliverable mail" from a customer is not one.
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliver|undelivered|returned mail|mail delivery|mail system error|failure notice"
    r"|non[- ]?deliver|delivery (?:status|failure|failed|has failed|notification|report|problem|delayed|error)"
    r"|warning: could not send|could not send message|delayed mail|email delivery error"
    r"|message (?:could not be|not) delivered|mail could not be delivered)", re.IGNORECASE)
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[- ]?(?:reply|response|antwort)|autoreply|auto:|out of (?:the )?office"
    r"|abwesenheit|absence|vacation)", re.IGNORECASE)
_REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?(?:global-)?delivery-status\b", re.IGNORECASE)
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
_REPORTS = ("message/delivery-status", "message/global-delivery-status")
_RETURNED = ("message/rfc822", "message/global", "message/rfc822-headers", "message/global-headers")
_HEADERS = "text/rfc822-headers"


@dataclass(frozen=True)
class Bounce:
    """What a delivery failure report says about the message that bounced."""

    recipients: tuple[str, ...]  # failed addresses, lower case
    permanent: bool  # True for 5.x.x / flufl "permanent" failures
    status: str  # e.g. "5.1.1" ("" if unknown)
    diagnostic: str  # one line, e.g. "550 5.1.1 user unknown" ("" if none)
    original_message_id: str  # "<...>" of the message that bounced, "" if not found
    detector: str  # "dsn" | "flufl:<DetectorName>" | "headers"


@dataclass(frozen=True)
class BounceSettings:
    suppress_days: int = 60  # how long a permanently bounced address gets no automatic mail


def load_settings(section: Section) -> BounceSettings:
    """Read ``[filters.bounce]`` (a ``daemon.config.Section``)."""
    settings = BounceSettings(suppress_days=section.positive("suppress_days", int, 60))
    section.done()
    return settings


class BounceFilter:
    name = "bounce"
    description = "Recognise delivery failures (DSN and common formats); never answer them"

    def __init__(self, settings: BounceSettings) -> None:
        self.settings = settings

    async def check(self, ctx: FilterContext) -> Verdict:
        bounce = parse_bounce(ctx.message, ctx.raw)
        if bounce is None:
            return Verdict()
        who = ", ".join(bounce.recipients[:3]) or "recipient unknown"
        if len(bounce.recipients) > 3:
            who += f" and {len(bounce.recipients) - 3} more"
        return Verdict(action=ACCEPT, reason=f"bounce: {bounce.status or 'no status'} {who}", tags=("bounce",),
                       no_auto_reply=True,
                       details={"bounce": dataclasses.asdict(bounce), "suppress_days": self.settings.suppress_days})


@dataclass(frozen=True)
class _Failure:
    """One failed recipient as a DSN per-recipient block (or a heuristic) reports it."""

    address: str
    permanent: bool
    status: str = ""
    diagnostic: str = ""
    aliases: tuple[str, ...] = ()  # the Original- and Final-Recipient forms of the address


def parse_bounce(message: ParsedMessage, raw: bytes) -> Bounce | None:
    """The delivery failure ``message`` reports, or None when it is not a bounce. Never raises."""
    strong, weak = _header_signals(message)
    if not strong and not weak:
        return None  # ordinary mail is decided from headers alone, without a second parse
    if not strong and _looks_like_auto_reply(message):
        return None  # vacation replies travel with a null Return-Path too (RFC 3834)
    try:
        return _parse(message, raw, strong, weak)
    except Exception as exc:  # hostile input must never stop the pipeline
        log.warning("bounce: cannot read the report in %s (%s); judged from its headers only",
                    _one_line(message.message_id), type(exc).__name__)
        log.debug("bounce: the report's error", exc_info=True)
        if not strong and weak < 2:
            return None
        return Bounce((), False, "", "", _reply_id(message), "headers")


def _parse(message: ParsedMessage, raw: bytes, strong: bool, weak: int) -> Bounce | None:
    data = _bounded(raw)
    if data.lower().count(b"boundary") > MAX_BOUNDARIES:  # the stdlib parser recurses once per level
        raise ValueError("too many nested multiparts")
    msg = email.message_from_bytes(data, policy=_POLICY)
    parts = list(_outer_parts(msg))
    reports = [p for p in parts if p.get_content_type() in _REPORTS]
    if not strong and weak + bool(reports) < 2:
        return None
    sender = {addr for _, addr in _from_addresses(message)}
    # When the MIME split failed (a broken boundary) the DSN fields are still there as plain text.
    failures, report_id, delivered = _read_reports([_report_text(p) for p in reports] or _unsplit_texts(parts))
    found, detector = _flufl(msg)
    if delivered and not failures and not found:
        return None  # a DSN reporting success (NOTIFY=SUCCESS): nothing failed
    if found:
        failures = _merge(found, failures)
        detector = f"flufl:{detector}"
    else:
        detector = "dsn" if failures or reports or _declares_dsn(message) else "headers"
    failures = [f for f in failures if f.address not in sender][:MAX_RECIPIENTS]
    text_status, text_diagnostic = _text_status(parts)
    if text_status:  # a format without per-recipient status: the notification text tells the class
        failures = [f if f.status else dataclasses.replace(f, permanent=text_status[0] == "5", status=text_status,
                                                         diagnostic=f.diagnostic or text_diagnostic)
                    for f in failures]
    chosen = [f for f in failures if f.permanent] or failures
    own_id = message.message_id
    original = next((i for i in (_returned_id(parts), report_id, _reply_id(message), _body_id(parts))
                     if i and i != own_id), "")
    if chosen:
        status = next((f.status for f in chosen if f.status), "")
        diagnostic = next((f.diagnostic for f in chosen if f.diagnostic), "")
        permanent = chosen[0].permanent
    else:
        status, diagnostic, permanent = text_status, text_diagnostic, text_status.startswith("5")
    recipients = tuple(dict.fromkeys(f.address for f in chosen))
    return Bounce(recipients, permanent, status, diagnostic, original, detector)


# --- is it a bounce at all -------------------------------------------------------------------

def _header_signals(message: ParsedMessage) -> tuple[bool, int]:
    """(a strong sign, the number of weak signs) that an MTA wrote this message.

    Strong: a declared DSN, Exim's X-Failed-Recipients, a MAILER-DAEMON sender. Weak, and two are
    needed: a postmaster or "Mail Delivery System" sender, the null Return-Path of RFC 5321
    4.5.5, an MTA's bounce subject. A customer who writes "my email bounced" shows none of them.
    """
    strong = _declares_dsn(message) or message.header("X-Failed-Recipients") is not None
    weak = 0
    mta_sender = False
    for name, addr in _from_addresses(message):
        local = addr.partition("@")[0]
        if _DAEMON_LOCAL.match(local) or (not addr and _DAEMON_NAME.search(name)):
            strong = True
        elif _POSTMASTER_LOCAL.match(local) or _SYSTEM_NAME.search(name) or _DAEMON_NAME.search(name):
            mta_sender = True
    weak += mta_sender
    return_path = message.header("Return-Path")
    weak += return_path is not None and return_path.strip().lower() in _NULL_PATHS
    weak += bool(_BOUNCE_SUBJECT.match(message.subject))
    return strong, weak


def _declares_dsn(message: ParsedMessage) -> bool:
    ctype = message.header("Content-Type") or ""
    return ctype.strip().lower().startswith("multipart/report") and bool(_REPORT_TYPE.search(ctype))


def _looks_like_auto_reply(message: ParsedMessage) -> bool:
    if any(message.header(h) is not None for h in ("X-Autoreply", "X-Autorespond")):
        return True
    return bool(_AUTO_REPLY_SUBJECT.match(message.subject))


def _from_addresses(message: ParsedMessage) -> list[tuple[str, str]]:
    found = [(message.from_.name, message.from_.email.lower())] if message.from_ else []
    header = message.header("From")
    if header:
        found += [(name, addr.lower()) for name, addr in getaddresses([header[:2000]])]
    return found


# --- reading the report ----------------------------------------------------------------------

def _bounded(raw: bytes) -> bytes:
    """The head of the message with every line cut to SCAN_LINE characters (RFC 5322 allows 998)."""
    return _LONG_LINE.sub(lambda m: m.group(0)[:SCAN_LINE], raw[:SCAN_BYTES])


def _outer_parts(msg: Message) -> Iterator[Message]:
    """Every part of the report itself, not descending into returned or forwarded messages."""
    stack, seen = [msg], 0
    while stack and seen < MAX_PARTS:
        part = stack.pop()
        seen += 1
        yield part
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            stack.extend(reversed([p for p in part.get_payload() if isinstance(p, Message)]))


def _flufl(msg: Message) -> tuple[dict[str, bool], str]:
    """The first flufl.bounce detector that finds a valid address: {address: permanent}, its name.

    The detectors run one at a time, in flufl's order, rather than through all_failures(): that
    stops at the first detector that raises (Yale does on a message without From, Yahoo and Sina
    on an 8-bit From), and it does not say which detector spoke.
    """
    detectors = _flufl_detectors()
    if not detectors:  # pragma: no cover - flufl.bounce moved its list
        from flufl.bounce import all_failures

        try:
            temporary, permanent = all_failures(msg)
        except Exception:  # noqa: BLE001 - flufl may raise anything on odd mail
            return {}, ""
        found = _flufl_found(temporary, permanent)
        return found, "all_failures" if found else ""
    for detector in detectors:
        try:
            temporary, permanent = detector().process(msg)
        except Exception as exc:  # noqa: BLE001 - flufl's detectors trust the mail more than we can
            log.debug("bounce: flufl detector %s raised %s", detector.__name__, type(exc).__name__)
            continue
        found = _flufl_found(temporary, permanent)
        if found:
            return found, detector.__name__
    return {}, ""


@cache
def _flufl_detectors() -> tuple[Any, ...]:
    """flufl.bounce's detector classes, imported with the first mail that looks like a bounce.

    Importing flufl.bounce compiles its patterns, ~20 ms at every start; ordinary mail is told
    from a bounce by its headers alone and never needs them.
    """
    try:  # flufl.bounce names its detectors only in a private list; without it we fall back to all_failures
        from flufl.bounce._scan import _DETECTORS
    except ImportError:  # pragma: no cover - a later flufl.bounce may move it
        return ()
    return tuple(_DETECTORS)


def _flufl_found(temporary: Iterable[bytes | str], permanent: Iterable[bytes | str]) -> dict[str, bool]:
    found = {a: False for a in _valid_addresses(temporary)}
    found.update({a: True for a in _valid_addresses(permanent)})
    return found


def _valid_addresses(values: Iterable[bytes | str]) -> list[str]:
    out = []
    for value in values:
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        address = _address(text)
        if address:
            out.append(address)
    return sorted(out)


def _address(text: str) -> str:
    """A plain addr-spec, lower case, or "" (flufl's loosest detectors find uuencode lines too)."""
    value = text.strip().strip("<>").strip().lower()
    return value if len(value) <= 254 and _ADDRESS.match(value) else ""


def _merge(found: dict[str, bool], reported: list[_Failure]) -> list[_Failure]:
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
            merged.append(_Failure(address, permanent))
    # A block flufl skipped (no address type, no Action) still names a failed recipient.
    merged += [f for f in reported if not set(f.aliases) & found.keys()]
    return sorted(merged, key=lambda f: (rank.get(f.address, len(rank)), f.address))


def _read_reports(texts: list[str]) -> tuple[list[_Failure], str, int]:
    """RFC 3464 reports: the failed and delayed recipients, an X-Original-Message-ID if given, and
    how many recipients were delivered, relayed or expanded."""
    failures: list[_Failure] = []
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


def _report_text(part: Message) -> str:
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


def _unsplit_texts(parts: list[Message]) -> list[str]:
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


def _recipient_failure(block: dict[str, str]) -> _Failure | None:
    original = _typed_address(block.get("original-recipient", ""))
    final = _typed_address(block.get("final-recipient", "")) or _typed_address(block.get("x-actual-recipient", ""))
    address = original or final
    if not address:
        return None
    action = block.get("action", "").strip().lower()
    status = _status(block.get("status", "")) or _status(block.get("diagnostic-code", ""))
    diagnostic = _diagnostic(block.get("diagnostic-code", ""))
    if not diagnostic and status and "(" in block.get("status", ""):  # "5.0.0 (recipient reached disk quota)"
        diagnostic = _one_line(block["status"])
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
    return _Failure(address, permanent, status, diagnostic, aliases)


def _typed_address(value: str) -> str:
    """``rfc822; user@example.com`` (address type optional, angle brackets and a comment tolerated)."""
    kind, sep, rest = value.partition(";")
    words = (rest if sep else kind).split()
    return _address(words[0]) if words else ""


def _status(value: str) -> str:
    match = _STATUS.search(value)
    return ".".join(match.groups()) if match and match.group(1) != "2" else ""


def _diagnostic(value: str) -> str:
    kind, sep, rest = value.partition(";")
    text = rest if sep and len(kind) < 20 else value  # "smtp; 550 5.1.1 ..." -> "550 5.1.1 ..."
    return _one_line(text)


def _one_line(text: str) -> str:
    """Peer text for a log line or `tickets show`: no controls, whitespace collapsed, bounded."""
    line = " ".join(_CONTROL.sub(" ", text[:MAX_TEXT]).split())
    if len(line) <= DIAGNOSTIC_CHARS:
        return line
    cut = line[:DIAGNOSTIC_CHARS - 1]
    return (cut.rpartition(" ")[0] or cut) + "…"


def _text_status(parts: list[Message]) -> tuple[str, str]:
    """The first ``550 5.1.1 ...`` line in the report's own text parts, for formats without a DSN."""
    for text in _texts(parts):
        for line in text.splitlines():
            match = _TEXT_STATUS.search(line)
            if match:
                return match.group(1), _one_line(line)
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

def _returned_id(parts: list[Message]) -> str:
    """The Message-ID of the returned message or of its returned header block."""
    for part in parts:
        ctype = part.get_content_type()
        headers: Message | None = None
        if ctype == _HEADERS:
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                headers = BytesHeaderParser(policy=_POLICY).parsebytes(data[:MAX_TEXT])
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
        return BytesHeaderParser(policy=_POLICY).parsebytes(data)
    return inner


def _reply_id(message: ParsedMessage) -> str:
    """Some MTAs (Gmail among them) thread the bounce onto the message that bounced."""
    if message.in_reply_to:
        return _first_id(message.in_reply_to[0])
    if message.references:
        return _first_id(message.references[-1])
    return ""


def _body_id(parts: list[Message]) -> str:
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
