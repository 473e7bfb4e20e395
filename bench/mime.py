"""A small MIME writer with byte-exact control, so odd mail can be written on purpose."""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from dataclasses import dataclass, field

CRLF = b"\r\n"
HeaderValue = str | bytes
Headers = list[tuple[str, HeaderValue]]

_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_ENCODED_WORD_MAX = 75  # RFC 2047 section 2
_LINE_WIDTH = 78  # RFC 5322 section 2.1.1: SHOULD be no more than 78 characters


@dataclass
class Part:
    """One MIME entity: a leaf with a transfer-encoded body, or a multipart with parts."""

    headers: Headers
    body: bytes = b""  # leaf body, already transfer-encoded, CRLF line endings
    parts: list[Part] = field(default_factory=list)
    boundary: str = ""
    close: bool = True  # write the closing delimiter (False makes a truncated multipart)
    preamble: bytes = b""


def render(part: Part) -> bytes:
    """The entity as bytes: header lines, a blank line, the body."""
    head = b"".join(header_line(name, value) for name, value in part.headers)
    return head + CRLF + _render_body(part)


def _render_body(part: Part) -> bytes:
    if not part.parts:
        return part.body
    delimiter = b"--" + part.boundary.encode("ascii")
    chunks = [part.preamble]
    for child in part.parts:
        # The CRLF before each delimiter belongs to the delimiter (RFC 2046 5.1.1).
        chunks += [delimiter, CRLF, render(child), CRLF]
    if part.close:
        chunks += [delimiter, b"--", CRLF]
    return b"".join(chunks)


def header_line(name: str, value: HeaderValue) -> bytes:
    """``Name: value`` folded at spaces to 78 columns, CRLF-terminated."""
    if isinstance(value, bytes):  # deliberately raw (8-bit) header: written as is
        return name.encode("ascii") + b": " + value + CRLF
    if "\n" in value:  # folded by the caller
        return f"{name}: {value}".encode("ascii") + CRLF
    return fold(f"{name}: {value}").encode("ascii") + CRLF


def fold(line: str) -> str:
    """Fold an unfolded header line at spaces; a word longer than a line stays whole."""
    if len(line) <= _LINE_WIDTH:
        return line
    words = line.split(" ")
    # Never break right after "Name:": some parsers then keep a leading space in the value.
    lines, current = [], " ".join(words[:2])
    for word in words[2:]:
        if len(current) + 1 + len(word) > _LINE_WIDTH:
            lines.append(current)
            current = " " + word
        else:
            current += " " + word
    lines.append(current)
    return "\r\n".join(lines)


def encode_words(text: str, charset: str, mode: str = "B") -> str:
    """RFC 2047 form of ``text``: ASCII words stay as they are, runs of others are encoded."""
    out: list[str] = []
    run: list[str] = []
    for word in text.split(" "):
        if word.isascii():
            if run:
                out.append(_encode_run(" ".join(run), charset, mode))
                run = []
            out.append(word)
        else:
            run.append(word)
    if run:
        out.append(_encode_run(" ".join(run), charset, mode))
    return " ".join(out)


def _encode_run(text: str, charset: str, mode: str) -> str:
    """Encoded-words of at most 75 characters; the space between them is not content."""
    words, chunk = [], ""
    for char in text:
        if chunk and len(_encoded_word(chunk + char, charset, mode)) > _ENCODED_WORD_MAX:
            words.append(_encoded_word(chunk, charset, mode))
            chunk = ""
        chunk += char
    words.append(_encoded_word(chunk, charset, mode))
    return " ".join(words)


def _encoded_word(text: str, charset: str, mode: str) -> str:
    data = text.encode(charset)
    if mode == "B":
        payload = base64.b64encode(data).decode("ascii")
    else:
        payload = "".join(_q_char(byte) for byte in data)
    return f"=?{charset}?{mode}?{payload}?="


def _q_char(byte: int) -> str:
    if byte == 0x20:
        return "_"
    return chr(byte) if byte in _Q_SAFE else f"={byte:02X}"


def address(name: str, email: str, charset: str = "utf-8", mode: str = "B") -> str:
    """``Name <email>`` with the display name quoted or encoded as needed."""
    if not name:
        return email
    if not name.isascii():
        return f"{encode_words(name, charset, mode)} <{email}>"
    if any(char in name for char in "()<>[]:;@\\,.\"'"):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}" <{email}>'
    return f"{name} <{email}>"


def crlf(text: str) -> str:
    """Text with every line ending as CRLF."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


def qp_body(data: bytes) -> bytes:
    """Quoted-printable for LF-terminated text bytes, with CRLF line endings."""
    encoded = binascii.b2a_qp(data.replace(b"\r\n", b"\n"), istext=True)
    return crlf_bytes(encoded)


def b64_body(data: bytes) -> bytes:
    """Base64 in 76-character lines with CRLF line endings."""
    return base64.encodebytes(data).replace(b"\n", CRLF)


def crlf_bytes(data: bytes) -> bytes:
    """Bytes with every line ending as CRLF."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", CRLF)


def filename_params(name: str, style: str) -> tuple[str, str]:
    """(Content-Disposition filename params, Content-Type name param) for ``name``.

    ``style``: "2231" (RFC 2231 extended value), "2231-split" (RFC 2231 continuations) or
    "2047" (encoded-word in a quoted string: not standard, but what many clients send).
    """
    if name.isascii():
        quoted = name.replace('"', "")
        return f'filename="{quoted}"', f'name="{quoted}"'
    if style == "2047":
        word = encode_words(name, "utf-8", "B")
        return f'filename="{word}"', f'name="{word}"'
    value = urllib.parse.quote(name.encode("utf-8"), safe="")
    if style == "2231-split":
        pieces = [value[i:i + 30] for i in range(0, len(value), 30)]
        # A piece must not split a %XX escape.
        pieces = _rejoin_escapes(pieces)
        params = [f"filename*0*=utf-8''{pieces[0]}"]
        params += [f"filename*{i}*={piece}" for i, piece in enumerate(pieces[1:], start=1)]
        return "; ".join(params), f"name*=utf-8''{value}"
    return f"filename*=utf-8''{value}", f"name*=utf-8''{value}"


def _rejoin_escapes(pieces: list[str]) -> list[str]:
    fixed: list[str] = []
    carry = ""
    for piece in pieces:
        piece = carry + piece
        cut = piece.rfind("%")
        carry = piece[cut:] if cut >= len(piece) - 2 and cut != -1 else ""
        fixed.append(piece[: len(piece) - len(carry)])
    if carry:
        fixed.append(carry)
    return [piece for piece in fixed if piece]
