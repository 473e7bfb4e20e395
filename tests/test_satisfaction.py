"""Reading a rating out of a customer's answer to the survey."""

from __future__ import annotations

import pytest

from ticketd.daemon.satisfaction import rating


@pytest.mark.parametrize("text, expected", [
    ("5", 5), ("  4/5\n\nOn Mon, Support wrote:\n> How did we do?", 4), ("Rating: 3", 3), ("2 stars", 2),
    ("1 - slow answers", 1), ("5!", 5), ("Excellent, thanks", 5), ("poor.", 2), ("OK", 3),
    ("4 out of 5", 4), ("5 great service", 5),
])
def test_ratings(text: str, expected: int) -> None:
    assert rating(text) == expected


@pytest.mark.parametrize("text", ["", "I waited 3 days", "6", "0", "10/10", "Thanks!", "12345", "3 days later"])
def test_no_rating(text: str) -> None:
    assert rating(text) is None


def test_the_template_may_offer_its_own_words() -> None:
    assert rating("Sehr gut", {"sehr": 5}) == 5 and rating("Excellent", {"sehr": 5}) is None
