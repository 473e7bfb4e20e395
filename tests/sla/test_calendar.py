"""Business calendars: weekends, lunch breaks, 24:00, holidays (own and DE/BY public), DST in Europe/Berlin."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ticketd.daemon.sla.calendar import (ALWAYS_OPEN, MAX_CLOSED_DAYS, OFFICE, WEEKDAYS, Calendar, add_business,
                                 add_business_days, business_between, day_spans, is_holiday, is_open, next_open,
                                 parse_hours, weekly_hours)

BERLIN = ZoneInfo("Europe/Berlin")
H = timedelta(hours=1)
WEEK = weekly_hours({day: "09:00-18:00" for day in WEEKDAYS[:5]})  # Mon-Fri, no Saturday


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def office(**kwargs: object) -> Calendar:
    return Calendar(BERLIN, kwargs.pop("hours", WEEK), **kwargs)  # type: ignore[arg-type]


CHRISTMAS = frozenset({date(2026, 12, 24), date(2026, 12, 25), date(2026, 12, 26)})
ALL_DAY = weekly_hours({day: "00:00-24:00" for day in WEEKDAYS})


def test_friday_afternoon_plus_four_hours_is_monday_noon() -> None:
    assert add_business(office(), berlin(2026, 1, 9, 17), 4 * H) == berlin(2026, 1, 12, 12)


def test_friday_plus_four_hours_across_spring_forward_weekend() -> None:
    # 2026-03-29 is the last Sunday of March: Friday is CET (+1), Monday CEST (+2).
    due = add_business(office(), berlin(2026, 3, 27, 17), 4 * H)
    assert due == datetime(2026, 3, 30, 10, tzinfo=UTC)  # 12:00 CEST
    assert due.tzinfo is UTC


def test_friday_plus_four_hours_across_fall_back_weekend() -> None:
    due = add_business(office(), berlin(2026, 10, 23, 17), 4 * H)
    assert due == datetime(2026, 10, 26, 11, tzinfo=UTC)  # 12:00 CET


def test_weekend_is_closed() -> None:
    cal = office()
    assert business_between(cal, berlin(2026, 1, 9, 17), berlin(2026, 1, 12, 10)) == 2 * H
    assert not is_open(cal, berlin(2026, 1, 10, 12))
    assert next_open(cal, berlin(2026, 1, 10, 12)) == berlin(2026, 1, 12, 9)


def test_spring_forward_day_has_23_hours_and_fall_back_day_25() -> None:
    cal = Calendar(BERLIN, ALL_DAY)
    assert business_between(cal, berlin(2026, 3, 29), berlin(2026, 3, 30)) == 23 * H
    assert business_between(cal, berlin(2026, 10, 25), berlin(2026, 10, 26)) == 25 * H
    assert add_business(cal, berlin(2026, 3, 29), 23 * H) == berlin(2026, 3, 30)


def test_hours_inside_the_skipped_hour_do_not_crash() -> None:
    # 02:30 does not exist on 2026-03-29: read as zoneinfo does (fold=0), one hour on, 03:30 CEST.
    cal = office(hours=weekly_hours({"sun": "02:30-04:00"}))
    assert day_spans(cal, date(2026, 3, 29)) == [(datetime(2026, 3, 29, 1, 30, tzinfo=UTC),
                                                  datetime(2026, 3, 29, 2, tzinfo=UTC))]
    assert add_business(cal, berlin(2026, 3, 29), timedelta(minutes=15)) == berlin(2026, 3, 29, 3, 45)
    assert not is_open(cal, berlin(2026, 3, 29, 3, 15))
    # A week later, an ordinary Sunday: the full 90 minutes.
    assert business_between(cal, berlin(2026, 4, 5), berlin(2026, 4, 6)) == timedelta(minutes=90)


def test_repeated_hour_on_fall_back_day_counts_twice() -> None:
    # 02:30 happens twice on 2026-10-25; the interval starts at the first (CEST) and ends 04:00 CET.
    cal = office(hours=weekly_hours({"sun": "02:30-04:00"}))
    assert business_between(cal, berlin(2026, 10, 25), berlin(2026, 10, 26)) == timedelta(minutes=150)


def test_lunch_break_and_24_00() -> None:
    lunch = office(hours=weekly_hours({"mon": "09:00-12:00,13:00-18:00"}))
    assert add_business(lunch, berlin(2026, 1, 5, 11), 2 * H) == berlin(2026, 1, 5, 14)
    night = office(hours=weekly_hours({"mon": "18:00-24:00", "tue": "00:00-06:00"}))
    assert add_business(night, berlin(2026, 1, 5, 23), 2 * H) == berlin(2026, 1, 6, 1)
    assert is_open(night, berlin(2026, 1, 6, 0))


def test_exact_duration_ends_at_closing_time() -> None:
    assert add_business(office(), berlin(2026, 1, 9, 17), H) == berlin(2026, 1, 9, 18)
    assert not is_open(office(), berlin(2026, 1, 9, 18))
    assert is_open(office(), berlin(2026, 1, 9, 17, 59))
    assert next_open(office(), berlin(2026, 1, 9, 18)) == berlin(2026, 1, 12, 9)


def test_next_open_is_t_itself_when_open() -> None:
    t = berlin(2026, 1, 9, 10, 30)
    assert next_open(office(), t) == t


def test_own_holidays_and_bavarian_public_holidays() -> None:
    cal = office(hours=weekly_hours({day: "09:00-18:00" for day in WEEKDAYS[:5]} | {"sat": "10:00-16:00"}),
                 holidays=CHRISTMAS, country="DE", subdivision="BY")
    # Wed 23 Dec 17:00: Thu 24 (own), Fri 25, Sat 26 (public and own) closed, Sunday too.
    assert add_business(cal, berlin(2026, 12, 23, 17), 4 * H) == berlin(2026, 12, 28, 12)
    # Epiphany (Tue 2026-01-06) is a holiday in Bavaria, not in all of Germany.
    assert add_business(cal, berlin(2026, 1, 5, 17), 4 * H) == berlin(2026, 1, 7, 12)
    assert add_business(office(country="DE"), berlin(2026, 1, 5, 17), 4 * H) == berlin(2026, 1, 6, 12)


def test_public_holidays_of_a_far_future_year() -> None:
    cal = office(country="DE", subdivision="BY")
    assert is_holiday(cal, date(2090, 1, 6))  # a Friday
    assert next_open(cal, berlin(2090, 1, 6, 10)) == berlin(2090, 1, 9, 9)


def test_always_open_is_plain_addition_across_dst() -> None:
    assert add_business(ALWAYS_OPEN, berlin(2026, 3, 28, 12), 24 * H) == berlin(2026, 3, 29, 13)
    assert business_between(ALWAYS_OPEN, berlin(2026, 3, 29), berlin(2026, 3, 30)) == 23 * H
    assert is_open(ALWAYS_OPEN, berlin(2026, 1, 10, 3))


def test_many_weeks_step_by_day() -> None:
    # 50 days of 9 hours from Monday 09:00: ten weeks, ending at a Friday's closing.
    start = datetime(2026, 1, 5, 9, tzinfo=UTC)
    cal = Calendar(ZoneInfo("UTC"), WEEK)
    assert add_business(cal, start, 450 * H) == datetime(2026, 3, 13, 18, tzinfo=UTC)
    assert business_between(cal, start, datetime(2026, 3, 16, tzinfo=UTC)) == 450 * H
    # 8784 hours: 195 weeks of 45 (to Friday 2029-09-28), then one more Monday.
    assert add_business(cal, start, 366 * 24 * H) == datetime(2029, 10, 1, 18, tzinfo=UTC)


def test_default_office_has_saturday_hours_in_utc() -> None:
    assert add_business(OFFICE, datetime(2026, 1, 9, 17, tzinfo=UTC), 4 * H) == datetime(2026, 1, 10, 13, tzinfo=UTC)
    assert not is_open(OFFICE, datetime(2026, 1, 11, 12, tzinfo=UTC))


def test_business_between_empty_and_reversed() -> None:
    assert business_between(office(), berlin(2026, 1, 9, 12), berlin(2026, 1, 9, 12)) == timedelta(0)
    assert business_between(office(), berlin(2026, 1, 9, 12), berlin(2026, 1, 9, 10)) == timedelta(0)


def test_zero_duration_is_the_start() -> None:
    assert add_business(office(), berlin(2026, 1, 10, 12), timedelta(0)) == berlin(2026, 1, 10, 12)


def test_business_days_same_offset() -> None:
    cal = office(country="DE", subdivision="BY")
    assert add_business_days(cal, berlin(2026, 1, 7, 10), 5) == berlin(2026, 1, 14, 10)
    assert add_business_days(cal, berlin(2026, 1, 5, 10), 1) == berlin(2026, 1, 7, 10)  # over Epiphany
    # From closed time: counted from the next opening.
    assert add_business_days(cal, berlin(2026, 1, 10, 20), 1) == berlin(2026, 1, 13, 9)
    # A shorter day ends at its closing: Friday 17:00 is 8 hours in, Saturday has 6.
    saturday = office(hours=WEEK | weekly_hours({"sat": "10:00-16:00"}))
    assert add_business_days(saturday, berlin(2026, 1, 9, 17), 1) == berlin(2026, 1, 10, 16)
    assert add_business_days(ALWAYS_OPEN, berlin(2026, 3, 28, 12), 1) == berlin(2026, 3, 29, 13)


def test_lunch_break_not_counted_in_business_day_offset() -> None:
    cal = office(hours=weekly_hours({"mon": "09:00-12:00,13:00-18:00", "tue": "10:00-18:00"}))
    # Monday 14:00 is 4 business hours in; Tuesday opens at 10:00.
    assert add_business_days(cal, berlin(2026, 1, 5, 14), 1) == berlin(2026, 1, 6, 14)


def test_no_open_hours_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="open hours on at least one weekday"):
        Calendar(BERLIN, {})
    with pytest.raises(ValueError, match="open hours on at least one weekday"):
        Calendar(BERLIN, {0: ()})
    with pytest.raises(ValueError, match="weekday 7"):
        Calendar(BERLIN, {7: parse_hours("09:00-18:00")})


def test_closed_for_years_raises_instead_of_looping() -> None:
    start = date(2026, 1, 1)
    closed = frozenset(start + timedelta(days=n) for n in range(MAX_CLOSED_DAYS + 10))
    cal = office(holidays=closed)
    with pytest.raises(ValueError, match="no open time"):
        add_business(cal, berlin(2026, 1, 1), H)
    with pytest.raises(ValueError, match="no open day"):
        add_business_days(office(holidays=closed - {date(2026, 1, 2)}), berlin(2026, 1, 2, 10), 1)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        add_business(office(), datetime(2026, 1, 9, 17), H)


@pytest.mark.parametrize("text", ["9-18", "09:00", "18:00-09:00", "09:00-12:00,11:00-13:00", "25:00-26:00",
                                  "09:00-24:30", "09:60-10:00", "", "09:00-09:00"])
def test_bad_hours(text: str) -> None:
    with pytest.raises(ValueError):
        parse_hours(text)


def test_hours_parsed() -> None:
    assert parse_hours(" 09:00-12:00, 13:00-24:00 ") == parse_hours("09:00-12:00,13:00-24:00")
    assert [(f"{a:%H:%M}", f"{b:%H:%M}") for a, b in parse_hours("09:00-12:00,13:00-24:00")] == [
        ("09:00", "12:00"), ("13:00", "00:00")]
    assert parse_hours("closed") == ()


def test_business_days_from_after_a_lunch_break_keep_the_afternoon() -> None:
    # Found by a property test: 13:00 is as far into the day as 12:00, and was answered with it,
    # so 0 days from 13:00 came out an hour before the start.
    cal = office(hours=weekly_hours({day: "09:00-12:00,13:00-18:00" for day in WEEKDAYS[:5]}))
    assert add_business_days(cal, berlin(2026, 12, 24, 13), 0) == berlin(2026, 12, 24, 13)
    assert add_business_days(cal, berlin(2026, 12, 24, 13), 1) == berlin(2026, 12, 25, 13)
    assert add_business_days(cal, berlin(2026, 12, 24, 12, 30), 1) == berlin(2026, 12, 25, 13)
