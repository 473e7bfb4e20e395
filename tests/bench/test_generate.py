"""Tests for the seeded support-mail generator in bench/generate.py."""

from __future__ import annotations

import email
import inspect
import re
import tracemalloc
from collections import Counter
from email import policy
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime

import pytest

from bench.generate import KIND_WEIGHTS, KINDS, GeneratedMessage, generate
from bench.oddities import VARIANTS

KIB = 1024
_BARE_LF = re.compile(rb"(?<!\r)\n")
_BARE_CR = re.compile(rb"\r(?!\n)")


@pytest.fixture(scope="module")
def mix() -> list[GeneratedMessage]:
    return list(generate(1000, seed=1))


@pytest.fixture(scope="module")
def parsed(mix: list[GeneratedMessage]) -> list[tuple[GeneratedMessage, EmailMessage]]:
    return [(message, _parse(message.raw)) for message in mix]


def _parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _attachment_bytes(message: EmailMessage) -> int:
    return sum(len(part.get_payload(decode=True) or b"")
               for part in message.walk() if part.get_content_disposition() == "attachment")


def test_same_seed_same_messages() -> None:
    assert list(generate(60, seed=7)) == list(generate(60, seed=7))


def test_other_seed_other_messages() -> None:
    assert [m.raw for m in generate(20, seed=1)] != [m.raw for m in generate(20, seed=2)]


def test_shorter_run_is_a_prefix() -> None:
    assert list(generate(40, seed=3)) == list(generate(80, seed=3))[:40]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_200_messages_hold_every_kind_and_odd_variant(seed: int) -> None:
    messages = list(generate(200, seed=seed))
    assert set(KINDS) == {m.kind for m in messages}
    assert set(VARIANTS) == {m.variant for m in messages if m.kind == "odd-mime"}


def test_kind_shares_follow_the_weights(mix: list[GeneratedMessage]) -> None:
    counts = Counter(m.kind for m in mix)
    for kind, weight in KIND_WEIGHTS.items():
        # Exact per block of 100, except that a reply with nothing to answer becomes plain.
        assert abs(counts[kind] - weight * 10) <= 5, kind


def test_charsets_cover_the_legacy_ones(mix: list[GeneratedMessage]) -> None:
    charsets = {m.variant for m in mix if m.kind == "charset"}
    assert {"iso-8859-1", "windows-1252", "koi8-r", "iso-2022-jp", "gb2312", "gb18030",
            "utf-8"} == charsets


def test_replies_thread_to_an_earlier_message_of_the_same_sender(
    parsed: list[tuple[GeneratedMessage, EmailMessage]],
) -> None:
    seen: dict[str, GeneratedMessage] = {}
    for message, headers in parsed:
        if message.is_reply:
            parent = seen[str(headers["In-Reply-To"]).strip()]
            assert (parent.thread, parent.sender) == (message.thread, message.sender)
            assert parent.message_id in str(headers["References"]).split()
            assert str(headers["Subject"]).startswith("Re: ")
            assert message.kind == "reply"
        if message.message_id:
            seen[message.message_id] = message


def test_a_thread_is_opened_by_its_first_message(mix: list[GeneratedMessage]) -> None:
    opened: set[int] = set()
    for message in mix:
        assert message.is_reply == (message.thread in opened)
        opened.add(message.thread)
    assert max(opened) == len(opened) == sum(not m.is_reply for m in mix)


def test_every_message_parses_and_reads(
    parsed: list[tuple[GeneratedMessage, EmailMessage]],
) -> None:
    for message, tree in parsed:  # parsed by the fixture without raising
        for _, value in tree.items():
            str(value)
        for part in tree.walk():
            part.get_payload(decode=True)
        assert tree["From"] and tree["Subject"] and tree["Date"], message.kind


def test_fields_match_the_headers(parsed: list[tuple[GeneratedMessage, EmailMessage]]) -> None:
    for message, headers in parsed:
        assert parseaddr(str(headers["From"]))[1] == message.sender
        assert str(headers.get("Message-ID", "")).strip() == message.message_id
        assert (message.message_id == "") == (message.variant == "no-message-id")


def test_dates_increase(parsed: list[tuple[GeneratedMessage, EmailMessage]]) -> None:
    dates = [parsedate_to_datetime(str(headers["Date"])) for _, headers in parsed]
    assert all(a < b for a, b in zip(dates, dates[1:]))


def test_crlf_line_endings_only(mix: list[GeneratedMessage]) -> None:
    for message in mix:
        assert not _BARE_LF.search(message.raw), message.kind
        assert not _BARE_CR.search(message.raw), message.kind


def test_small_kinds_stay_small(mix: list[GeneratedMessage]) -> None:
    small = [m for m in mix if "attachment" not in m.kind]
    assert all(len(m.raw) < 16 * KIB for m in small)
    assert sorted(len(m.raw) for m in small)[len(small) // 2] < 6 * KIB


def test_attachment_sizes(parsed: list[tuple[GeneratedMessage, EmailMessage]]) -> None:
    for message, tree in parsed:
        size = _attachment_bytes(tree)
        if message.kind == "attachment":
            assert 5 * KIB <= size <= 50 * KIB
        elif message.kind == "big-attachment":
            assert 100 * KIB <= size <= 1024 * KIB
        elif message.kind != "odd-mime":
            assert size == 0


def test_non_ascii_filenames_are_encoded(
    parsed: list[tuple[GeneratedMessage, EmailMessage]],
) -> None:
    names = [part.get_filename() or ""
             for m, tree in parsed if "attachment" in m.kind for part in tree.walk()]
    assert any(not name.isascii() for name in names)
    assert any(b"filename*=utf-8''" in m.raw for m, _ in parsed)
    assert any(b"filename*0*=utf-8''" in m.raw for m, _ in parsed)


def test_it_is_a_generator() -> None:
    assert inspect.isgenerator(generate(3))


def test_memory_stays_flat_over_2000_messages() -> None:
    total = 0
    tracemalloc.start()
    try:
        for message in generate(2000, seed=5):
            total += len(message.raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 20 * 1024 * KIB  # the run produced a lot ...
    assert peak < 16 * 1024 * KIB  # ... but held only a little of it at a time
