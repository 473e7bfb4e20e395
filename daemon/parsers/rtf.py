"""Outlook's RTF bodies: LZFu decompression (MS-OXRTFCP) and RTF to plain text."""

from __future__ import annotations

import re
import struct

MAX_RTF_BYTES = 1_000_000  # decompressed RTF we read (~0.25 s of pure Python); RAWSIZE is the sender's word

# MS-OXRTFCP 2.1.2.1: the dictionary starts out holding this text.
_PREBUF = (
    b"{\\rtf1\\ansi\\mac\\deff0\\deftab720{\\fonttbl;}{\\f0\\fnil \\froman \\fswiss \\fmodern \\fscript "
    b"\\fdecor MS Sans SerifSymbolArialTimes New RomanCourier{\\colortbl\\red0\\green0\\blue0\r\n\\par "
    b"\\pard\\plain\\f0\\fs20\\b\\i\\u\\tab\\tx"
)
_COMPRESSED, _UNCOMPRESSED = b"LZFu", b"MELA"

_TOKEN = re.compile(
    rb"\\([a-zA-Z]{1,32})(-?[0-9]{1,10})? ?|\\'([0-9a-fA-F]{2})|\\(.)|([{}])|([^\\{}\r\n]+)|[\r\n]+", re.DOTALL
)
# Destinations whose text is not shown (fonts, styles, metadata, pictures, ...).
_HIDDEN = frozenset(
    b"fonttbl colortbl stylesheet info pict object header footer headerl headerr footerl footerr "
    b"themedata colorschememapping latentstyles datastore xmlnstbl listtable listoverridetable "
    b"rsidtbl generator filetbl revtbl mmathPr fldinst".split()
)
_BREAKS = {b"par": "\n", b"line": "\n", b"row": "\n", b"page": "\n", b"sect": "\n", b"tab": "\t", b"cell": " "}
_SYMBOLS = {b"~": "\u00a0", b"_": "\u2011", b"-": "", b"\\": "\\", b"{": "{", b"}": "}"}


def decompress(data: bytes) -> bytes:
    """The RTF inside a PR_RTF_COMPRESSED value; ValueError when it is not one."""
    if len(data) < 16:
        raise ValueError("compressed RTF shorter than its header")
    comp_size, raw_size, kind = struct.unpack_from("<II4s", data)
    if kind == _UNCOMPRESSED:
        return data[16 : 16 + min(raw_size, MAX_RTF_BYTES)]
    if kind != _COMPRESSED:
        raise ValueError(f"unknown compressed RTF type {kind!r}")
    return _lzfu(data[16 : 4 + comp_size], min(raw_size, MAX_RTF_BYTES))


def _lzfu(data: bytes, limit: int) -> bytes:
    window = bytearray(_PREBUF.ljust(4096, b"\x00"))
    write = len(_PREBUF)
    out = bytearray()
    pos = 0
    while pos < len(data) and len(out) < limit:
        control = data[pos]
        pos += 1
        for bit in range(8):
            if pos >= len(data):
                break
            if not control & (1 << bit):
                literal = data[pos : pos + 1]
                pos += 1
                out += literal
                window[write] = literal[0]
                write = (write + 1) % 4096
                continue
            token = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
            offset, length = token >> 4, (token & 0xF) + 2
            if offset == write:  # the end marker
                return bytes(out[:limit])
            for i in range(length):
                byte = window[(offset + i) % 4096]
                out.append(byte)
                window[write] = byte
                write = (write + 1) % 4096
    return bytes(out[:limit])


def rtf_to_text(rtf: bytes) -> str:
    """The visible text of an RTF document (paragraphs as lines; formatting dropped)."""
    out: list[str] = []
    state = _State()
    stack: list[_State] = []
    for match in _TOKEN.finditer(rtf):
        word, param, hexbyte, symbol, brace, text = match.groups()
        if brace is not None:
            if brace == b"{":
                stack.append(state)
                state = state.copy()
            elif stack:
                state = stack.pop()
        elif state.hidden:
            continue
        elif word is not None:
            _control(word, param, state, out)
        elif symbol is not None:
            state.hidden = state.hidden or symbol == b"*"  # an optional destination
            out.append(_SYMBOLS.get(symbol, ""))
        elif hexbyte is not None:
            state.text(bytes([int(hexbyte, 16)]), out)
        elif text is not None:
            state.text(text, out)
    return "".join(out).strip()


class _State:
    """Per-group reading state: hidden destination, codepage, \\uc fallback length."""

    def __init__(self) -> None:
        self.hidden = False
        self.codepage = "cp1252"
        self.skip = 1  # \\ucN: characters after \\uN that are the fallback for old readers
        self.to_skip = 0

    def copy(self) -> _State:
        twin = _State()
        twin.hidden, twin.codepage, twin.skip = self.hidden, self.codepage, self.skip
        return twin

    def text(self, data: bytes, out: list[str]) -> None:
        dropped = min(self.to_skip, len(data))
        self.to_skip -= dropped
        out.append(data[dropped:].decode(self.codepage, "replace"))


def _control(word: bytes, param: bytes | None, state: _State, out: list[str]) -> None:
    if word in _HIDDEN:
        state.hidden = True
    elif word in _BREAKS:
        out.append(_BREAKS[word])
    elif word == b"ansicpg" and param:
        state.codepage = f"cp{int(param)}" if int(param) in _CODEPAGES else state.codepage
    elif word == b"uc" and param:
        state.skip = int(param)
    elif word == b"u" and param:
        out.append(chr(int(param) % 65536))
        state.to_skip = state.skip


_CODEPAGES = frozenset(
    {437, 850, 852, 866, 874, 932, 936, 949, 950, 1250, 1251, 1252, 1253, 1254, 1255, 1256, 1257, 1258}
)
