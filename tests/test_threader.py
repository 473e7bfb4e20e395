"""Pure parts of threading: subject tags, referenced ids, whose address counts."""

from __future__ import annotations

from ticketd.daemon.threader import referenced_ids, sender_addresses, subject_tags
from tests.support.mail import parsed


def test_subject_tags_are_found_in_order() -> None:
    assert subject_tags("Re: printer [#12] and [#7]") == [12, 7]
    assert subject_tags("no tag here #12 [12]") == []


def test_in_reply_to_comes_before_references_nearest_first() -> None:
    msg = parsed("""
        From: a@example.org
        Subject: Re: x
        Message-ID: <me@x>
        In-Reply-To: <parent@x>
        References: <root@x> <middle@x> <parent@x>

        text
    """)
    assert referenced_ids(msg) == ["<parent@x>", "<middle@x>", "<root@x>"]


def test_only_the_from_address_counts_for_subject_tag_threading() -> None:
    msg = parsed("""
        From: Mallory <mallory@evil.example>
        Reply-To: customer@example.org
        Subject: Re: [#1]

        text
    """)
    assert sender_addresses(msg) == {"mallory@evil.example"}
