"""Mail we write: reply subjects carry [#N] once, peer data never breaks a header."""

from __future__ import annotations

from email.parser import BytesHeaderParser

import pytest

from ticketd.daemon.outgoing import header_line, new_message_id, one_line, reply_subject


def test_reply_subject_adds_re_and_the_tag() -> None:
    assert reply_subject("Printer on fire", 42) == "Re: Printer on fire [#42]"


def test_reply_subject_does_not_pile_up_prefixes_or_tags() -> None:
    assert reply_subject("Re: Printer on fire [#42]", 42) == "Re: Printer on fire [#42]"
    assert reply_subject("AW: Drucker", 7) == "AW: Drucker [#7]"


def test_header_injection_through_the_subject_is_flattened() -> None:
    subject = reply_subject("hello\r\nBcc: victim@example.com", 1)
    assert "\r" not in subject and "\n" not in subject
    assert one_line("a\x00b\tc") == "a b c"


def test_an_empty_subject_gets_a_placeholder() -> None:
    assert reply_subject("", 3) == "Re: (no subject) [#3]"


def test_message_ids_are_unique_and_use_our_domain() -> None:
    first, second = new_message_id(5, "support@example.test"), new_message_id(5, "support@example.test")
    assert first != second
    assert first.startswith("<ticketd.5.") and first.endswith("@example.test>")


def test_another_tickets_tag_is_dropped_from_the_subject() -> None:
    assert reply_subject("Re: Account locked [#1]", 2) == "Re: Account locked [#2]"


@pytest.mark.parametrize("value", [
    "short", "<a@b> " * 30, "x" * 200, "Re: " + "word " * 40 + "[#12]", "a " + "y" * 100 + " b",
], ids=["short", "references", "one-long-word", "subject", "long-word-inside"])
def test_ascii_headers_fold_at_spaces_and_unfold_to_the_value(value: str) -> None:
    line = header_line("References", value)
    physical = line.decode("ascii").split("\r\n")[:-1]
    # Every physical line is short unless one word alone is longer; each continuation starts
    # with a space; unfolding gives the value back.
    assert all(len(p) <= 78 or len(p.split()) == (2 if i == 0 else 1) for i, p in enumerate(physical))
    assert all(p.startswith(" ") for p in physical[1:])
    parsed = BytesHeaderParser().parsebytes(line + b"\r\n")
    assert " ".join(str(parsed["References"]).split()) == one_line(value)
