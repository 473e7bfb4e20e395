"""Make peer-supplied text and database URLs safe to show a person on a terminal."""

from __future__ import annotations

import json
import re
import sys
from typing import Any, Callable

# Code points shown as escapes wherever we print; each range is here for the reason beside it.
HIDDEN = (
    (0x00, 0x08), (0x0B, 0x1F), (0x7F, 0x9F),  # C0 (bar \t \n), DEL, C1: ESC, CSI, OSC 52 drive the terminal
    (0x061C, 0x061C), (0x200E, 0x200F), (0x202A, 0x202E), (0x2066, 0x2069),  # bidi: reorder what is read
    (0x206A, 0x206F),  # deprecated format controls (symmetric swapping, digit shapes)
    (0x2028, 0x2029),  # line and paragraph separators: a line break some terminals honour
    (0x180E, 0x180E), (0x200B, 0x200B), (0x2060, 0x2064), (0xFEFF, 0xFEFF),  # zero-width: hide text
    (0xFFF9, 0xFFFB),  # interlinear annotation: hides the annotated text
    (0xD800, 0xDFFF),  # lone surrogates: printing one would raise UnicodeEncodeError
    (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),  # invisible shorthand and musical format controls
    (0xE0001, 0xE0001), (0xE0020, 0xE007F),  # tag characters: invisible ASCII ("smuggled" text)
)
# Left alone on purpose: U+200C/U+200D (ZWNJ/ZWJ), which Persian, Indic scripts and emoji need;
# U+00AD (soft hyphen) and the visible prepended marks of Arabic and other scripts.

_CLASS = "".join(f"{chr(a)}-{chr(b)}" if a != b else chr(a) for a, b in HIDDEN)
_IN_TEXT = re.compile(f"[{_CLASS}]")
_IN_LINE = re.compile(f"[\t\n{_CLASS}]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def safe_text(text: str) -> str:
    """Body text as it may reach a terminal: line breaks and tabs kept, controls escaped."""
    # CRLF is only a line break; a lone CR (which can overwrite a line on screen) is escaped.
    return _IN_TEXT.sub(_escape, text.replace("\r\n", "\n"))


def safe_line(value: object) -> str:
    """A single-line field (subject, address, filename, reason, header): \\n, \\r, \\t escaped too."""
    return _IN_LINE.sub(_escape, str(value))


def redact_url(url: str) -> str:
    """The URL with the password of its userinfo replaced by ***, for messages and listings."""
    scheme, sep, rest = url.partition("://")
    # The last @ ends the userinfo, so an unencoded @, / or # in a password is hidden too; at
    # worst an @ in the query hides more than the password, never less.
    userinfo, at, host = rest.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not (sep and at and colon) or any(c in user for c in "/?#"):
        return url
    return f"{scheme}://{user}:***@{host}"


def emit(data: Any, as_json: bool, human: Callable[[Any], str]) -> int:
    """``--json``: the data exactly; otherwise the rendering for a person (escaped)."""
    if as_json:
        print_json(data)
    else:
        print(human(data))
    return 0


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")
