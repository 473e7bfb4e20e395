"""Bytes to text in the declared charset, repairing the usual mislabels and never raising."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

# Labels MUAs write that Python does not know, or knows under another name.
_ALIASES: dict[str, str] = {
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "x-mac-roman": "mac-roman",
    "x-euc-jp": "euc-jp",
    "x-sjis": "shift_jis",
    "windows-31j": "cp932",
    "x-gbk": "gbk",
    "ks_c_5601": "cp949",
    "ansi_x3.4-1968": "ascii",
    "utf8": "utf-8",
}

# Labels that name no charset at all: treat as undeclared.
_NO_CHARSET = frozenset({"", "unknown", "unknown-8bit", "x-unknown", "default", "x-user-defined", "charset", "none"})

# Codecs Python accepts but that are not mail charsets (they interpret escapes, or fail by design).
_REFUSED = ("escape", "idna", "punycode", "undefined", "mbcs", "oem")

# Declared charset -> codecs to try in order. Senders label supersets with the base name:
# GB2312 mail is GBK/GB18030, Shift_JIS mail is CP932, KS C 5601 is CP949, and so on.
_SUPERSETS: dict[str, tuple[str, ...]] = {
    "gb2312": ("gb18030",),
    "gbk": ("gb18030",),
    "euc_kr": ("cp949",),
    "shift_jis": ("cp932", "shift_jis_2004"),
    "big5": ("big5hkscs", "cp950"),
    "tis-620": ("cp874",),
    "iso2022_jp": ("iso2022_jp", "x-iso2022-jp-ms", "iso2022_jp_ext", "iso2022_jp_2", "iso2022_jp_3"),
    "euc_jp": ("euc_jp", "euc_jis_2004"),
}

# iso-8859-x -> the windows-125x codepage it is confused with. C1 control bytes (0x80-0x9f)
# never occur in real iso-8859 text, so their presence means the windows sibling was meant.
_WINDOWS_SIBLING: dict[str, str] = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-15": "cp1252",
    "iso8859-2": "cp1250",
    "iso8859-5": "cp1251",
    "iso8859-7": "cp1253",
    "iso8859-9": "cp1254",
    "iso8859-8": "cp1255",
    "iso8859-6": "cp1256",
    "iso8859-4": "cp1257",
    "iso8859-13": "cp1257",
    "iso8859-11": "cp874",
}

# Single-byte legacy charsets: valid multi-byte UTF-8 under such a label is a mislabel.
_SINGLE_BYTE_PREFIXES = ("iso8859-", "cp125", "ascii", "koi8", "mac-", "cp874", "cp437", "cp850")

# Codecs whose ASCII-only bytes are not ASCII text (7-bit encodings of non-ASCII, and
# UTF-16/32 whose NUL bytes are ASCII); the ASCII fast path must not skip them.
_NOT_ASCII_COMPATIBLE = ("utf-7", "iso2022", "hz", "utf-16", "utf-32")

_C1 = re.compile(rb"[\x80-\x9f]")

Hints = tuple[str, ...]  # codecs declared in a message, for its unlabelled 8-bit text


@dataclass(frozen=True)
class Decoded:
    """Decoded text and, when the declared charset was not used as is, why."""

    text: str
    defect: str = ""


def codec_for(label: str | None) -> str | None:
    """Python codec name for a MIME charset label, None when unknown or absent."""
    if not label:
        return None
    name = label.strip().strip("\"'").strip().lower()
    # RFC 2231 language tags (utf-8*en) and stray parameters are not part of the name.
    name = name.split("*", 1)[0].split(";", 1)[0].strip()
    if name in _NO_CHARSET:
        return None
    name = _ALIASES.get(name, name)
    try:
        codec = codecs.lookup(name).name
    except (LookupError, ValueError):
        return None
    if any(bad in codec for bad in _REFUSED):
        return None
    return codec


def _try(data: bytes, codec: str) -> str | None:
    try:
        if codec == "x-iso2022-jp-ms":
            return _iso2022jp_as_cp932(data)
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


_JIS_ESCAPE = re.compile(rb"\x1b(\$[@B]|\([BJI])")


def _iso2022jp_as_cp932(data: bytes) -> str:
    """ISO-2022-JP as Microsoft writes it (CP50220): JIS X 0208 plus the NEC and IBM rows
    (circled digits, roman numerals) that Python's iso2022 codecs reject. Each JIS pair is
    moved to its Shift_JIS position and the whole decoded as CP932."""
    out = bytearray()
    mode = b"(B"
    pos = 0
    for match in _JIS_ESCAPE.finditer(data + b"\x1b(B"):
        chunk = data[pos : match.start()]
        if mode.startswith(b"$"):
            out += _jis_to_sjis(chunk)
        elif mode == b"(I":
            out += bytes(b | 0x80 for b in chunk)  # half-width katakana
        else:
            out += chunk
        mode, pos = match.group(1), match.end()
    return out.decode("cp932")


def _jis_to_sjis(chunk: bytes) -> bytes:
    out = bytearray()
    if len(chunk) % 2:
        raise UnicodeDecodeError("iso2022_jp", chunk, 0, len(chunk), "odd number of bytes in JIS X 0208 mode")
    for j1, j2 in zip(chunk[0::2], chunk[1::2], strict=True):
        if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
            raise UnicodeDecodeError("iso2022_jp", chunk, 0, len(chunk), "not a JIS pair")
        s1 = ((j1 - 0x21) >> 1) + 0x81
        s1 += 0x40 if s1 > 0x9F else 0
        s2 = j2 + (0x1F + (j2 >= 0x60) if j1 & 1 else 0x7E)
        out += bytes((s1, s2))
    return bytes(out)


def _looks_utf8(data: bytes) -> str | None:
    """The text when ``data`` is valid UTF-8 that uses multi-byte sequences."""
    text = _try(data, "utf-8")
    if text is not None and not text.isascii():
        return text
    return None


def _cp1252_for_bad_bytes(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a byte that is not UTF-8 is read as windows-1252 (mixed text
    from a mail that was edited with two encodings)."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start : error.end]
    return bad.decode("cp1252", "replace").replace("\ufffd", "") or "\ufffd", error.end


# A uniquely named handler; registering it changes nothing for other code.
codecs.register_error("ticketd-cp1252-fallback", _cp1252_for_bad_bytes)


def _mostly_utf8(data: bytes) -> str | None:
    """UTF-8 with its stray bytes read as windows-1252, when most non-ASCII is valid UTF-8."""
    strict = data.decode("utf-8", "replace")
    bad = strict.count("\ufffd")
    valid = len(strict) - len(strict.encode("ascii", "ignore")) - bad  # non-ASCII characters that decoded
    # Latin-1 text read as UTF-8 has next to no valid multi-byte sequences; real UTF-8 with
    # a few broken bytes has at least as many valid ones as broken ones.
    if valid and valid >= bad:
        return data.decode("utf-8", "ticketd-cp1252-fallback")
    return None


def message_hints(labels: list[str]) -> Hints:
    """Codecs declared somewhere in a message, to guess its unlabelled 8-bit text with:
    multi-byte ones first, since they reject foreign bytes where single-byte ones never do."""
    codecs_ = [codec for codec in dict.fromkeys(codec_for(label) for label in dict.fromkeys(labels)) if codec]
    return tuple(sorted(codecs_, key=lambda codec: codec.startswith(_SINGLE_BYTE_PREFIXES)))


def _guess(data: bytes, hints: Hints) -> str:
    """Undeclared 8-bit bytes: UTF-8, then the message's own charsets, then windows-1252."""
    text = _try(data, "utf-8")
    if text is not None:
        return text
    for hint in hints:
        text = _decode_declared(data, hint)
        if text is not None:
            return text
    return _mostly_utf8(data) or _try(data, "cp1252") or data.decode("latin-1")


def _decode_declared(data: bytes, codec: str) -> str | None:
    """Strict decode with the declared codec or the supersets it is known to stand for."""
    candidates = _SUPERSETS.get(codec, (codec,))
    if codec.startswith("iso2022_jp") and not data.isascii():
        # ISO-2022-JP is 7-bit; 8-bit bytes under that label are Shift_JIS (or EUC-JP).
        candidates = ("cp932", "euc_jp")
    for candidate in candidates:
        text = _try(data, candidate)
        if text is not None:
            return text
    return None


def decode_text(data: bytes, label: str | None, hints: Hints = ()) -> Decoded:
    """Decode ``data`` labelled ``label``; ``hints`` (from message_hints) guess unlabelled text."""
    codec = codec_for(label)
    if data.isascii() and not (codec and codec.startswith(_NOT_ASCII_COMPATIBLE)):
        return Decoded(data.decode("ascii"))
    if codec is None:
        what = f"unknown charset {label!r}" if label and label.strip() else "undeclared 8-bit text"
        return Decoded(_guess(data, hints), f"{what}: guessed")
    if codec.startswith(_SINGLE_BYTE_PREFIXES) and (text := _looks_utf8(data)) is not None:
        return Decoded(text, f"charset {label} declared but text is UTF-8")
    sibling = _WINDOWS_SIBLING.get(codec)
    if sibling and _C1.search(data):
        text = _try(data, sibling)
        if text is not None:
            return Decoded(text, "" if codec == "iso8859-1" else f"charset {label} read as {sibling}")
    text = _decode_declared(data, codec)
    if text is not None:
        return Decoded(text)
    return Decoded(_fallback(data, codec), f"text not valid {label}: repaired")


def _fallback(data: bytes, codec: str) -> str:
    """Bytes that do not decode in their declared charset."""
    if codec == "utf-8":
        return _mostly_utf8(data) or _try(data, "cp1252") or data.decode("latin-1")
    text = _try(data, "utf-8") or _try(data, _WINDOWS_SIBLING.get(codec, ""))
    if text is not None:
        return text
    return data.decode(_SUPERSETS.get(codec, (codec,))[0], "replace")
