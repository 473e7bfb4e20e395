"""Address headers: an address is a well-formed addr-spec or nothing; the requester falls back."""

from __future__ import annotations

import pytest

from ticketd.daemon.parsers import Address, parse_message
from ticketd.daemon.parsers.headers import drop_trailing_junk
from tests.parsers.conftest import build


@pytest.mark.parametrize(
    "header",
    [
        "=?utf-8?q?victim=3A?= <real@example.com>",
        "=?utf-8?q?victim=3A_victim4=40evil.test=0d=0ax-injected?= <real@example.com>",
        "=?utf-8?q?=5Fvictim4=40evil.test=0d=0ax-injected?= <real@example.com>",
        "=?utf-8?q?a=3Cb=40c=3E?= <real@example.com>",
        "=?utf-8?b?dmljdGltOiA8eEB5LnRlc3Q+DQo=?= <real@example.com>",  # "victim: <x@y.test>\r\n"
        "=?utf-8?q?victim=3A?=<real@example.com>",
    ],
)
def test_a_decoded_display_name_never_becomes_the_address(header: str) -> None:
    parsed = parse_message(build(f"From: {header}\n\nx\n"))
    assert parsed.from_ is not None and parsed.from_.email == "real@example.com"
    assert "\r" not in parsed.from_.name and "\n" not in parsed.from_.name


@pytest.mark.parametrize(
    "header",
    [
        "=?utf-8?q?victim=3A_victim4@evil.test=0d=0ax-injected?=",
        "=?utf-8?q?victim=3A?=_victim4@evil.test=0d=0ax-injected",
        '=?utf-8?q?victim=3A?= x@y.test <>',
        '"我" <>',
    ],
)
def test_junk_that_looks_like_an_address_is_no_address(header: str) -> None:
    parsed = parse_message(build(f"From: {header}\n\nx\n"))
    assert parsed.from_ is None or parsed.from_.email == ""
    assert parsed.requester is None


def test_junk_after_an_angle_address_is_dropped_not_mined() -> None:
    parsed = parse_message(build("From: a@example.com\nReply-To: <a@b.test> NOTIFY=SUCCESS ORCPT=rfc822;x@y.test\n\nx\n"))
    assert parsed.reply_to == (Address("", "a@b.test"),)
    assert any("text after an address dropped" in defect for defect in parsed.defects)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<a@b> NOTIFY=X;c@d, e@f", "<a@b>, e@f"),
        ("<a@b> <c@d>", "<a@b> "),
        ('<a@b> "x, y@z"', "<a@b> "),
        ("<a@b> (a comment), <c@d>", "<a@b> (a comment), <c@d>"),
        ("Team: <a@b>, <c@d>;, e@f", "Team: <a@b>, <c@d>;, e@f"),
        ("<a@b>; c@d", "<a@b>; c@d"),  # Outlook's separator, not junk
    ],
)
def test_drop_trailing_junk(text: str, expected: str) -> None:
    assert drop_trailing_junk(text)[0] == expected


def test_requester_is_from_then_reply_to_then_sender() -> None:
    def requester(headers: str) -> str:
        found = parse_message(build(f"{headers}\n\nx\n")).requester
        return found.email if found else ""

    assert requester("From: f@example.com\nReply-To: r@example.com\nSender: s@example.com") == "f@example.com"
    assert requester('From: "我" <>\nReply-To: r@example.com\nSender: s@example.com') == "r@example.com"
    assert requester("Sender: s@example.com") == "s@example.com"
    assert requester("From: MAILER-DAEMON\nSender: s@example.com") == "s@example.com"
    assert requester("Subject: nobody") == ""


def test_from_is_the_author_only_and_sender_is_its_own_field() -> None:
    parsed = parse_message(build('From: "我" <>\nSender: Relay <s@example.com>\n\nx\n'))
    assert parsed.from_ == Address("我", "")
    assert parsed.sender == Address("Relay", "s@example.com")
    assert parsed.answer_to == Address("Relay", "s@example.com")


def test_address_with_a_line_break_or_space_is_refused() -> None:
    parsed = parse_message(build('From: a@example.com\nTo: "a b"@example.com, <c@exa mple.com>, ok@example.com\n\nx\n'))
    assert [a.email for a in parsed.to] == ["ok@example.com"]
