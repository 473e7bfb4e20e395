"""The new text of a reply: what its writer added, without quoted history and signature.

Every inbound article goes through here, so rules see only what was written this time (a
quoted "urgent" does not escalate). Gmail, Outlook (plain text in several languages, its
HTML header block), Apple Mail, Thunderbird, phones and HTML blockquotes are recognised; the
measurements that chose these rules over the maintained libraries are in devtools/reply_measure.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ticketd.daemon.parsers._reply_html import cut_history
from ticketd.daemon.parsers._reply_plain import ATTRIBUTION, NONE, strip_quotes, strip_signature
from ticketd.daemon.parsers.htmltext import html_to_text

_NEWLINES = re.compile(r"\r\n?")
CHECKED_CHARS = 80


@dataclass(frozen=True)
class Stripped:
    """What the writer added; whether quoted history was removed; the signature removed, if any."""

    new_text: str
    quoted: bool
    signature: str | None


def new_text(text: str, html: str | None = None) -> str:
    """What the writer added to ``text`` (the readable text of the message; ``html`` its HTML)."""
    return strip_reply(text, html).new_text


def strip_reply(text: str, html: str | None = None) -> Stripped:
    """``text`` without quoted history and signature.

    The plain text decides when it shows its quote as ">" lines or an Outlook header block.
    Otherwise the client's HTML markup is asked, if any: an HTML-only message reaches us as text
    derived from its HTML, where a blockquote has lost its ">" and the writer's answers below
    it look like history. A message with nothing new, such as a bare forward, is returned
    whole: it must not vanish.
    """
    text = _NEWLINES.sub("\n", text or "")
    found, how = _strip_text(text)
    if html and (how in (NONE, ATTRIBUTION) or not found.new_text):
        from_html = _strip_html(html)
        if from_html is not None and from_html.new_text and _begins_within(from_html.new_text, text):
            return from_html
    if found.new_text:
        return found
    whole = text if text.strip() else html_to_text(html or "")
    return Stripped(_tidy(whole.split("\n")), quoted=found.quoted, signature=None)


def _strip_text(text: str, signatures: tuple[str, ...] = ()) -> tuple[Stripped, str]:
    lines, how = strip_quotes(text.split("\n"))
    lines, signature = strip_signature(lines)
    parts = [*signatures, _tidy(signature)]
    return Stripped(_tidy(lines), how != NONE, "\n".join(p for p in parts if p) or None), how


def _strip_html(html: str) -> Stripped | None:
    cut = cut_history(html)
    if cut is None or not cut.quoted:
        return None
    signatures = tuple(html_to_text(s) for s in cut.signatures)
    found, _how = _strip_text(_NEWLINES.sub("\n", html_to_text(cut.html)), signatures)
    return Stripped(found.new_text, True, found.signature)


def _begins_within(new: str, text: str) -> bool:
    """Whether the first line of ``new`` is in ``text`` too: the HTML holds the same message as
    the text part (some senders' parts differ, and then the text part is the article)."""
    if not text.strip():
        return True
    first = " ".join(next(line for line in new.split("\n") if line.strip()).split())
    return first[:CHECKED_CHARS] in " ".join(text.split())


def _tidy(lines: list[str]) -> str:
    """The lines as one text without blank lines around it and trailing spaces at its end."""
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    return "\n".join(lines[start:]).rstrip()
