"""The raw header block: find it, and repair the breakage that would make the stdlib lose it."""

from __future__ import annotations

import re

from ticketd.daemon.parsers.model import UnreadableMessage

MAX_HEADER_BLOCK = 256_000  # bytes scanned for the end of the header block
MAX_STRAY_RUN = 50  # unindented lines inside a header block that may be taken as folded
MIN_FIELDS_AFTER = 2  # header fields that must follow a stray run for it to count as folded

_MBOX_FROM = re.compile(rb"From (?![ \t]*:)[^\r\n]*\r?\n")  # not "From :", an obsolete-syntax field
# The stdlib's field pattern; _OBS_FIELD allows RFC 5322 4.5.3 whitespace before the colon.
_FIELD = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
_OBS_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]+:")


def message_bytes(raw: bytes, defects: list[str]) -> bytes:
    """The bytes to parse, or UnreadableMessage when they hold no header block."""
    data = bytes(raw).removeprefix(b"\xef\xbb\xbf")
    # An mbox "From " separator line is not part of the message (RFC 4155).
    if _MBOX_FROM.match(data):
        data = data[_MBOX_FROM.match(data).end() :]  # type: ignore[union-attr]
    data = data.lstrip(b"\r\n")
    if not data.strip():
        raise UnreadableMessage("empty input")
    if _is_field(data):
        return data
    # A forwarding tool's banner line ("---- Original message ----") before the headers.
    first_end = data.find(b"\n") + 1
    if 0 < first_end <= 200 and _is_field(data[first_end:]):
        defects.append(f"line before the headers dropped: {data[:first_end].strip()[:60]!r}")
        return data[first_end:]
    raise UnreadableMessage("no header fields: does not start with 'Name: value'")


def _is_field(data: bytes) -> bool:
    return bool(_FIELD.match(data) or _OBS_FIELD.match(data))


def repair(data: bytes, defects: list[str]) -> bytes:
    """Fix header lines the stdlib would take as the start of the body: unindented
    folded lines and "Name :" fields. Everything after the header block is untouched."""
    lines, end = _header_lines(data)
    kinds = [_kind(line) for line in lines]
    if "stray" not in kinds and "obsolete" not in kinds:
        return data
    fixed = [
        _OBS_FIELD.sub(rb"\1:", line, count=1) if kind == "obsolete" else line
        for line, kind in zip(lines, kinds, strict=True)
    ]
    if "obsolete" in kinds:
        defects.append("header field with space before the colon: normalized")
    fields = [i for i, kind in enumerate(kinds) if kind in ("field", "obsolete")]
    # A stray run is folded text only if MIN_FIELDS_AFTER fields still follow it.
    last_start = fields[-MIN_FIELDS_AFTER] if len(fields) >= MIN_FIELDS_AFTER else -1
    for start, stop in _stray_runs(kinds):
        if _looks_folded(kinds, start, stop, last_start):
            fixed[start:stop] = [b" " + line for line in lines[start:stop]]
            defects.append("header lines without folding indentation: joined to the field above")
    return b"".join(fixed) + data[end:]


def _header_lines(data: bytes) -> tuple[list[bytes], int]:
    lines: list[bytes] = []
    pos = 0
    while pos < min(len(data), MAX_HEADER_BLOCK):
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end + 1
        line = data[pos:end]
        if not line.strip(b"\r\n"):
            break
        lines.append(line)
        pos = end
    return lines, pos


def _kind(line: bytes) -> str:
    if line[:1] in (b" ", b"\t"):
        return "continuation"
    if _FIELD.match(line):
        return "field"
    return "obsolete" if _OBS_FIELD.match(line) else "stray"


def _stray_runs(kinds: list[str]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for i, kind in enumerate(kinds):
        if kind == "stray":
            if runs and runs[-1][1] == i:
                runs[-1] = (runs[-1][0], i + 1)
            else:
                runs.append((i, i + 1))
    return runs


def _looks_folded(kinds: list[str], start: int, stop: int, last_start: int) -> bool:
    """A stray run inside the header block, not a body that lacks its blank line: it
    follows a field, a header line comes next, and enough fields follow (from last_start on)."""
    if stop - start > MAX_STRAY_RUN or start == 0 or stop > last_start:
        return False
    return kinds[stop] != "stray"
