"""Walk a part tree into the body (text and HTML) and the attachments."""

from __future__ import annotations

import email.message
import mimetypes
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32

from ticketd.daemon.parsers import mimetree, tnef, uuencode
from ticketd.daemon.parsers.charsets import Hints, decode_text
from ticketd.daemon.parsers.encoded_words import header_text
from ticketd.daemon.parsers.htmltext import MAX_HTML_CHARS, html_to_text
from ticketd.daemon.parsers.model import Attachment

_BODY_TYPES = ("text/plain", "text/html")
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)
_NEWLINES = re.compile(r"\r\n?")


@dataclass
class Piece:
    """One stretch of body: a plain text, an HTML text, or both for multipart/alternative."""

    plain: str | None = None
    html: str | None = None

    def readable(self) -> str:
        if self.plain is not None and (self.plain.strip() or not self.html):
            return self.plain
        return html_to_text(self.html or "")


@dataclass
class Walk:
    """What the walk has found so far, in document order."""

    hints: Hints
    pieces: list[Piece] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    visited: int = 0
    tnef_body: Piece | None = None


@dataclass(frozen=True)
class Body:
    """The message's readable text, its HTML, its attachments, and what had to be repaired."""

    text: str
    html: str
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]


def walk(root: mimetree.Part, hints: Hints) -> Body:
    """Body and attachments of the message rooted at ``root``."""
    found = Walk(hints=hints)
    _visit(root, found, found.pieces, parent="", attached=False)
    if any(p.html and len(p.html) > MAX_HTML_CHARS and not (p.plain or "").strip() for p in found.pieces):
        found.defects.append(f"HTML body over {MAX_HTML_CHARS} characters: text taken from its start")
    return Body(_text(found), _html(found), tuple(found.attachments), tuple(found.defects))


def _text(found: Walk) -> str:
    texts = (piece.readable().strip("\n") for piece in found.pieces)
    text = "\n\n".join(t for t in texts if t.strip())
    # A winmail.dat body stands in only when the MIME parts carry none.
    if not text.strip() and found.tnef_body is not None:
        text = found.tnef_body.readable()
    return text.rstrip()


def _html(found: Walk) -> str:
    htmls = [piece.html for piece in found.pieces if piece.html and piece.html.strip()]
    has_text = any(piece.plain and piece.plain.strip() for piece in found.pieces)
    if not htmls and not has_text and found.tnef_body is not None:
        htmls = [found.tnef_body.html or ""]
    return "\n".join(htmls)


def _visit(part: email.message.Message, found: Walk, pieces: list[Piece], parent: str, attached: bool) -> None:
    found.visited += 1
    if found.visited > mimetree.MAX_PARTS:
        if found.visited == mimetree.MAX_PARTS + 1:
            found.defects.append(f"more than {mimetree.MAX_PARTS} MIME parts: the rest ignored")
        return
    for defect in part.defects:
        found.defects.append(f"{mimetree.content_type(part)}: {type(defect).__name__}")
    if not part.is_multipart():
        _leaf(part, found, pieces, parent, attached)
        return
    ctype = mimetree.content_type(part)
    # RFC 2183 2.9: a disposition on a container applies to everything inside.
    attached = attached or mimetree.disposition(part) == "attachment"
    children = [c for c in part.get_payload() if isinstance(c, email.message.Message)]
    if ctype == "multipart/alternative" and not attached:
        _alternative(children, found, pieces)
        return
    root = _related_root(part, children) if ctype == "multipart/related" else None
    for child in children:
        # RFC 2387: only the root of a multipart/related is content; the rest are its resources.
        resource = root is not None and child is not root
        _visit(child, found, pieces, ctype, attached or resource)


def _related_root(part: email.message.Message, children: list[email.message.Message]) -> email.message.Message | None:
    """The root part (RFC 2387 3.1-3.2): the one named by "start", else the first one of the
    "type" given (MHTML writers put resources first), else the first."""
    start = part.get_param("start")
    if isinstance(start, str) and start.strip("<> "):
        wanted = start.strip("<> ")
        for child in children:
            if mimetree.content_id(child) == wanted:
                return child
    root_type = part.get_param("type")
    if isinstance(root_type, str):
        for child in children:
            if mimetree.content_type(child) == root_type.strip().lower():
                return child
    return children[0] if children else None


def _alternative(children: list[email.message.Message], found: Walk, pieces: list[Piece]) -> None:
    """RFC 2046 5.1.4: the same content in several forms; keep one plain and one HTML form."""
    groups: list[list[Piece]] = []
    for child in children:
        group: list[Piece] = []
        _visit(child, found, group, "multipart/alternative", False)
        groups.append(group)
    plain = next((g for g in groups if any(p.plain is not None for p in g)), [])
    # The last alternative is the sender's preferred (richest) one.
    html = next((g for g in reversed(groups) if any(p.html is not None for p in g)), [])
    if plain or html:
        pieces.append(Piece(plain=_joined(p.plain for p in plain), html=_joined(p.html for p in html)))


def _joined(texts: Iterable[str | None]) -> str | None:
    present = [t for t in texts if t is not None]
    return "\n".join(present) if present else None


def _leaf(part: email.message.Message, found: Walk, pieces: list[Piece], parent: str, attached: bool) -> None:
    ctype = mimetree.content_type(part)
    name = mimetree.filename(part, found.hints)
    disposition = mimetree.disposition(part)
    if ctype.startswith("multipart/"):
        if isinstance(part, mimetree.Part) and part.over_limit:
            found.defects.append(f"{ctype} nested too deep or too many parts: not unpacked")
            return
        ctype = "text/plain"  # a multipart without a boundary: RFC 2046 5.1.1 gives no parts
    if ctype in _BODY_TYPES and not attached and not name and disposition != "attachment":
        _body_text(part, ctype, found, pieces)
        return
    data, defect = mimetree.decode_body(part)
    if defect:
        found.defects.append(f"{ctype}: {defect}")
    if tnef.is_tnef(ctype, name) and _unpack_tnef(data, found):
        return
    if ctype == "message/rfc822" and not name:
        name = _message_name(data, _description(part, found.hints), found.hints)
    cid = mimetree.content_id(part)
    # Resources of a multipart/related (cid: or Content-Location images) are shown in place.
    inline = disposition == "inline" or (not disposition and parent == "multipart/related")
    found.attachments.append(Attachment(name, ctype, data, content_id=cid, inline=inline))


def _body_text(part: email.message.Message, ctype: str, found: Walk, pieces: list[Piece]) -> None:
    data, defect = mimetree.decode_body(part)
    if defect:
        found.defects.append(f"{ctype}: {defect}")
    label = mimetree.charset(part)
    if label is None and ctype == "text/html":
        sniffed = _META_CHARSET.search(data[:4096])
        label = sniffed.group(1).decode("ascii") if sniffed else None
    decoded = decode_text(data, label, found.hints)
    if decoded.defect:
        found.defects.append(f"{ctype}: {decoded.defect}")
    text = _NEWLINES.sub("\n", decoded.text)
    if ctype == "text/html":
        pieces.append(Piece(html=text))
        return
    text, files = uuencode.extract(text)
    for uufile in files:
        guessed = mimetypes.guess_type(uufile.filename, strict=False)[0]
        found.attachments.append(Attachment(uufile.filename, guessed or "application/octet-stream", uufile.content))
    pieces.append(Piece(plain=text))


def _unpack_tnef(data: bytes, found: Walk) -> bool:
    """Replace a winmail.dat by what it holds; False keeps it as an attachment."""
    try:
        unpacked = tnef.unpack(data)
    except tnef.TnefError as exc:
        found.defects.append(f"winmail.dat not unpacked ({exc}): kept as attachment")
        return False
    found.attachments.extend(unpacked.attachments)
    if unpacked.text or unpacked.html:
        found.tnef_body = Piece(plain=unpacked.text or None, html=unpacked.html or None)
    return True


def _message_name(data: bytes, description: str, hints: Hints) -> str:
    """An attached mail's name: its subject + ".eml" (the convention of most MUAs), else the
    part's description (Postfix bounces say "Undelivered Message")."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(data[:65536])
    subject = header_text(mimetree.first_raw(headers, "subject") or "", hints).strip()
    return f"{subject or description or 'message'}.eml"


def _description(part: email.message.Message, hints: Hints) -> str:
    return header_text(mimetree.first_raw(part, "content-description") or "", hints).strip()
