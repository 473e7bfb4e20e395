"""Satisfaction by mail: the rating in a customer's answer to the survey (1-5, or its words)."""

from __future__ import annotations

import re

# The words the survey template offers, beside the digits (templates/survey.txt.j2).
WORDS = {"excellent": 5, "great": 5, "good": 4, "okay": 3, "ok": 3, "average": 3, "poor": 2, "bad": 1,
         "terrible": 1, "awful": 1}
_DIGIT = re.compile(r"^(?:rating\s*[:=]?\s*)?([1-5])(?:\s*(?:/\s*5|out of 5|stars?|\*+))?\s*[.!]*\s*(.*)$", re.I)
LOW = 2  # this rating or lower alerts the queue's lead


def rating(new_text: str, words: dict[str, int] | None = None) -> int | None:
    """The rating the first line of ``new_text`` gives, or None if it gives none.

    Only the first non-empty line counts, and it must be the rating itself ("5", "4/5",
    "Rating: 3", "Excellent"), possibly followed by a comment: "5 - great service". A number
    inside a sentence ("I waited 3 days") is no rating.
    """
    table = WORDS if words is None else words
    first = next((line.strip() for line in new_text.splitlines() if line.strip()), "")[:200]
    if match := _DIGIT.match(first):
        rest = match.group(2)
        if not rest or rest[0] in "-–—:,(" or rest.lower().split()[0] in table:
            return int(match.group(1))
        return None
    head = re.split(r"[\s.,!:;\-–—]+", first.lower(), maxsplit=1)[0]
    return table.get(head)
