"""Structured header fields: address lists, dates and message ids."""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime, timedelta, timezone

from mailparser.dates import parse_mail_date
from mailparser.utils import get_addresses

from ticketd.daemon.addresses import is_local_only, is_valid
from ticketd.daemon.parsers.charsets import Hints
from ticketd.daemon.parsers.encoded_words import decode_words, raw_header_text, unfold
from ticketd.daemon.parsers.model import Address

MAX_ADDRESSES = 1000  # per header; a mass mailing lists more, a ticket needs none of them
MAX_STRUCTURED_CHARS = 32_000  # address header parsed structurally up to this length
MAX_RECOVER_CHARS = 2000  # longest unparseable item handed to the stdlib's lenient parser
_MSGID = re.compile(r"<([^<>]*)>")
_BARE_TOKEN = re.compile(r'[^\s<>()",;:]+')
_BARE_ADDR = re.compile(r"[^\s<>()\",;:@]+@[^\s<>()\",;:@]+\.[^\s<>()\",;:@]+")
_WS = re.compile(r"\s+")
_SPACES = re.compile(r"[ \t\r\n]+")  # not \s: U+3000 in a CJK name is the sender's choice
_COMMENT = re.compile(r"\([^()]*\)")
_ANGLE = re.compile(r"<([^<>]*)>")
_ROUTE = re.compile(r"^\s*@[^:]*:")  # RFC 5322 4.4 obs-route, "<@relay:user@host>"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
# A '>' followed by anything but a separator: there may be junk after an angle-addr.
_JUNK_HINT = re.compile(r">(?!\s*(?:[,;]|$))")
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"?|\\.|[()<>,;]|[^"()<>,;\\]+', re.DOTALL)
_LOCAL_ONLY_HINT = re.compile(r"<[^<>@\s]+>|\(")
_WRITTEN_YEAR = re.compile(r"(?<![\d:])(\d+)\s+\d{1,2}:\d{2}")  # the year before the time of day
MIN_YEAR, MAX_YEAR = 1970, 9998  # older is a broken clock; 9999 overflows on conversion to UTC
_NUMERIC_ZONE = re.compile(r"([+-])([0-9]{2})([0-5][0-9])\s*(?:\([^()]*\)\s*)?$")


def parse_addresses(raw: str, hints: Hints, defects: list[str], field: str) -> list[Address]:
    """Mailboxes of one address header, display names decoded, in order."""
    # mail-parser's scanner needs the undecoded text: a decoded name may contain ',' or '<'.
    text = unfold(raw_header_text(raw, hints))
    if not text.strip():
        return []
    text, junk = drop_trailing_junk(text)
    if junk:
        defects.append(f"{field}: text after an address dropped")
    if len(text) > MAX_STRUCTURED_CHARS:
        # mail-parser scans per character in Python (~0.5 us each); pick the addresses out.
        defects.append(f"{field}: {len(text)} characters, addresses picked out without names")
        return _unique(_bare_addresses(text))[:MAX_ADDRESSES]
    diagnostics: list[dict[str, object]] = []
    try:
        pairs = get_addresses(text, defects=diagnostics, decode_names=True)
    except RecursionError:  # the stdlib parser it calls recurses per group/comment
        defects.append(f"{field}: address list too convoluted, addresses picked out")
        return _unique(_bare_addresses(text))[:MAX_ADDRESSES]
    found = [_address(name, addr, hints) for name, addr in pairs if addr]
    for item in diagnostics:
        if not item.get("recovered"):
            found.extend(_recover(str(item.get("raw", "")), hints))
            defects.append(f"{field}: unreadable address {str(item.get('raw', ''))[:80]!r} ({item.get('reason')})")
    # An address is a well-formed addr-spec or nothing: never a name, junk or a line break.
    malformed = [address.email for address in found if not _acceptable(address.email)]
    if malformed:
        defects.append(f"{field}: malformed address {malformed[0][:80]!r} ignored")
        found = [address for address in found if _acceptable(address.email)]
    if len(found) > MAX_ADDRESSES:
        defects.append(f"{field}: {len(found)} addresses, kept {MAX_ADDRESSES}")
    return _unique(found)[:MAX_ADDRESSES]


def _address(name: str, addr: str, hints: Hints) -> Address:
    # mail-parser leaves encoded words in charsets it cannot decode; ours falls back instead.
    name = decode_words(name, hints) if "=?" in name else name
    # RFC 5322 3.2.2: a comment is not part of the display name ("MAILER-DAEMON (Mail
    # Delivery System)"), unless it is all there is ("addr (Name)", handled by the parser).
    without_comments = _COMMENT.sub(" ", name)
    if without_comments.strip():
        name = without_comments
    name = _CONTROL.sub(" ", _SPACES.sub(" ", name))
    return Address(name=_SPACES.sub(" ", name).strip().strip('"').strip(), email=addr.strip())


def drop_trailing_junk(text: str) -> tuple[str, bool]:
    """Cut what follows an angle-addr up to the next comma: RFC 5322 3.4 allows only CFWS there,
    and addresses found in it ("<a@b> NOTIFY=... ORCPT=rfc822;x@y") are not the sender's."""
    if not _JUNK_HINT.search(text):
        return text, False
    out: list[str] = []
    depth, state, dropped = 0, "name", False  # comment nesting; name, angle, after, junk
    for token in _TOKEN.findall(text):
        if depth:
            depth += (token == "(") - (token == ")")
        elif token == "(":
            depth = 1
        elif state == "angle":
            state = "after" if token == ">" else state
        elif token == "," or (token == ";" and state != "junk"):
            state = "name"  # a new mailbox, or the end of a group
        elif state == "after" and not token.isspace():
            state, dropped = "junk", True
        elif state == "name" and token == "<":
            state = "angle"
        if state != "junk":
            out.append(token)
    return "".join(out), dropped


def _recover(item: str, hints: Hints) -> list[Address]:
    """Best effort for an item the strict parser refused: the stdlib's lenient reading."""
    angle = _ANGLE.search(item)
    if angle:  # only the angle-addr can hold the address; the phrase is a name, however it reads
        addr = _ROUTE.sub("", _COMMENT.sub("", angle.group(1))).strip()
        return [_address(item[: angle.start()], addr, hints)] if _acceptable(addr) else []
    if len(item) > MAX_RECOVER_CHARS:  # the stdlib parser is recursive and quadratic
        return _bare_addresses(item)
    try:
        pairs = email.utils.getaddresses([item])
    except RecursionError:
        pairs = []
    found = [_lenient(name, addr, item, hints) for name, addr in pairs]
    return [address for address in found if address and _acceptable(address.email)] or _bare_addresses(item)


def _lenient(name: str, addr: str, item: str, hints: Hints) -> Address | None:
    in_name = _bare_addresses(name)
    if "@" not in addr and in_name:
        # "Name (user@host)": the address went into the comment.
        return _address(addr, in_name[0].email, hints)
    if "@" in addr and " " in addr.strip() and not addr.startswith('"'):
        # "Test test@example.com": a display name without the angle brackets.
        words = addr.split()
        at = max(i for i, word in enumerate(words) if "@" in word)
        return _address(name or " ".join(words[:at]), words[at].strip("<>"), hints)
    if "@" in addr:
        return _address(name, addr, hints)
    if addr and " " not in addr and _LOCAL_ONLY_HINT.search(item):
        # A local-only mailbox ("MAILER-DAEMON (Mail Delivery System)", "Name <moderator>").
        return _address(name, addr, hints)
    return None


def _acceptable(addr: str) -> bool:
    """A well-formed addr-spec, or a local-only mailbox ("MAILER-DAEMON")."""
    return is_valid(addr) or is_local_only(addr)


def name_only(raw: str, hints: Hints) -> Address | None:
    """A From that names its author without a usable address ("Whomever", '"Jo" <>')."""
    text = unfold(raw_header_text(raw, hints)).strip()
    if not text or len(text) > MAX_RECOVER_CHARS:
        return None
    try:
        pairs = email.utils.getaddresses([text])
    except RecursionError:
        pairs = []
    name = next((n or a for n, a in pairs if n or a), text)
    return _address(name, "", hints)


def _bare_addresses(text: str) -> list[Address]:
    # Token by token: one regex for "x@y.z" anywhere backtracks quadratically on 100 KB of junk.
    found = (token.strip("'.") for token in _BARE_TOKEN.findall(text) if "@" in token)
    return [Address(name="", email=addr) for addr in found if _BARE_ADDR.fullmatch(addr)]


def _unique(found: list[Address]) -> list[Address]:
    seen: set[tuple[str, str]] = set()
    out = []
    for address in found:
        key = (address.name, address.email.lower())
        if key not in seen:
            seen.add(key)
            out.append(address)
    return out


def parse_date(raw: str | None, defects: list[str]) -> datetime | None:
    """Date header as an aware datetime in the sender's offset; None when unparseable or
    impossible (a zone of 30 hours, year 1 or 9999): the message stays readable without it."""
    if raw is None or not raw.strip():
        return None
    text = unfold(raw_header_text(raw)).strip()
    try:
        value = _read_date(text, defects)
        # The row stores UTC: an instant that cannot be converted is no date at all.
        year = value.astimezone(UTC).year if value is not None else MIN_YEAR
    except (ValueError, OverflowError) as exc:
        defects.append(f"date: impossible {text[:60]!r} ({exc.__class__.__name__})")
        return None
    if not MIN_YEAR <= year <= MAX_YEAR:
        defects.append(f"date: year {year} out of range in {text[:60]!r}")
        return None
    return value


def _read_date(text: str, defects: list[str]) -> datetime | None:
    result = parse_mail_date(text)
    if result.value is not None:
        instant: datetime = result.value  # UTC
        return instant.astimezone(_zone(text, result.timezone))
    # mail-parser is strict about RFC 5322 syntax; the stdlib reads more of what is sent.
    try:
        value = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        defects.append(f"date: unparseable {text[:60]!r}")
        return None
    defects.append(f"date: lenient parse of {text[:60]!r}")
    return _written_year(text, value if value.tzinfo else value.replace(tzinfo=UTC))


def _written_year(text: str, value: datetime) -> datetime:
    """The stdlib makes any year below 100 one of 1969..2068; RFC 5322 4.3 does that for two
    digits only (three digits: +1900). Year "0" or "0001" is no year: ValueError."""
    match = _WRITTEN_YEAR.search(text)
    digits = match.group(1) if match else ""
    if len(digits) == 3:
        return value.replace(year=int(digits) + 1900)
    if len(digits) == 1 or (len(digits) >= 4 and int(digits) != value.year):
        raise ValueError(f"year {digits}")
    return value


def _zone(text: str, hours: str | int) -> timezone:
    """The sender's offset; mail-parser rounds it to 0.1 h, which breaks +0545. ValueError
    when it is a day or more ("-3000")."""
    match = _NUMERIC_ZONE.search(text)
    if match:
        minutes = int(match.group(2)) * 60 + int(match.group(3))
        return timezone(timedelta(minutes=-minutes if match.group(1) == "-" else minutes))
    return timezone(timedelta(hours=float(hours or 0)))


def message_ids(raw: str | None) -> tuple[str, ...]:
    """Message ids of Message-ID / In-Reply-To / References, with angle brackets, no duplicates."""
    if not raw:
        return ()
    text = unfold(raw_header_text(raw))
    # RFC 5322 4.5.4: obsolete ids may hold comments and spaces ("<1234 @ local(blah) .example>").
    ids = [_printable(_WS.sub("", _COMMENT.sub("", found))) for found in _MSGID.findall(text)]
    if not ids:
        # Some MUAs drop the brackets; a bare token with an '@' is still an id.
        ids = [_printable(token.strip("<>,;")) for token in text.split() if "@" in token]
    return tuple(dict.fromkeys(f"<{msgid}>" for msgid in ids if msgid))


def _printable(msgid: str) -> str:
    """A message id without controls: it is a lookup key and goes into our References."""
    return msgid if msgid.isprintable() else "".join(ch for ch in msgid if ch.isprintable())
