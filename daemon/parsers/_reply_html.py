"""Quoted history in HTML: the elements mail clients put it in, found with the stdlib HTML parser.

Only positions are found here; the HTML that is left goes through htmltext.html_to_text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

from ticketd.daemon.parsers import _reply_words as words
from ticketd.daemon.parsers.htmltext import MAX_HTML_CHARS

# A cheap look before the HTML parser runs: no marker, no parse.
_MARKERS = re.compile(
    r"gmail_quote|gmail_signature|divRplyFwdMsg|appendonsend|OutlookMessageHeader|OLK_SRC_BODY_SECTION"
    r"|mail-editor-reference-message-container|moz-cite-prefix|moz-signature|moz-forward-container"
    r"|yahoo_quoted|protonmail_quote|type\s*=\s*[\"']?cite|border-top:\s*solid\s+#(?:E1E1E1|B5C4DF)",
    re.IGNORECASE,
)
# Everything from these on is history. Outlook puts the quoted body after its header block,
# not inside it, and marks the block with an id (web, new Outlook, Mac) or a border (Word).
_CUT_IDS = frozenset(
    {"divrplyfwdmsg", "appendonsend", "mail-editor-reference-message-container", "olk_src_body_section"}
)
_CUT_CLASSES = frozenset({"outlookmessageheader", "moz-forward-container"})
_OUTLOOK_BORDERS = ("border-top:solid#e1e1e1", "border-top:solid#b5c4df")
# These elements hold quoted history or an attribution; what follows them may be new text.
_QUOTE_CLASSES = frozenset({"gmail_quote", "moz-cite-prefix", "protonmail_quote"})
_SIGNATURE_CLASSES = frozenset({"gmail_signature", "gmail_signature_prefix", "moz-signature"})
_LINE_TAGS = frozenset({"p", "div", "br", "tr", "li", "td"})


@dataclass
class HtmlCut:
    """The HTML without its history and signature elements, and what was taken out."""

    html: str
    quoted: bool
    signatures: list[str] = field(default_factory=list)


def cut_history(html: str) -> HtmlCut | None:
    """The HTML with the quoted history removed, or None when it shows no client's quote markup."""
    head = html[:MAX_HTML_CHARS]
    if not _MARKERS.search(head):
        return None
    finder = _Finder(head)
    try:
        finder.feed(head)
        finder.close()
    except _Done:
        pass
    except (AssertionError, ValueError):
        pass  # as in html_to_text: keep what was found before the parser gave up
    if finder.open is not None:  # never closed: it runs to the end
        finder.ranges.append((finder.open.start, len(head), finder.open.kind))
    end = finder.cut if finder.cut is not None else len(head)
    kept, signatures, at = [], [], 0
    for start, stop, kind in finder.ranges:
        kept.append(head[at:start])
        if kind == "signature":
            signatures.append(head[start:stop])
        at = stop
    kept.append(head[at:end])
    quoted = finder.cut is not None or any(kind == "quote" for *_, kind in finder.ranges)
    return HtmlCut("".join(kept), quoted, signatures)


class _Done(Exception):
    """Raised to stop the parser once the cut is found: the rest is history."""


@dataclass
class _Open:
    tag: str
    start: int
    kind: str
    depth: int = 1


class _Finder(HTMLParser):
    """Offsets of the history: where it is cut, and the elements to take out."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.html = html
        self.line_offsets = [0] + [m.end() for m in re.finditer("\n", html)]
        self.cut: int | None = None
        self.ranges: list[tuple[int, int, str]] = []
        self.open: _Open | None = None
        self.rule: int | None = None  # an <hr> right before Outlook's header block belongs to it
        self.line_start = 0  # where the current line of text began, and its text
        self.line_text = ""

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_offsets[line - 1] + column

    def _tag_end(self, start: int) -> int:
        end = self.html.find(">", start)
        return len(self.html) if end < 0 else end + 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.open is not None:
            self.open.depth += tag == self.open.tag
            return
        at = self._offset()
        kind = _kind(tag, dict(attrs))
        if kind == "cut":
            self.cut = self.rule if self.rule is not None else at
            raise _Done
        if kind is not None:
            # A text attribution ("On … wrote:") right before a cited blockquote goes with it.
            start = self.line_start if kind == "quote" and _is_attribution(self.line_text) else at
            self.open = _Open(tag, start, kind)
            return
        self.rule = at if tag == "hr" else None
        if tag in _LINE_TAGS:
            self.line_start = self._tag_end(at) if tag == "br" else at
            self.line_text = ""

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.open is not None:
            return  # <br/> and the like: no depth to count
        self.handle_starttag(tag, attrs)
        if self.open is not None:
            self.handle_endtag(tag)  # <div class="gmail_quote"/> holds nothing

    def handle_endtag(self, tag: str) -> None:
        if self.open is None or tag != self.open.tag:
            return
        self.open.depth -= 1
        if self.open.depth == 0:
            self.ranges.append((self.open.start, self._tag_end(self._offset()), self.open.kind))
            self.open = None
            self.line_start, self.line_text = self.ranges[-1][1], ""

    def handle_data(self, data: str) -> None:
        if self.open is None:
            self.line_text = (self.line_text + data)[-words.MAX_LINE :]
            if data.strip():
                self.rule = None


def _kind(tag: str, attrs: dict[str, str | None]) -> str | None:
    """What an element with these attributes holds: "cut", "quote", "signature" or None."""
    classes = set((attrs.get("class") or "").lower().split())
    if (attrs.get("id") or "").lower() in _CUT_IDS or classes & _CUT_CLASSES:
        return "cut"
    if tag == "div" and any(b in (attrs.get("style") or "").lower().replace(" ", "") for b in _OUTLOOK_BORDERS):
        return "cut"
    # Yahoo prefixes its class names per message: "ydp8e4f1b2ayahoo_quoted".
    if classes & _QUOTE_CLASSES or any(c.endswith("yahoo_quoted") for c in classes):
        return "quote"
    if tag == "blockquote" and (attrs.get("type") or "").lower() == "cite":
        return "quote"
    if classes & _SIGNATURE_CLASSES:
        return "signature"
    return None


def _is_attribution(text: str) -> bool:
    line = " ".join(text.split())
    return line.endswith(":") and words.ATTRIBUTION_VERB.search(line[-words.ATTRIBUTION_TAIL :]) is not None
