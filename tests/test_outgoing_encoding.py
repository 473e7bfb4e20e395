"""Encoding mail we write: the shortcuts of daemon.outgoing give exactly the bytes of the plain way."""

from __future__ import annotations

import random
from email.header import Header
from email.utils import formataddr

import pytest

from ticketd.daemon.outgoing import address_header, header_line, one_line

# Runs of these make values of every kind: plain words, Latin letters with accents (Q is
# shorter), Cyrillic, CJK and emoji (base64 is), and what Q must escape.
ALPHABETS = ["abc def ghi", "äöüß", "éèàç", "привет мир", "日本語のテキスト", "中文", "😀🎉", "=?_ \t\"()<>@,;:",
             "x" * 30]
NAMES = ["Subject", "From", "To", "X-A-Header-Name-So-Long-That-The-First-Line-Has-Room-For-Almost-Nothing"]


def values(count: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    return ["".join(rnd.choice(rnd.choice(ALPHABETS)) for _ in range(rnd.randint(0, rnd.choice([5, 60, 200, 1500]))))
            for _ in range(count)]


@pytest.mark.parametrize("seed", range(4))
def test_a_non_ascii_header_line_is_the_standard_librarys(seed: int) -> None:
    rnd = random.Random(seed)
    for value in values(400, seed):
        name = rnd.choice(NAMES)
        expected = one_line(value, 2000)
        if expected.isascii():
            continue
        stock = Header(expected, "utf-8", header_name=name).encode(linesep="\r\n")
        assert header_line(name, value) == f"{name}: {stock}\r\n".encode("ascii"), value


@pytest.mark.parametrize("seed", range(3))
def test_a_display_name_is_written_as_formataddr_writes_it(seed: int) -> None:
    for value in values(400, seed + 10):
        stock = formataddr((one_line(value), "support@example.test"), charset="utf-8")
        assert address_header("From", value, "support@example.test") == f"From: {stock}\r\n".encode("ascii"), value


def folded_by_the_loop(name: str, value: str) -> bytes:
    """daemon.outgoing._folded as it was, before its shortcut for a value that fits one line."""
    line, lines = f"{name}:", []
    for word in value.split(" "):
        if len(line) + 1 + len(word) > 78 and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word
    return ("\r\n".join([*lines, line]) + "\r\n").encode("ascii")


@pytest.mark.parametrize("name", ["To", "Subject", "References", "X-Auto-Response-Suppress"])
def test_an_ascii_value_that_fits_one_line_is_not_folded_and_one_more_character_is(name: str) -> None:
    for size in range(50, 90):
        for value in ("x" * size, ("ab " * size)[:size].strip(), "a " + "y" * (size - 2)):
            assert header_line(name, value) == folded_by_the_loop(name, one_line(value, 2000)), (name, value)
    assert header_line(name, "") == f"{name}: \r\n".encode()


@pytest.mark.parametrize("text", ["Drucker kaputt – jä, seit Montag " * 3, "请求帮助：无法登录我的账户" * 3, "a😀" * 40],
                         ids=["q", "base64", "emoji"])
def test_a_value_that_grows_past_one_encoded_word_is_written_as_the_standard_library_does(text: str) -> None:
    """Up to the length where one encoded word no longer fits the first line, and past it."""
    for name in NAMES:
        for end in range(1, len(text) + 1):
            value = one_line(text[:end], 2000)
            if value.isascii():  # not encoded at all
                continue
            stock = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
            assert header_line(name, value) == f"{name}: {stock}\r\n".encode("ascii"), (name, value)
