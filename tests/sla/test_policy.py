"""Durations ("30m", "1h30m", "2d", "5bd", "none"), the priority defaults, and budgets on a calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ticketd.daemon.sla.calendar import OFFICE, WEEKDAYS, Calendar, weekly_hours
from ticketd.daemon.sla.policy import DEFAULT_POLICIES, BusinessDays, Policy, budget, format_duration, parse_duration

H = timedelta(hours=1)


@pytest.mark.parametrize(("text", "value"), [
    ("30m", timedelta(minutes=30)), ("4h", 4 * H), ("1h30m", timedelta(minutes=90)), ("2d", 48 * H),
    ("1d2h", 26 * H), ("0m", timedelta(0)), ("5bd", BusinessDays(5)), ("none", None), (" 4H ", 4 * H),
])
def test_durations(text: str, value: object) -> None:
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["", "4", "4 h", "h", "1m30h", "-4h", "1.5h", "5b", "bd", "4hours", "never"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match='like "30m"'):
        parse_duration(text)


@pytest.mark.parametrize("text", ["30m", "4h", "1h30m", "2d", "1d2h5m", "5bd", "none", "0m"])
def test_format_is_the_inverse(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


def test_priority_defaults_of_the_issue() -> None:
    assert DEFAULT_POLICIES == {
        "P1": Policy("24x7", 1 * H, 1 * H, 4 * H),
        "P2": Policy("office", 4 * H, 4 * H, 24 * H),
        "P3": Policy("office", 8 * H, 24 * H, 72 * H),
        "P4": Policy("office", 24 * H, None, BusinessDays(5)),
    }


def test_budget_of_a_duration_is_itself() -> None:
    assert budget(OFFICE, datetime(2026, 1, 5, 10, tzinfo=UTC), 4 * H) == 4 * H


def test_budget_of_business_days_is_the_time_to_that_moment() -> None:
    # Default office: Mon-Fri 9 h, Saturday 6 h. Tuesday 10:00 + 5 open days = Monday 10:00.
    start = datetime(2026, 1, 6, 10, tzinfo=UTC)
    assert budget(OFFICE, start, BusinessDays(5)) == 8 * H + 3 * 9 * H + 6 * H + 1 * H
    week = Calendar(ZoneInfo("UTC"), weekly_hours({day: "09:00-18:00" for day in WEEKDAYS[:5]}))
    assert budget(week, start, BusinessDays(5)) == 5 * 9 * H  # to the next Tuesday 10:00
