"""What other mail parsers expect of the corpus messages, compared field by field with ours."""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import email.utils
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.policy import compat32
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import yaml

from ticketd.daemon.parsers import ParsedMessage, UnreadableMessage, parse_message

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"

_WS = re.compile(r"[\s\u00a0\u200b\ufeff]+")
_EMAIL = re.compile(r"[^\s<>(),;\"']+@[^\s<>(),;\"']+")


@dataclass(frozen=True)
class Check:
    """One comparison of one field of one message with a peer's expectation."""

    corpus: str
    file: str
    field: str
    agree: bool
    expected: str = ""
    actual: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.corpus, self.file, self.field)


def norm(text: str) -> str:
    """Whitespace-insensitive form: every run of whitespace is one space."""
    return _WS.sub(" ", text).strip()


_UU_BLOCK = re.compile(r"^begin [0-7]{3,4}[^\n]*\n.*?^end[ \t]*$", re.MULTILINE | re.DOTALL)


def without_uu(text: str) -> str:
    """A peer's body text minus uuencoded files, which we move from the text to attachments."""
    return _UU_BLOCK.sub(" ", text.replace("\r\n", "\n"))


_HIDDEN = ("script", "style")
# Block tags separate words even without whitespace in the source; inline tags do not.
_BLOCK_TAGS = (
    "address blockquote body br dd div dl dt h1 h2 h3 h4 h5 h6 head hr html li ol p pre table td th title tr ul"
)
_BLOCK = frozenset(_BLOCK_TAGS.split())


class _TagStripper(HTMLParser):
    """Text content of HTML, the way the peers' sanitized HTML is compared (not our converter).
    The <title> text counts: Zammad's sanitizer keeps it as text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.skip += tag in _HIDDEN
        if tag in _BLOCK:
            self.out.append(" ")

    def handle_endtag(self, tag: str) -> None:
        self.skip = max(0, self.skip - (tag in _HIDDEN))
        if tag in _BLOCK:
            self.out.append(" ")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.out.append(data)


# &lang;/&rang; are U+2329/U+3008 in HTML 4 (and Zammad) but U+27E8 in HTML 5 (and Python).
_ENTITY_TABLE_DIFFERENCES = str.maketrans(
    {"\u27e8": "\u3008", "\u27e9": "\u3009", "\u2329": "\u3008", "\u232a": "\u3009"}
)


def html_text(html: str) -> str:
    stripper = _TagStripper()
    stripper.feed(html)
    stripper.close()
    return norm("".join(stripper.out)).translate(_ENTITY_TABLE_DIFFERENCES)


def same(expected: object, actual: object) -> bool:
    """Equal, where a U+FFFD in the peer's string (a byte it could not decode) matches any
    one character of ours (which decoded it)."""
    if isinstance(expected, str) and isinstance(actual, str) and "\ufffd" in expected:
        pattern = ".".join(re.escape(piece) for piece in expected.split("\ufffd"))
        return re.fullmatch(pattern, actual, re.DOTALL) is not None
    return expected == actual


def _check(corpus: str, file: str, field: str, expected: object, actual: object) -> Check:
    return Check(corpus, file, field, same(expected, actual), str(expected)[:3000], str(actual)[:3000])


def _parse(raw: bytes) -> ParsedMessage | None:
    try:
        return parse_message(raw)
    except UnreadableMessage:
        return None


def _decode_attachment_text(data: bytes) -> str:
    for codec in ("utf-8", "cp1252", "latin-1"):
        try:
            return data.decode(codec)
        except UnicodeDecodeError:
            continue
    return ""


# --- Zammad -------------------------------------------------------------------------------


class _RubyYamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Loads Ruby's to_yaml output (README of the zammad folder)."""


_RubyYamlLoader.add_multi_constructor(
    "!ruby/",
    lambda loader, suffix, node: (
        loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_scalar(node)
    ),
)
_RubyYamlLoader.add_constructor(
    "!binary", lambda loader, node: base64.b64decode("".join(loader.construct_scalar(node).split()))
)

_ZAMMAD_NO_CONTENT = "no visible content"


def zammad_checks() -> Iterator[Check]:
    for yml in sorted((CORPUS / "zammad").glob("*.yml")):
        expected = yaml.load(yml.read_text(encoding="utf-8"), Loader=_RubyYamlLoader)
        raw = yml.with_suffix(".box").read_bytes()
        yield from _zammad_message(yml.stem, expected, _parse(raw), _given_names(raw))


def _given_names(raw: bytes) -> set[str]:
    """Every file name the sender wrote in the message (read with the stdlib, not our parser)."""
    parts = email.message_from_bytes(raw, policy=email.policy.default).walk()
    return {str(name) for part in parts if (name := part.get_filename())}


def _zammad_message(name: str, exp: dict[str, Any], msg: ParsedMessage | None, given: set[str]) -> Iterator[Check]:
    def check(field: str, expected: object, actual: object) -> Check:
        return _check("zammad", name, field, expected, actual)

    if msg is None:
        yield check("parse", "ParsedMessage", "UnreadableMessage")
        return
    sender = msg.from_
    if "from_email" in exp:
        yield check("from_email", (exp["from_email"] or "").lower(), sender.email.lower() if sender else "")
    if "from_display_name" in exp:
        yield check("from_name", exp["from_display_name"] or "", sender.name if sender else "")
    for key, field, ours in (("to", "to", msg.to), ("cc", "cc", msg.cc), ("reply-to", "reply_to", msg.reply_to)):
        if key in exp:
            wanted = _zammad_emails(exp[key] or "")
            yield check(field, wanted, [a.email.lower() for a in ours])
    if "subject" in exp:
        yield check("subject", (exp["subject"] or "").strip(), msg.subject)
    if "date" in exp:
        yield check("date", exp["date"], msg.date)
    if "message_id" in exp:
        # Zammad makes up <gen-MD5@zammad_generated> when there is none; we leave it empty.
        generated = "zammad_generated" in (exp["message_id"] or "")
        yield check("message_id", "" if generated else exp["message_id"], msg.message_id)
    if "body" in exp:
        yield _zammad_body(name, exp, msg)
    used: set[int] = set()
    for attachment in exp.get("attachments") or ():
        # Zammad keeps the HTML body as an extra "message.html" attachment; ours is in .html.
        if not attachment["preferences"].get("content-alternative"):
            yield from _zammad_attachment(name, attachment, msg, used, given)


def _zammad_emails(header: str) -> list[str]:
    """The addresses in Zammad's decoded header string."""
    pairs = email.utils.getaddresses([header])
    return [addr.lower() for _, addr in pairs if "@" in addr] or [m.lower() for m in _EMAIL.findall(header)]


def _zammad_body(name: str, exp: dict[str, Any], msg: ParsedMessage) -> Check:
    body = exp["body"] or ""
    ctype = exp.get("content_type") or ("text/html" if re.search(r"<[a-z][^>]*>", body) else "text/plain")
    if body == _ZAMMAD_NO_CONTENT:
        return _check("zammad", name, "body", "", norm(msg.text))
    if ctype == "text/html":
        # Zammad's sanitized HTML, as text; ours from our HTML part, or our text when plain only.
        ours = html_text(msg.html) if msg.html else norm(msg.text)
        return _check("zammad", name, "body", html_text(body), ours)
    return _check("zammad", name, "body", norm(without_uu(body)), norm(msg.text))


def _zammad_attachment(
    name: str, exp: dict[str, Any], msg: ParsedMessage, used: set[int], given: set[str]
) -> Iterator[Check]:
    data = exp["data"] if isinstance(exp["data"], bytes) else str(exp["data"]).encode("utf-8")
    digest = hashlib.md5(data).hexdigest()
    # Zammad stores attached mails and reports with LF line ends; we keep the bytes as sent.
    matches = [
        i
        for i, a in enumerate(msg.attachments)
        if i not in used and digest in (_md5(a.content), _md5(a.content.replace(b"\r\n", b"\n")))
    ]
    # Several parts may share one content: prefer the one with the expected name.
    index = next(
        (i for i in matches if same(exp["filename"], msg.attachments[i].filename)), matches[0] if matches else None
    )
    used.add(-1 if index is None else index)
    match = None if index is None else msg.attachments[index]
    label = f"{exp['filename']} ({len(data)} B)"
    yield Check("zammad", name, "attachment_content", match is not None, label, _listing(msg))
    if (match is None or not match.filename) and exp["filename"] not in given:
        return  # a name Zammad made up for an unnamed part ("file", "image.jpg"); ours is ""
    ours = match.filename if match is not None else [a.filename for a in msg.attachments]
    yield Check("zammad", name, "attachment_name", same(exp["filename"], ours), exp["filename"], str(ours))


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _listing(msg: ParsedMessage) -> str:
    return ", ".join(f"{a.filename} ({a.size} B)" for a in msg.attachments)


# --- Stalwart -------------------------------------------------------------------------------


def stalwart_checks() -> Iterator[Check]:
    # malformed/ is meant for "must not crash / degrade gracefully" (its README): there is no
    # right reading to agree on, so it is only in the smoke test.
    for eml in sorted((CORPUS / "stalwart-mail-parser" / "eml").glob("*/*.eml")):
        if eml.parent.name == "malformed":
            continue
        expected = json.loads(eml.with_suffix(".json").read_text(encoding="utf-8"))
        # NNN.json is Stalwart's parse of the message with every CR removed: parse the same bytes.
        parsed = _parse(eml.read_bytes().replace(b"\r", b""))
        yield from _stalwart_message(f"{eml.parent.name}/{eml.name}", expected, parsed)


def _header(part: dict[str, Any], name: str) -> Any:
    for header in part["headers"]:
        if header["name"] == name:
            return header["value"]
    return None


def _stalwart_addresses(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict) or "Address" not in value:
        return []
    found = value["Address"]
    if "List" in found:
        return list(found["List"])
    return [addr for group in found.get("Group", []) for addr in group.get("addresses", [])]


def _stalwart_message(name: str, exp: dict[str, Any], msg: ParsedMessage | None) -> Iterator[Check]:
    def check(field: str, expected: object, actual: object) -> Check:
        return _check("stalwart", name, field, expected, actual)

    if msg is None:
        yield check("parse", "ParsedMessage", "UnreadableMessage")
        return
    root = exp["parts"][0]
    senders = _stalwart_addresses(_header(root, "from"))
    if senders:
        sender = msg.from_
        yield check("from_email", (senders[0]["address"] or "").lower(), sender.email.lower() if sender else "")
        yield check("from_name", senders[0]["name"] or "", sender.name if sender else "")
    for field, ours in (("to", msg.to), ("cc", msg.cc), ("reply_to", msg.reply_to)):
        wanted = _stalwart_addresses(_header(root, field))
        if wanted:
            yield check(
                field, [(a["address"] or "").lower() for a in wanted if a["address"]], [a.email.lower() for a in ours]
            )
    subject = _header(root, "subject")
    if isinstance(subject, dict) and "Text" in subject:
        yield check("subject", subject["Text"].strip(), msg.subject)
    date = _header(root, "date")
    if date is not None:
        yield check("date", _stalwart_date(date), msg.date)
    msgid = _header(root, "message_id")
    if isinstance(msgid, dict) and "Text" in msgid:
        yield check("message_id", msgid["Text"], msg.message_id.strip("<>"))
    yield from _stalwart_bodies(name, exp, msg)
    used: set[int] = set()
    for index in exp["attachments"]:
        yield from _stalwart_attachment(name, exp["parts"][index], msg, used)


def _stalwart_date(value: Any) -> datetime | None:
    if not isinstance(value, dict) or "DateTime" not in value:
        return None
    d = value["DateTime"]
    offset = timedelta(hours=d["tz_hour"], minutes=d["tz_minute"]) * (-1 if d["tz_before_gmt"] else 1)
    return datetime(d["year"], d["month"], d["day"], d["hour"], d["minute"], d["second"], tzinfo=timezone(offset))


def _stalwart_bodies(name: str, exp: dict[str, Any], msg: ParsedMessage) -> Iterator[Check]:
    # JMAP lists inline images in text_body too; only the text parts make the text.
    bodies = (exp["parts"][i]["body"] for i in exp["text_body"])
    texts = [body for body in bodies if isinstance(body, dict) and ("Text" in body or "Html" in body)]
    if texts:
        plain = all("Text" in body for body in texts)
        expected = norm(" ".join(without_uu(b["Text"]) if "Text" in b else html_text(b.get("Html", "")) for b in texts))
        # With no plain part, Stalwart's text body is the HTML part: compare its text content.
        ours = norm(msg.text) if plain or not msg.html else html_text(msg.html)
        yield _check("stalwart", name, "body_text", expected, ours)
    htmls = [exp["parts"][i]["body"] for i in exp["html_body"]]
    if htmls and all("Html" in body for body in htmls):
        expected = html_text(" ".join(body["Html"] for body in htmls))
        yield _check("stalwart", name, "body_html", expected, html_text(msg.html))


def _stalwart_attachment(name: str, part: dict[str, Any], msg: ParsedMessage, used: set[int]) -> Iterator[Check]:
    body = part["body"]
    kind = next(iter(body)) if isinstance(body, dict) else str(body)
    filename = _stalwart_filename(part)
    if kind in ("Binary", "InlineBinary"):
        data = _uudecoded(bytes(body[kind]))
        label = f"{filename} ({len(data)} B)"
        candidates = [i for i, a in enumerate(msg.attachments) if a.content == data]
    elif kind in ("Text", "Html") and body[kind].lstrip().startswith("begin "):
        data = _uudecoded(body[kind].encode("latin-1", "replace"))
        label = f"{filename} (uuencoded text, {len(data)} B)"
        candidates = [i for i, a in enumerate(msg.attachments) if a.content == data]
    elif kind in ("Text", "Html"):
        text = norm(body[kind])
        label = f"{filename} (text {len(text)} chars)"
        candidates = [i for i, a in enumerate(msg.attachments) if norm(_decode_attachment_text(a.content)) == text]
    else:  # an attached message: Stalwart gives its parse tree, we keep its bytes
        label = f"{filename} (message)"
        candidates = [i for i, a in enumerate(msg.attachments) if a.content_type.startswith("message/")]
    candidates = [i for i in candidates if i not in used]
    # Several parts may share one content: prefer the one with the expected name.
    index = next(
        (i for i in candidates if same(filename, msg.attachments[i].filename)), candidates[0] if candidates else None
    )
    used.add(-1 if index is None else index)
    match = None if index is None else msg.attachments[index]
    yield Check("stalwart", name, "attachment_content", match is not None, label, _listing(msg))
    if filename:
        ours = match.filename if match is not None else [a.filename for a in msg.attachments]
        # Stalwart unescapes '\' in quoted names (C:\TEMP\x.png -> C:TEMPx.png); we keep them.
        agree = same(filename, ours.replace("\\", "") if isinstance(ours, str) else ours)
        yield Check("stalwart", name, "attachment_name", agree, filename, str(ours))


def _uudecoded(data: bytes) -> bytes:
    """Stalwart leaves x-uuencode bodies encoded; decode them to compare the content."""
    lines = data.lstrip().splitlines()
    if not lines or not lines[0].startswith(b"begin "):
        return data
    out = []
    for line in lines[1:]:
        if line.strip() in (b"end", b"`", b""):
            continue
        nbytes = (((line[0] - 32) & 63) * 4 + 5) // 3
        out.append(binascii.a2b_uu(line[:nbytes]))
    return b"".join(out)


def _stalwart_filename(part: dict[str, Any]) -> str:
    for header, param in (("content_disposition", "filename"), ("content_type", "name")):
        value = _header(part, header)
        if isinstance(value, dict) and "ContentType" in value:
            for attribute in value["ContentType"].get("attributes") or ():
                if attribute["name"] == param:
                    return str(attribute["value"])
    return ""


# --- Mime4j -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Leaf:
    headers: email.message.Message
    content: bytes
    text: bool
    alternative: int  # id of the nearest multipart/alternative around it, 0 when none


def mime4j_checks() -> Iterator[Check]:
    for expected in sorted((CORPUS / "james-mime4j").glob("*/*_decoded.xml")):
        msg_file = expected.with_name(expected.name.removesuffix("_decoded.xml") + ".msg")
        leaves = list(_mime4j_leaves(expected))
        parsed = _parse(msg_file.read_bytes())
        yield from _mime4j_message(f"{msg_file.parent.name}/{msg_file.name}", leaves, parsed)


def _mime4j_leaves(path: Path) -> Iterator[_Leaf]:
    """Leaves of the expected tree outside embedded messages (we keep those whole)."""
    root = ET.fromstring(path.read_bytes().decode("iso-8859-1"))

    def visit(node: ET.Element, headers: email.message.Message, alternative: int) -> Iterator[_Leaf]:
        for child in node:
            if child.tag == "body-part":
                yield from visit(child, _fields(child), alternative)
            elif child.tag == "multipart":
                inner = id(child) if headers.get_content_type() == "multipart/alternative" else alternative
                yield from visit(child, headers, inner)
            elif child.tag in ("text-body", "binary-body"):
                data = path.with_name(child.attrib["name"]).read_bytes()
                yield _Leaf(headers, data, child.tag == "text-body", alternative)
            # a nested <message> is message/rfc822 content: skipped

    yield from visit(root, _fields(root), 0)


def _fields(node: ET.Element) -> email.message.Message:
    header = node.find("header")
    lines = [(f.text or "").strip("\r\n") for f in header.findall("field")] if header is not None else []
    return email.message_from_string("\r\n".join(lines) + "\r\n\r\n", policy=compat32)


def _mime4j_message(name: str, leaves: list[_Leaf], msg: ParsedMessage | None) -> Iterator[Check]:
    if msg is None:
        yield Check("mime4j", name, "parse", False, "ParsedMessage", "UnreadableMessage")
        return
    contents = [a.content for a in msg.attachments]
    groups: dict[int, list[Check]] = {}
    for leaf in leaves:
        ctype = leaf.headers.get_content_type()
        named = bool(leaf.headers.get_filename()) or leaf.headers.get_content_disposition() == "attachment"
        if leaf.text and ctype in ("text/plain", "text/html") and not named:
            check = _mime4j_body(name, leaf, ctype, msg)
            if not leaf.alternative:
                yield check
            groups.setdefault(leaf.alternative, []).append(check)
        else:
            found = leaf.content in contents
            yield Check("mime4j", name, "attachment_content", found, f"{ctype} ({len(leaf.content)} B)", _listing(msg))
    for alternative, checks in groups.items():
        if alternative:
            # multipart/alternative: showing one of the forms is the job, not all of them.
            best = next((c for c in checks if c.agree), checks[0])
            yield best


def _mime4j_body(name: str, leaf: _Leaf, ctype: str, msg: ParsedMessage) -> Check:
    charset = leaf.headers.get_content_charset() or "iso-8859-1"
    try:
        text = leaf.content.decode(charset, "replace")
    except LookupError:
        text = leaf.content.decode("iso-8859-1")
    if ctype == "text/html":
        expected, ours = html_text(text), html_text(msg.html)
    else:
        expected, ours = norm(without_uu(text)), norm(msg.text)
    # A message may have several body leaves: each must be in our text.
    return Check("mime4j", name, "body", expected in ours, expected, ours)


PEERS: dict[str, Callable[[], Iterator[Check]]] = {
    "zammad": zammad_checks,
    "stalwart": stalwart_checks,
    "mime4j": mime4j_checks,
}
