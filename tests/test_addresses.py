"""daemon.addresses: well-formed addr-specs, canonical forms, and recognising our own addresses."""

from __future__ import annotations

import string

import pytest

from ticketd.daemon.addresses import is_own, is_valid, local_part, normalize
from ticketd.daemon.filters.autoreply import automatic_reason
from ticketd.daemon.parsers import parse_message
from ticketd.daemon.responders.acknowledgement import reply_address
from tests.parsers.conftest import build

OWN = frozenset({"support@example.com", "help@example.org"})


@pytest.mark.parametrize(
    "address",
    [
        "support@example.com",
        '"support"@example.com',
        "SUPPORT@Example.COM",
        "support+anything@example.com",
        '"Support+x"@EXAMPLE.com',
        "support@example.com.",
        "support@[127.0.0.1]",
        "support@[IPv6:::1]",
        "help+tag@[IPv6:0:0:0:0:0:0:0:1]",
        "help@[10.1.2.3]",
    ],
)
def test_our_addresses_are_recognised_however_written(address: str) -> None:
    assert is_own(address, OWN)


@pytest.mark.parametrize(
    "address",
    ["customer@example.com", "support@example.net", "supporter@example.com", "other@[127.0.0.1]", "support", ""],
)
def test_other_addresses_are_not_ours(address: str) -> None:
    assert not is_own(address, OWN)


def test_normalize() -> None:
    assert normalize('"Sup\\port"@Example.COM') == "support@example.com"
    assert normalize("a@[IPv6:0:0::1]") == "a@[ipv6:::1]"
    assert normalize("a@Bücher.example") == "a@xn--bcher-kva.example"
    assert local_part("NoReply+123@example.com") == "noreply"


@pytest.mark.parametrize(
    "address",
    ["a@example.com", "a.b+c@sub.example.com", '"a.b"@example.com', "jürgen@münchen.de", "a@[127.0.0.1]", "a@localhost"],
)
def test_well_formed(address: str) -> None:
    assert is_valid(address)


@pytest.mark.parametrize(
    "address",
    [
        "_victim4@evil.test=0d=0ax-injected",
        "=?utf-8?q?victim=3A_x?=@example.com",  # RFC 2047 5(3): no encoded word in an addr-spec
        "a@b.test\r\nBcc: x@y",
        "a b@example.com",
        '"a b"@example.com',
        "a@example..com",
        ".a@example.com",
        "a@-example.com",
        "a@b\x00.com",
        "no-domain",
        "@example.com",
        "a" * 65 + "@example.com",
    ],
)
def test_malformed(address: str) -> None:
    assert not is_valid(address)


# The character sets of RFC 5322 3.2.3 (atext), 3.2.4 (qtext) and RFC 1035 2.3.1 (letters and
# digits); RFC 6532 adds every non-ASCII character to each of them.
ATEXT = set(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
QTEXT = {chr(c) for c in range(0x21, 0x7F)} - {'"', "\\"}
LET_DIG = set(string.ascii_letters + string.digits)
# All of the BMP's first block and the ASCII boundaries, then a sample of the rest of Unicode
# with the edges of the surrogates and of each plane.
CODE_POINTS = [*range(0x800), *range(0x800, 0x110000, 0x3FF),
               0xD7FF, 0xD800, 0xDFFF, 0xE000, 0xFFFF, 0x10000, 0x10FFFF]


def _in(chars: set[str], c: str) -> bool:
    return c.isprintable() and (c in chars or ord(c) >= 0x80)


def test_each_character_is_allowed_exactly_where_the_rfcs_allow_it() -> None:
    wrong = []
    for c in map(chr, CODE_POINTS):
        for address, expected in ((f"{c}@example.com", _in(ATEXT, c)),
                                  (f'"{c}"@example.com', _in(QTEXT, c)),
                                  (f"a@{c}.example", _in(LET_DIG, c)),
                                  # "." inside a label is a label boundary: "x.y" is two labels.
                                  (f"a@x{c}y.example", _in(LET_DIG | {"-", "."}, c))):
            if is_valid(address) != expected:
                wrong.append((address, expected))
    assert wrong == []


def _mail(headers: str) -> bytes:
    return build(f"{headers}\nSubject: hi\n\nx\n")


@pytest.mark.parametrize(
    "headers",
    [
        'From: "support"@example.com',
        "From: Support+loop@EXAMPLE.COM",
        "From: support@[127.0.0.1]",
        "From: Ann <ann@example.net>\nReply-To: support@[IPv6:::1]",  # the answer would come to us
        'From: "我" <>\nSender: help+x@example.org',
    ],
)
def test_autoreply_never_answers_our_own_addresses(headers: str) -> None:
    assert automatic_reason(parse_message(_mail(headers)), OWN).startswith("from our own address")


def test_autoreply_robot_local_part_is_normalized() -> None:
    assert automatic_reason(parse_message(_mail('From: "NoReply+42"@shop.example')), OWN).startswith("robot sender")
    assert automatic_reason(parse_message(_mail("From: Ann <ann@example.net>")), OWN) == ""


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ("From: ann@example.net\nReply-To: <r@example.net> NOTIFY=SUCCESS ORCPT=rfc822;x@y.test", "r@example.net"),
        ('From: "我" <>\nSender: s@example.net', "s@example.net"),
        ("From: ann@example.net\nReply-To: =?utf-8?q?x=3A?= <>", "ann@example.net"),
        ("From: =?utf-8?q?victim=3A_victim4@evil.test=0d=0ax-injected?=", ""),
    ],
)
def test_reply_address_takes_only_well_formed_addresses(headers: str, expected: str) -> None:
    assert reply_address(parse_message(_mail(headers))) == expected
