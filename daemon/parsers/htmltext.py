"""HTML to readable plain text with the stdlib HTML parser."""

from __future__ import annotations

import re
from html.parser import HTMLParser

MAX_HTML_CHARS = 500_000  # html.parser reads ~2 MB/s; text past this point of a huge HTML-only mail is dropped

# Content a mail client never shows.
_HIDDEN = frozenset({"script", "style", "head", "title", "template", "xml", "object"})
_BLOCK_TAGS = (
    "address article aside blockquote caption center dd details dialog dir div dl dt fieldset figcaption figure "
    "footer form h1 h2 h3 h4 h5 h6 header hr li main menu nav ol p pre section summary table tbody thead tfoot tr ul"
)
_BLOCK = frozenset(_BLOCK_TAGS.split())
_PARAGRAPH = frozenset(["p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "table", "ul", "ol", "dl", "pre", "hr"])
_CELL = frozenset({"td", "th"})
_VOID = frozenset(
    ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"]
)
# Markers until the layout pass: a block edge needs a line break, a paragraph edge a blank
# line; several edges in a row still need only one (unlike <br>, which always breaks).
_LINE, _PARAGRAPH_EDGE, _VERBATIM = "\x00", "\x02", "\x01"  # _VERBATIM starts a <pre> line
_EDGES = re.compile(r"[ \t]*[\x00\x02][\x00\x02 \t]*")
_SPACES = re.compile(r"[ \t\r\n\f\v\u00a0\u200b]+")
_LAYOUT_SPACES = re.compile(r"[ \t]+")
_BLANK_LINES = re.compile(r"\n{3,}")


class _TextExtractor(HTMLParser):
    """Collects visible text; block elements become line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.hidden = 0  # browsers close an unclosed <head> here
        elif tag in _HIDDEN:
            self.hidden += tag not in _VOID
        elif tag == "br":
            self.out.append("\n")
        elif tag in _BLOCK:
            self.out.append(_PARAGRAPH_EDGE if tag in _PARAGRAPH else _LINE)
            if tag == "li":
                self.out.append("- ")
            elif tag == "pre":
                self.pre += 1
                self.out.append(_VERBATIM)
        elif tag in _CELL:
            self.out.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _BLOCK:
            self.out.append(_PARAGRAPH_EDGE if tag in _PARAGRAPH else _LINE)
            self.pre = max(0, self.pre - (tag == "pre"))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # <br/> and <hr/>; a self-closed hidden tag (<script/>) hides nothing.
        if tag not in _HIDDEN:
            self.handle_starttag(tag, attrs)
            if tag not in _VOID:
                self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if self.pre:
            self.out.append(data.replace("\r\n", "\n").replace("\n", "\n" + _VERBATIM))
        else:
            self.out.append(_SPACES.sub(" ", data))


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: hidden elements dropped, blocks on their own lines."""
    parser = _TextExtractor()
    try:
        parser.feed(html[:MAX_HTML_CHARS])
        parser.close()
    except (AssertionError, ValueError):
        pass  # older html.parser versions assert on malformed declarations; keep what we have
    return _layout("".join(parser.out))


def _layout(text: str) -> str:
    text = _EDGES.sub(lambda edge: "\n\n" if _PARAGRAPH_EDGE in edge.group() else "\n", text)
    lines = (_layout_line(line) for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")


def _layout_line(line: str) -> str:
    if line.startswith(_VERBATIM):
        return line.replace(_VERBATIM, "").rstrip()
    return _LAYOUT_SPACES.sub(" ", line.replace(_VERBATIM, "")).strip()
