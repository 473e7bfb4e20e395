"""Date headers: an impossible date is no date (with a defect), never an unreadable message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ticketd.daemon.parsers import parse_message
from tests.parsers.conftest import build


def _date(value: str) -> tuple[datetime | None, tuple[str, ...]]:
    parsed = parse_message(build(f"From: a@example.com\nDate: {value}\n\nx\n"))
    return parsed.date, parsed.defects


@pytest.mark.parametrize(
    "value",
    [
        "Tue, 30 Nov 1999 23:56:33 -3000",  # a zone of 30 hours: datetime refuses it
        "Sat, 1 Jan 2000 00:00:00 +2400",
        "Fri, 31 Dec 9999 23:59:59 -1200",  # overflows on conversion to UTC (the INSERT)
        "Mon, 1 Jan 0 00:00:00 +0000",  # the stdlib made it 2000
        "Mon, 1 Jan 1 00:00:00 +0000",  # ... and 2001
        "Mon, 1 Jan 0001 00:00:00 +0100",
        "Thu, 1 Jan 1903 00:00:00 +0000",  # before mail: a broken clock
        "Sat, 1 Jan 9999 00:00:00 +0000",
    ],
)
def test_impossible_date_is_no_date_with_a_defect(value: str) -> None:
    date, defects = _date(value)
    assert date is None
    assert any(defect.startswith("date:") for defect in defects), defects


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 30 Nov 1999 23:56:33 -0300", datetime(1999, 11, 30, 23, 56, 33, tzinfo=timezone(timedelta(hours=-3)))),
        ("Tue, 30 Nov 99 23:56:33 +0000", datetime(1999, 11, 30, 23, 56, 33, tzinfo=UTC)),  # RFC 5322 4.3
        ("Thu, 1 Jan 04 10:00:00 +0000", datetime(2004, 1, 1, 10, tzinfo=UTC)),
        ("Fri, 31 Dec 9998 11:59:59 +0000", datetime(9998, 12, 31, 11, 59, 59, tzinfo=UTC)),
        ("Thu, 1 Jan 1970 00:00:00 +0000", datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_possible_dates_are_kept(value: str, expected: datetime) -> None:
    date, _ = _date(value)
    assert date == expected and date.utcoffset() == expected.utcoffset()
    assert date is not None and date.astimezone(UTC)  # storable


def test_three_digit_year_is_1900_based() -> None:
    # RFC 5322 4.3: a three-digit year is added to 1900 (Y2K-era clients wrote 103 for 2003).
    date, _ = _date("1 Jan 103 10:00:00 +0000")
    assert date is not None and date.year == 2003
