"""Forwarded mail: the sender, subject, text and date of the message an agent forwarded.

A forward is told by its subject ("Fwd:", "WG:", "TR:" …) and by what the forwarding client
put in the text: a separator or intro line and a header block (Gmail, Outlook in several
languages, Apple Mail, Thunderbird, mutt), or the original attached as message/rfc822.
Only the outermost forward counts. The words are those of the reply parser
(daemon.parsers._reply_words), so both read history the same way. Every pattern runs on one
line capped in length, and each line is looked at a bounded number of times: a hostile body
costs linear time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from ticketd.daemon import parsers
from ticketd.daemon.addresses import is_valid
from ticketd.daemon.parsers import _reply_words as words
from ticketd.daemon.parsers.encoded_words import decode_words
from ticketd.daemon.parsers.model import Address, ParsedMessage, UnreadableMessage

# "Fwd:" in the forwarding client's language: en (Fwd, Fw), de (WG), fr (TR), es (RV),
# pt (Enc), nl (Doorst), it (I). The default of the ``prefixes`` parameters.
FORWARD_PREFIXES = ("fwd", "fw", "wg", "tr", "rv", "enc", "doorst", "i")
ATTACHED_TYPES = ("message/rfc822", "message/global")  # RFC 2046 5.2.1, RFC 6532 3.7

BLOCK_LINES = 16  # a forward header block (with blank lines between its fields) fits in these
BLOCK_BLANKS = 2  # blank lines between two fields (text derived from HTML puts one)
INTRO_BLANKS = 10  # blank lines between a separator and the header block
MAX_VALUE = 1000  # characters kept of a field's value
# Fields a block may carry that are none of from/date/to/cc/subject.
_OTHER_FIELDS = frozenset(
    {"reply-to", "bcc", "importance", "priority", "attachments", "wichtigkeit", "anlagen", "priorité"}
)
# An optional tag a gateway puts first ("[EXTERNAL] FW: …").
_TAG = r"(?:\[[^\[\]\n]{0,80}\]\s{0,5})?"
# "[mailto:addr]" (Outlook) or "<mailto:addr>" (a link turned into text); the class excludes the
# closing characters, so a search costs at most 254 steps per '[' or '<'.
_MAILTO = re.compile(r"[\[<]mailto:([^\s\[\]<>]{1,254})[\]>]", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_SPACES = re.compile(r"\s+")
_QUOTED_PAIR = re.compile(r"\\(.)")
_MUTT_START = "----- forwarded message from "
_MUTT_END = "----- end forwarded message -----"
_NOT_A_FIELD = "\x00"


@dataclass(frozen=True)
class Forwarded:
    """The forwarded message: who wrote it, its subject, its text, and its date as written."""

    sender: Address
    subject: str
    text: str
    date: str  # "" when the block gives none


@dataclass(frozen=True)
class _Block:
    fields: dict[str, str]  # by meaning: from, date, to, cc, subject
    end: int  # index of the line after the block


def is_forward_subject(subject: str, prefixes: tuple[str, ...] = FORWARD_PREFIXES) -> bool:
    """Whether ``subject`` starts with a forward prefix ("Fwd:", "WG:", "TR :" …)."""
    return _prefix(prefixes).match(subject or "") is not None


def original(msg: ParsedMessage, prefixes: tuple[str, ...] = FORWARD_PREFIXES) -> Forwarded | None:
    """The message ``msg`` forwards, or None when it is no forward or names no valid sender."""
    if not is_forward_subject(msg.subject, prefixes):
        return None
    lines = msg.text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    found = _find(lines)
    if found is not None:
        fields, body = found
        return _inline(fields, body, _strip_prefix(msg.subject, prefixes))
    return _attached(msg)


@lru_cache(maxsize=8)
def _prefix(prefixes: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(sorted((re.escape(p) for p in prefixes), key=len, reverse=True))
    # French writes a space before the colon; CJK clients a full-width colon.
    return re.compile(rf"\s{{0,5}}{_TAG}(?:{names})[ \t]{{0,3}}[:：]\s*", re.IGNORECASE)


def _strip_prefix(subject: str, prefixes: tuple[str, ...]) -> str:
    match = _prefix(prefixes).match(subject)
    return subject[match.end() :].strip() if match else subject.strip()


def _find(lines: list[str]) -> tuple[dict[str, str], list[str]] | None:
    """The fields of the first forward header block in ``lines``, and the lines below it."""
    i = 0
    while i < len(lines):
        line = lines[i]
        text = line.strip()
        i += 1
        if not text or len(text) > words.MAX_LINE:
            continue
        if text.startswith(">"):
            # Apple Mail quotes what it forwards ("> Begin forwarded message:"); the quote of a
            # reply ("> From: …" without a marker) is not a forward.
            if _is_marker(_row(line, quoted=True).strip()):
                block = _after_marker(lines, i - 1, quoted=True)
                if _names_sender(block):
                    return block.fields, [_row(row, quoted=True) for row in _quoted_run(lines, block.end)]
            continue
        if _is_marker(text):
            block = _after_marker(lines, i - 1, quoted=False)
            if _names_sender(block):
                return block.fields, lines[block.end :]
            i = max(i, block.end)  # the fields of an incomplete block start nothing either
            continue
        # Outlook without a rule: "From: … Sent: … To: … Subject: …" on consecutive lines, after
        # a blank line.
        if (i == 1 or not lines[i - 2].strip()) and i < len(lines) and lines[i].strip():
            if _meaning(_field(line)) == "from":
                block = _block(lines, i - 1, quoted=False)
                if block.fields.keys() >= {"from", "date", "subject"}:
                    return block.fields, lines[block.end :]
                i = max(i, block.end)
    return None


def _is_marker(text: str) -> bool:
    """A line a forwarding client writes above the header block."""
    if not text or len(text) > words.MAX_LINE:
        return False
    if text[0] in "-_=":
        return bool(
            words.SEPARATOR.fullmatch(text)
            or words.RULE.fullmatch(text)
            or (text.lower().startswith(_MUTT_START) and text.endswith("-----"))
        )
    return text.endswith(":") and words.FORWARD_INTRO.fullmatch(text) is not None


def _after_marker(lines: list[str], marker: int, quoted: bool) -> _Block:
    """The header block below the marker at lines[marker], within INTRO_BLANKS blank lines."""
    start = marker + 1
    while start < len(lines) and start - marker <= INTRO_BLANKS and not _row(lines[start], quoted).strip():
        start += 1
    return _block(lines, start, quoted)


def _row(line: str, quoted: bool) -> str:
    """``line`` as the block reader sees it: in a quote, without one level of "> "; a line
    outside the quote (neither quoted nor blank) becomes _NOT_A_FIELD."""
    if not quoted:
        return line
    text = line.lstrip(" \t")
    if text.startswith(">"):
        text = text[1:]
        return text[1:] if text.startswith(" ") else text
    return line if not line.strip() else _NOT_A_FIELD


def _quoted_run(lines: list[str], start: int) -> list[str]:
    """lines[start:] while they are quoted; a blank line inside the quote belongs to it."""
    stop = start
    while stop < len(lines) and (lines[stop].lstrip(" \t").startswith(">") or not lines[stop].strip()):
        stop += 1
    return lines[start:stop]


def _field(line: str) -> re.Match[str] | None:
    """The header field on ``line`` ("From:", "Envoyé :", "*Von:*"): group 1 is its name."""
    return words.HEADER_LINE.match(line[: words.HEADER_PREFIX])


def _meaning(field: re.Match[str] | None) -> str | None:
    """from, date, to, cc or subject; "" for another header field; None for no header field."""
    return None if field is None else _named(field.group(1).lower())


@lru_cache(maxsize=512)
def _named(name: str) -> str | None:
    if name in words.HEADER_NAMES:
        return words.HEADER_NAMES[name]
    # "Enviada em", "Gesendet am": a known name and a preposition.
    first = name.split(" ", 1)[0]
    if first in words.HEADER_NAMES:
        return words.HEADER_NAMES[first]
    return "" if name in _OTHER_FIELDS else None


def _block(lines: list[str], start: int, quoted: bool) -> _Block:
    """The header block starting at lines[start]: its fields until the first line that is no
    field (a blank line ends it unless a field not seen yet follows); no fields when none."""
    fields: dict[str, str] = {}
    end = start
    blanks = 0
    last: str | None = None  # the field a folded line continues
    for j in range(start, min(len(lines), start + BLOCK_LINES)):
        line = _row(lines[j], quoted)
        if not line.strip():
            blanks += 1
            if blanks > BLOCK_BLANKS:
                break
            continue
        field = _field(line)
        meaning = _meaning(field)
        if field is None or meaning is None:
            if line[:1] in (" ", "\t") and not blanks and last:
                fields[last] = f"{fields[last]} {line.strip()}"[:MAX_VALUE]
                end = j + 1
                continue
            break
        if blanks and (not meaning or meaning in fields):
            break  # after a blank line only a field not seen yet continues the block
        last = None
        if meaning and meaning not in fields:
            fields[meaning], last = line[field.end() :][:MAX_VALUE].strip(), meaning
        end, blanks = j + 1, 0
    return _Block(fields, end)


def _names_sender(block: _Block) -> bool:
    """A forward header block: From, and a date or a subject."""
    return "from" in block.fields and bool(block.fields.keys() & {"date", "subject"})


def _inline(fields: dict[str, str], body: list[str], fallback_subject: str) -> Forwarded | None:
    sender = _mailbox(fields["from"])
    if sender is None:
        return None
    start, stop = 0, len(body)
    while start < stop and not body[start].strip():
        start += 1
    while stop > start and not body[stop - 1].strip():
        stop -= 1
    if stop > start and body[stop - 1].strip().lower() == _MUTT_END:
        stop -= 1
    return Forwarded(
        sender=sender,
        subject=_clean(_unbold(fields.get("subject", ""))) or fallback_subject,
        text="\n".join(body[start:stop]).rstrip(),
        date=_clean(fields.get("date", "")),
    )


def _attached(msg: ParsedMessage) -> Forwarded | None:
    """The first attached message (forward as attachment), if its From is a valid address."""
    attached = next((a for a in msg.attachments if a.content_type.lower() in ATTACHED_TYPES), None)
    if attached is None:
        return None
    try:
        inner = parsers.parse_message(attached.content)
    except UnreadableMessage:
        return None
    if inner.from_ is None or not is_valid(inner.from_.email):
        return None
    return Forwarded(inner.from_, inner.subject, inner.text, _clean(inner.header("date") or ""))


def _mailbox(value: str) -> Address | None:
    """The mailbox of a From line as clients write it: "Name <addr>", "addr", '"Last, First"
    <addr>', "Name [mailto:addr]", "addr (Name)"; None without a valid address."""
    value = _clean(value)[: words.MAX_LINE]
    mailto = _MAILTO.search(value)
    if mailto:
        addr, name = mailto.group(1), value[: mailto.start()]
        # "Name <addr<mailto:addr>>", "Name <addr <mailto:addr>>": the link doubles the address.
        if "<" in name:
            name = name[: name.rfind("<")]
    elif "<" in value and ">" in value[value.rfind("<") :]:
        lt = value.rfind("<")
        addr, name = value[lt + 1 : value.index(">", lt)], value[:lt]
    elif value.endswith(")") and "(" in value:
        paren = value.index("(")
        addr, name = value[:paren], value[paren + 1 : -1]
    else:
        # "addr", or "Name addr" without the angle brackets.
        name, _, addr = value.rpartition(" ")
    addr = addr.strip().removeprefix("mailto:").strip()
    if not is_valid(addr):
        return None
    return Address(_display_name(name, addr), addr)


def _display_name(name: str, addr: str) -> str:
    name = _unbold(name.strip())
    for quote in ('"', "'"):
        if len(name) > 1 and name.startswith(quote) and name.endswith(quote):
            name = _QUOTED_PAIR.sub(r"\1", name[1:-1]) if quote == '"' else name[1:-1]
            break
    if "=?" in name:  # some clients copy the encoded header into the text
        name = decode_words(name)
    name = _SPACES.sub(" ", _unbold(name.strip())).strip()
    return "" if name.lower() == addr.lower() else name


def _unbold(text: str) -> str:
    """'*Name*' (Gmail's and Outlook's bold, as text) without the stars."""
    return text[1:-1].strip() if len(text) > 1 and text.startswith("*") and text.endswith("*") else text


def _clean(text: str) -> str:
    return _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()
