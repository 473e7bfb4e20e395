"""Fixtures of the parser tests: message builders, a TNEF builder, and the report hooks."""

from __future__ import annotations

import struct
import textwrap
from collections.abc import Callable

import pytest

REPORTS = pytest.StashKey[list[str]]()


def build(text: str) -> bytes:
    """A message from dedented text, with CRLF line ends as IMAP delivers them."""
    return textwrap.dedent(text).lstrip("\n").replace("\n", "\r\n").encode("utf-8")


@pytest.fixture
def mail() -> Callable[[str], bytes]:
    return build


def _tnef_object(level: int, name: int, kind: int, data: bytes) -> bytes:
    # MS-OXTNEF 2.1.3.1: level, attribute id + type, length, data, checksum (sum of data bytes).
    return struct.pack("<BHHI", level, name, kind, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def lzfu(rtf: bytes) -> bytes:
    """MS-OXRTFCP compression, the simplest valid way: a back-reference for the "{\\rtf1\\ansi"
    every RTF starts with (the dictionary's first 11 bytes), literals, the end marker."""
    tokens: list[bytes | int] = [11 - 2] if rtf.startswith(b"{\\rtf1\\ansi") else []  # offset 0
    tokens += [rtf[i : i + 1] for i in range(11 if tokens else 0, len(rtf))]
    tokens.append(((207 + len(rtf)) % 4096) << 4)  # a reference to the write position: the end
    body = b""
    for start in range(0, len(tokens), 8):
        group = tokens[start : start + 8]
        body += bytes([sum(1 << i for i, token in enumerate(group) if isinstance(token, int))])
        body += b"".join(token.to_bytes(2, "big") if isinstance(token, int) else token for token in group)
    return struct.pack("<II4sI", len(body) + 12, len(rtf), b"LZFu", 0) + body


def _mapi_binary(prop: int, data: bytes) -> bytes:
    padded = data + b"\x00" * (-len(data) % 4)
    return struct.pack("<IHHII", 1, 0x0102, prop, 1, len(data)) + padded


def tnef_blob(files: dict[str, bytes], body: str = "", rtf: bytes = b"") -> bytes:
    """A minimal winmail.dat holding ``files``, and a plain-text or RTF body."""
    out = struct.pack("<IH", 0x223E9F78, 1)
    out += _tnef_object(1, 0x9006, 0x0008, struct.pack("<I", 0x10000))  # TNEF version
    out += _tnef_object(1, 0x9007, 0x0006, struct.pack("<II", 1252, 0))  # OEM codepage
    if body:
        out += _tnef_object(1, 0x800C, 0x0002, body.encode("cp1252"))  # attBody
    if rtf:
        out += _tnef_object(1, 0x9003, 0x0006, _mapi_binary(0x1009, lzfu(rtf)))  # PR_RTF_COMPRESSED
    for name, content in files.items():
        out += _tnef_object(2, 0x9002, 0x0006, b"\x01\x00" + b"\x00" * 12)  # attachment starts
        out += _tnef_object(2, 0x8010, 0x0001, name.encode("cp1252") + b"\x00")  # title
        out += _tnef_object(2, 0x800F, 0x0006, content)  # data
    return out


@pytest.fixture
def winmail() -> Callable[..., bytes]:
    return tnef_blob


@pytest.fixture(scope="session")
def summary(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Adds a text to the terminal summary, shown with or without -s."""

    def add(text: str) -> None:
        request.config.stash.setdefault(REPORTS, []).append(text)

    return add


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    for text in config.stash.get(REPORTS, []):
        terminalreporter.write_sep("-", "parsers")
        terminalreporter.write_line(text)
