"""uuencoded data: whole x-uuencode bodies and "begin 644 name" blocks inside plain text."""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

MAX_BLOCKS = 50  # uuencoded files per text body

_BEGIN = re.compile(r"^begin +([0-7]{3,4})(?: +(.*?))? *$", re.MULTILINE)
_END = re.compile(r"^end *$", re.MULTILINE)
_NOT_UU_LINE = re.compile(r"[^\x20-\x60\r\n]")  # uuencoded lines use only these characters


@dataclass(frozen=True)
class UUFile:
    """One uuencoded file found in a text body."""

    filename: str
    content: bytes


def _line(line: bytes) -> bytes:
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        # Workaround for broken encoders, as in the old stdlib uu module: trust the length byte.
        nbytes = (((line[0] - 32) & 63) * 4 + 5) // 3 if line else 0
        try:
            return binascii.a2b_uu(line[:nbytes])
        except binascii.Error:
            return b""


def uudecode_lines(lines: list[bytes]) -> bytes:
    """Decode the lines between "begin" and "end"."""
    return b"".join(_line(line.rstrip(b"\r\n")) for line in lines if line.strip() and line.strip() != b"`")


def uudecode(data: bytes) -> bytes | None:
    """A Content-Transfer-Encoding: x-uuencode body, or None when it has no begin line."""
    lines = data.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(b"begin ")]
    if not starts:
        return None
    body = []
    for line in lines[starts[0] + 1 :]:
        if line.strip() == b"end":
            break
        body.append(line)
    return uudecode_lines(body)


def extract(text: str) -> tuple[str, list[UUFile]]:
    """Text with its uuencoded blocks cut out, and the files they held."""
    if "begin " not in text:
        return text, []
    files: list[UUFile] = []
    kept: list[str] = []
    pos = 0
    end: re.Match[str] | None = None
    for begin in _BEGIN.finditer(text):
        if begin.start() < pos:
            continue
        if len(files) >= MAX_BLOCKS:
            break
        # Reuse the "end" found for an earlier candidate: many "begin" lines must not each
        # rescan the rest of the text.
        if end is None or end.start() < begin.end():
            end = _END.search(text, begin.end())
            if end is None:
                break
        if _NOT_UU_LINE.search(text, begin.end(), end.start()):
            continue  # prose that happens to start with "begin 644"
        block = text[begin.end() : end.start()].encode("ascii").splitlines()
        kept.append(text[pos : begin.start()])
        files.append(UUFile((begin.group(2) or "").strip("\"'"), uudecode_lines(block)))
        pos = end.end()
    kept.append(text[pos:])
    return "".join(kept), files
