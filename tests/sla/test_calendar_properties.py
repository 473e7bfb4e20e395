"""Properties of business-time arithmetic: adding and measuring agree, around weekends, holidays and DST.

Calendars are drawn in three zones whose clocks change on different days (Berlin and New York in
the north, Sydney in the south), with split hours, night shifts, hours inside the skipped or
repeated hour, own holidays and public ones; instants are drawn mostly within days of a DST
change of 2026 or 2027. Every opening hour and UTC offset here is a whole minute, so "open at a
minute" can be told by measuring that minute.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from ticketd.daemon.sla.calendar import (ALWAYS_OPEN, WEEKDAYS, Calendar, add_business, add_business_days,
                                 business_between, day_spans, is_open, next_open, parse_hours)

ZERO = timedelta(0)
MINUTE = timedelta(minutes=1)
TICK = timedelta(microseconds=1)  # the smallest step of a datetime
BERLIN, NEW_YORK, SYDNEY = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo("Australia/Sydney")
COUNTRY = {BERLIN: "DE", NEW_YORK: "US", SYDNEY: "AU"}

# The local dates the clocks change (2026, 2027): Berlin last Sundays of March and October,
# New York second Sunday of March and first of November, Sydney first Sundays of April and October.
CHANGES = {
    BERLIN: (date(2026, 3, 29), date(2026, 10, 25), date(2027, 3, 28), date(2027, 10, 31)),
    NEW_YORK: (date(2026, 3, 8), date(2026, 11, 1), date(2027, 3, 14), date(2027, 11, 7)),
    SYDNEY: (date(2026, 4, 5), date(2026, 10, 4), date(2027, 4, 4), date(2027, 10, 3)),
}
# Each change at 02:00 local time (03:00 for Sydney's autumn), as UTC anchors to draw around;
# Christmas too, where holidays pile up.
ANCHORS = sorted({datetime.combine(day, datetime.min.time().replace(hour=2), tzinfo=zone).astimezone(UTC)
                  for zone, days in CHANGES.items() for day in days}
                 | {datetime(2026, 12, 24, 12, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)})
ANCHOR_DAYS = sorted({day for days in CHANGES.values() for day in days} | {date(2026, 12, 24)})

HOURS = ("closed", "09:00-18:00", "09:00-12:00,13:00-18:00", "00:00-24:00", "01:00-04:00", "02:30-04:00",
         "01:30-02:15,02:45-03:30", "18:00-24:00", "00:00-06:00", "08:00-12:00,12:00-16:00", "10:00-16:00",
         "02:00-03:00", "00:00-02:00,03:00-24:00")
OFFICE_WEEK = {day: "09:00-12:00,13:00-18:00" for day in WEEKDAYS[:5]}


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    """A zone, a week of drawn hours (often an office week with lunch), some holidays near the anchors."""
    zone = draw(st.sampled_from(sorted(CHANGES, key=str)))
    if draw(st.booleans()):
        week = OFFICE_WEEK | {day: draw(st.sampled_from(HOURS)) for day in WEEKDAYS[5:]}
    else:
        week = {day: draw(st.sampled_from(HOURS)) for day in WEEKDAYS}
    hours = {WEEKDAYS.index(day): parse_hours(text) for day, text in week.items()}
    if not any(hours.values()):
        hours[0] = parse_hours("09:00-18:00")
    holidays = draw(st.frozensets(st.builds(lambda day, n: day + timedelta(days=n), st.sampled_from(ANCHOR_DAYS),
                                            st.integers(-6, 6)), max_size=5))
    country = COUNTRY[zone] if draw(st.integers(0, 3)) == 0 else None
    return Calendar(zone, hours, holidays=holidays, country=country)


def _near(anchor: datetime, minutes: int, seconds: int) -> datetime:
    return anchor + timedelta(minutes=minutes, seconds=seconds)


# Minute-aligned instants within ten days of an anchor; now and then one off the minute.
minute_instants = st.builds(_near, st.sampled_from(ANCHORS), st.integers(-10 * 1440, 10 * 1440), st.just(0))
instants = st.one_of(minute_instants,
                     st.builds(_near, st.sampled_from(ANCHORS), st.integers(-10 * 1440, 10 * 1440),
                               st.integers(1, 59)))
# Whole minutes, mostly within a few business days, up to ~30 business days of 8 hours.
durations = st.one_of(st.integers(0, 3 * 8 * 60), st.integers(0, 30 * 8 * 60)).map(lambda n: n * MINUTE)
zones = st.sampled_from((UTC, BERLIN, NEW_YORK, SYDNEY))

PROPERTY = settings(max_examples=120, deadline=None)


@PROPERTY
@given(calendars(), instants, durations)
def test_measuring_what_was_added_gives_it_back(cal: Calendar, start: datetime, duration: timedelta) -> None:
    end = add_business(cal, start, duration)
    assert end.tzinfo is UTC
    assert end >= start
    assert business_between(cal, start, end) == duration


@PROPERTY
@given(calendars(), instants, durations.filter(bool))
def test_the_sum_is_reached_at_the_earliest_instant(cal: Calendar, start: datetime, duration: timedelta) -> None:
    # Earliest: a tick before, one tick of business time is still missing, so that tick is open
    # and the result is a closing time rather than the next opening when the budget ends there.
    end = add_business(cal, start, duration)
    assert end > start
    assert business_between(cal, start, end - TICK) == duration - TICK
    assert is_open(cal, end - TICK)


@PROPERTY
@given(calendars(), instants)
def test_adding_nothing_is_the_start_open_or_closed(cal: Calendar, start: datetime) -> None:
    assert add_business(cal, start, ZERO) == start


@PROPERTY
@given(calendars(), instants, durations, durations)
def test_adding_is_monotonic_and_adds_up(cal: Calendar, start: datetime, d1: timedelta, d2: timedelta) -> None:
    first, both = add_business(cal, start, d1), add_business(cal, start, d1 + d2)
    assert first <= both
    assert (first < both) == bool(d2)  # strictly: more business time ends later
    assert add_business(cal, first, d2) == both


@PROPERTY
@given(calendars(), instants, instants, instants)
def test_measuring_is_additive(cal: Calendar, x: datetime, y: datetime, z: datetime) -> None:
    a, b, c = sorted((x, y, z))
    assert business_between(cal, a, b) + business_between(cal, b, c) == business_between(cal, a, c)


@PROPERTY
@given(calendars(), instants, instants)
def test_measured_time_is_at_most_the_time_between_and_zero_exactly_when_closed(
        cal: Calendar, x: datetime, y: datetime) -> None:
    a, b = sorted((x, y))
    between = business_between(cal, a, b)
    assert ZERO <= between <= b - a
    assert business_between(cal, b, a) == ZERO or a == b
    if a < b:
        assert (between == ZERO) == (next_open(cal, a) >= b)  # nothing opens before b


@PROPERTY
@given(calendars(), minute_instants)
def test_open_at_a_minute_exactly_when_that_minute_counts(cal: Calendar, t: datetime) -> None:
    # Opening hours are [open, close): open at the opening minute, closed at the closing one.
    assert is_open(cal, t) == (business_between(cal, t, t + MINUTE) > ZERO)
    assert is_open(cal, t) == (business_between(cal, t, t + MINUTE) == MINUTE)


@PROPERTY
@given(calendars(), instants)
def test_next_open_is_open_and_nothing_opens_before_it(cal: Calendar, t: datetime) -> None:
    opens = next_open(cal, t)
    assert opens.tzinfo is UTC
    assert opens >= t
    assert is_open(cal, opens)
    assert business_between(cal, t, opens) == ZERO
    assert (opens == t) == is_open(cal, t)


@PROPERTY
@given(calendars(), instants, st.integers(0, 25))
def test_business_days_land_on_open_days_in_order(cal: Calendar, start: datetime, days: int) -> None:
    at = add_business_days(cal, start, days)
    later = add_business_days(cal, start, days + 1)
    assert at.tzinfo is UTC and at >= next_open(cal, start)
    assert at < later
    local = at.astimezone(cal.timezone).date()
    # Within the open day it lands on, or at the 24:00 closing of the day before (a short day's end).
    days_spans = (day_spans(cal, local), day_spans(cal, local - timedelta(days=1)))
    assert any(spans and spans[0][0] <= at <= spans[-1][1] for spans in days_spans)


@PROPERTY
@given(instants, durations, instants, zones)
def test_24x7_is_plain_arithmetic(start: datetime, duration: timedelta, other: datetime, zone: object) -> None:
    local = start.astimezone(zone)  # type: ignore[arg-type]
    assert add_business(ALWAYS_OPEN, local, duration) == start + duration
    assert add_business(ALWAYS_OPEN, local, duration).tzinfo is UTC
    assert business_between(ALWAYS_OPEN, local, other) == max(other - start, ZERO)
    assert next_open(ALWAYS_OPEN, local) == start and is_open(ALWAYS_OPEN, local)


@PROPERTY
@given(st.sampled_from(sorted(CHANGES, key=str)), instants, durations, instants)
def test_open_around_the_clock_in_a_dst_zone_is_plain_arithmetic(
        zone: ZoneInfo, start: datetime, duration: timedelta, other: datetime) -> None:
    # 00:00-24:00 every day: a 23- or 25-hour day counts what really elapsed, as 24x7 does.
    cal = Calendar(zone, {day: parse_hours("00:00-24:00") for day in range(7)})
    assert add_business(cal, start, duration) == start + duration
    assert business_between(cal, start, other) == max(other - start, ZERO)


@PROPERTY
@given(calendars(), instants, durations, instants, zones)
def test_the_zone_of_an_input_changes_nothing(cal: Calendar, start: datetime, duration: timedelta,
                                              other: datetime, zone: object) -> None:
    local, other_local = start.astimezone(zone), other.astimezone(zone)  # type: ignore[arg-type]
    assert add_business(cal, local, duration) == add_business(cal, start, duration)
    assert business_between(cal, local, other_local) == business_between(cal, start, other)
    assert next_open(cal, local) == next_open(cal, start)
