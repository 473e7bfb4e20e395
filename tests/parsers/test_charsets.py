"""decode_text: bytes in a declared or guessed charset to text, never raising."""

from __future__ import annotations

import pytest

from ticketd.daemon.parsers.charsets import codec_for, decode_text, message_hints


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("ISO-8859-1", "iso8859-1"),
        ('"utf8"', "utf-8"),
        ("utf-8*en", "utf-8"),
        ("ks_c_5601-1987", "euc_kr"),
        ("x-unknown", None),
        ("", None),
        ("no-such-charset", None),
        ("unicode_escape", None),
        ("idna", None),
    ],
)
def test_labels_map_to_codecs_or_none(label: str, codec: str | None) -> None:
    assert codec_for(label) == codec


def test_declared_charset_is_used_without_a_defect() -> None:
    decoded = decode_text("Привет".encode("koi8-r"), "koi8-r")
    assert (decoded.text, decoded.defect) == ("Привет", "")


def test_utf8_under_a_latin1_label_is_utf8() -> None:
    decoded = decode_text("Grüße".encode(), "iso-8859-1")
    assert decoded.text == "Grüße"
    assert "UTF-8" in decoded.defect


def test_shift_jis_bytes_under_an_iso_2022_jp_label() -> None:
    assert decode_text("ツール".encode("cp932"), "iso-2022-jp").text == "ツール"


def test_utf16_is_not_mistaken_for_ascii() -> None:
    assert decode_text("Test".encode("utf-16-le"), "utf-16le").text == "Test"


def test_stray_bytes_in_utf8_are_read_as_windows_1252() -> None:
    assert decode_text("café naïve ".encode() + b"\x93quoted\x94", "utf-8").text == "café naïve “quoted”"


def test_undeclared_text_uses_the_messages_multibyte_charset() -> None:
    hints = message_hints(["iso-8859-1", "gb2312"])
    assert hints[0] == "gb2312"
    assert decode_text("转发".encode("gb2312"), None, hints).text == "转发"


def test_garbage_never_raises() -> None:
    for label in (None, "utf-8", "iso-2022-jp", "gb2312", "utf-16", "x-bogus"):
        assert isinstance(decode_text(bytes(range(256)) * 3, label).text, str)
