"""Mail we write: reply subjects carry [#N] once, peer data never breaks a header."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta, timezone
from email.parser import BytesHeaderParser
from email.utils import format_datetime

import pytest
from hypothesis import given, strategies as st

from ticketd.daemon.outgoing import date_value, header_line, new_message_id, one_line, reply_subject


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


def test_a_forked_child_writes_message_ids_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids must not repeat the parent's next ones
        os.write(write, " ".join(new_message_id(1, "s@example.test") for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = set(os.read(read, 4096).decode().split())
    os.close(read)
    parent = {new_message_id(1, "s@example.test") for _ in range(3)}
    assert len(child) == 3 and not child & parent


_COLLAPSE = re.compile(r"[\x00-\x1f\x7f]+")


@given(st.text(alphabet=st.sampled_from("ab \t\r\n\x00\x7f\u00a0\u2028\u3000\u00e9<>"), max_size=12))
def test_one_line_is_the_collapse_of_controls_and_white_space(value: str) -> None:
    # Its quick way for a clean line must give what the full collapse gives, for every input.
    assert one_line(value) == " ".join(_COLLAPSE.sub(" ", value).split())
    assert one_line(value, 3) == one_line(value)[:3]


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2999, 12, 31)))
def test_the_date_header_value_is_the_rfc_5322_form_in_utc(instant: datetime) -> None:
    utc = instant.replace(tzinfo=timezone.utc)
    assert date_value(utc) == format_datetime(utc)
    assert date_value(utc.astimezone(timezone(timedelta(hours=5, minutes=30)))) == format_datetime(utc)


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
