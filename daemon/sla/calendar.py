"""Business calendars: when a person will answer, and how much of their time lies between two moments.

A day's opening hours are read in the calendar's wall time and turned into UTC instants with
zoneinfo, so a day of 23 or 25 hours (daylight saving) counts what the clock on the office wall
shows. Every function steps day by day, never minute by minute, and gives up with a ValueError
after MAX_CLOSED_DAYS without an open minute: holidays may close a calendar for weeks, not forever.
All results are aware datetimes in UTC; inputs may be in any time zone but must be aware.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ZERO = timedelta(0)
ONE_DAY = timedelta(days=1)
MIDNIGHT = time(0)  # as the end of an interval: 24:00, the end of the day
MAX_CLOSED_DAYS = 3 * 366  # a calendar closed this long is a mistake, and a loop must end
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order
HOURS_EXPECTED = 'opening hours like "09:00-18:00" or "09:00-12:00,13:00-18:00" (24:00 as an end), or "closed"'
_INTERVAL = re.compile(r"(\d\d):(\d\d)-(\d\d):(\d\d)")

Interval = tuple[time, time]  # local [start, end); an end of 00:00 means 24:00
Span = tuple[datetime, datetime]  # UTC [start, end)


@dataclass(frozen=True)
class Calendar:
    """When a calendar's people work; ``always_open`` (24x7) makes business time plain time."""

    timezone: ZoneInfo
    hours: Mapping[int, Sequence[Interval]]  # weekday (0 = Monday) -> sorted local intervals
    holidays: frozenset[date] = frozenset()  # local days closed all day
    always_open: bool = False
    country: str | None = None  # public holidays from the `holidays` package, computed per year
    subdivision: str | None = None

    def __post_init__(self) -> None:
        for weekday, intervals in self.hours.items():
            if weekday not in range(7):
                raise ValueError(f"weekday {weekday!r} is not 0 (Monday) to 6 (Sunday)")
            check_intervals(intervals)
        # A calendar without a single open minute would make every due time loop for nothing.
        if not self.always_open and not any(self.hours.values()):
            raise ValueError("a calendar needs open hours on at least one weekday (or always_open)")


def parse_hours(text: str) -> tuple[Interval, ...]:
    """'09:00-12:00,13:00-18:00' -> local intervals; ValueError naming HOURS_EXPECTED."""
    if text.strip().lower() == "closed":
        return ()
    intervals = []
    for part in text.split(","):
        match = _INTERVAL.fullmatch(part.strip())
        if not match:
            raise ValueError(HOURS_EXPECTED)
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise ValueError(HOURS_EXPECTED)
        intervals.append((time(h1, m1), MIDNIGHT if h2 == 24 else time(h2, m2)))
    check_intervals(intervals)
    return tuple(intervals)


def check_intervals(intervals: Sequence[Interval]) -> None:
    """Each interval non-empty, and each after the one before: overlaps are typing mistakes."""
    previous = -1
    for start, end in intervals:
        a, b = _minutes(start), _minutes(end) or 24 * 60
        if a >= b:
            raise ValueError(f"{start:%H:%M}-{end:%H:%M} ends before it starts")
        if a < previous:
            raise ValueError(f"{start:%H:%M} is inside or before the interval before it")
        previous = b


def _minutes(at: time) -> int:
    return at.hour * 60 + at.minute


def is_holiday(cal: Calendar, day: date) -> bool:
    if day in cal.holidays:
        return True
    return cal.country is not None and day in public_holidays(cal.country, cal.subdivision, day.year)


@functools.lru_cache(maxsize=512)
def public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    """One year at a time, so a due date in 2090 works without computing the years between."""
    import holidays  # ~100 ms to import: only calendars that name a country pay for it

    return frozenset(holidays.country_holidays(country, subdiv=subdivision, years=year))


def _instant(day: date, at: time, tz: ZoneInfo, end: bool = False) -> datetime:
    """The UTC instant of a wall time. A time the clock skips (02:30 on spring-forward day) is
    read as zoneinfo reads it with fold=0, an hour on (03:30); a repeated one is its first time."""
    if end and at == MIDNIGHT:
        day += ONE_DAY
    return datetime.combine(day, at, tzinfo=tz).astimezone(UTC)


def day_spans(cal: Calendar, day: date) -> list[Span]:
    """The open spans of one local day in UTC, sorted and merged (a skipped hour can make two meet)."""
    if is_holiday(cal, day):
        return []
    raw = sorted((_instant(day, start, cal.timezone), _instant(day, end, cal.timezone, end=True))
                 for start, end in cal.hours.get(day.weekday(), ()))
    return merged_spans(raw)  # a span wholly inside a skipped hour is empty and dropped


def merged_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted spans with the empty ones dropped and the overlapping ones joined."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if start >= end:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def _spans_after(cal: Calendar, t: datetime, until: datetime | None = None) -> Iterator[Span]:
    """Open spans that end after ``t``, in order; with ``until``, none that start after it."""
    # The day before too: its 24:00, or a skipped hour, can reach into t's day.
    day = t.astimezone(cal.timezone).date() - ONE_DAY
    last = until.astimezone(cal.timezone).date() if until is not None else None
    closed = 0
    while last is None or day <= last:
        spans = [span for span in day_spans(cal, day) if span[1] > t]
        yield from spans
        closed = 0 if spans else closed + 1
        if closed > MAX_CLOSED_DAYS:
            raise ValueError(f"the calendar has no open time in the {MAX_CLOSED_DAYS} days after {day - closed * ONE_DAY}")
        day += ONE_DAY


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t} is a naive datetime: SLA times must be aware (UTC or a time zone)")
    return t.astimezone(UTC)


def add_business(cal: Calendar, start: datetime, duration: timedelta) -> datetime:
    """The moment ``duration`` of business time has elapsed after ``start`` (start itself for 0)."""
    start = _utc(start)
    if duration < ZERO:
        raise ValueError(f"a negative business duration: {duration}")
    if cal.always_open or not duration:
        return start + duration
    left = duration
    for open_at, close_at in _spans_after(cal, start):
        open_at = max(open_at, start)
        if left <= close_at - open_at:  # ends at a closing time rather than at the next opening
            return open_at + left
        left -= close_at - open_at
    raise AssertionError("unreachable: _spans_after ends only by ValueError")


def business_between(cal: Calendar, a: datetime, b: datetime) -> timedelta:
    """Business time in [a, b); zero when b <= a."""
    a, b = _utc(a), _utc(b)
    if b <= a:
        return ZERO
    if cal.always_open:
        return b - a
    total = ZERO
    for open_at, close_at in _spans_after(cal, a, until=b):
        if open_at >= b:
            break
        total += min(close_at, b) - max(open_at, a)
    return total


def is_open(cal: Calendar, t: datetime) -> bool:
    return next_open(cal, t) == _utc(t)


def next_open(cal: Calendar, t: datetime) -> datetime:
    """When a person will answer: ``t`` itself (in UTC) if open, else the next opening."""
    t = _utc(t)
    if cal.always_open:
        return t
    open_at, _ = next(_spans_after(cal, t))
    return max(open_at, t)


def add_business_days(cal: Calendar, start: datetime, days: int) -> datetime:
    """``days`` open days later at the same business offset into the day.

    Monday 10:00 (opening 09:00) + 5 is the fifth open day after at one business hour past its
    opening; a start in closed time counts from the next opening; a shorter target day (Saturday)
    ends at its closing. The result is open like the start (after a lunch break, not at its
    beginning: both are the same offset), so 0 days is the start's next opening. On 24x7 a
    business day is 24 hours.
    """
    if days < 0:
        raise ValueError(f"a negative number of business days: {days}")
    if cal.always_open:
        return _utc(start) + days * ONE_DAY
    at = next_open(cal, start)
    day = at.astimezone(cal.timezone).date()
    offset = business_between(cal, _first_opening(cal, day, at), at)
    for _ in range(days):
        day = _next_open_day(cal, day)
    spans = day_spans(cal, day)
    capacity = sum((end - begin for begin, end in spans), ZERO)
    if offset >= capacity:
        return spans[-1][1]
    # add_business ends a sum at a closing time; with time left that day, the next opening is meant.
    return next_open(cal, add_business(cal, spans[0][0], offset))


def _first_opening(cal: Calendar, day: date, at: datetime) -> datetime:
    spans = day_spans(cal, day)
    return spans[0][0] if spans and spans[0][0] <= at else at


def _next_open_day(cal: Calendar, day: date) -> date:
    for _ in range(MAX_CLOSED_DAYS):
        day += ONE_DAY
        if day_spans(cal, day):
            return day
    raise ValueError(f"the calendar has no open day in the {MAX_CLOSED_DAYS} days after {day}")


def weekly_hours(text_by_day: Mapping[str, str]) -> dict[int, tuple[Interval, ...]]:
    """{"mon": "09:00-18:00", ...} -> {0: ((09:00, 18:00),), ...}; days not named are closed."""
    return {WEEKDAYS.index(name): parse_hours(text) for name, text in text_by_day.items()}


UTC_ZONE = ZoneInfo("UTC")
ALWAYS_OPEN = Calendar(UTC_ZONE, {}, always_open=True)  # the built-in "24x7"
# The built-in "office": Mon-Fri 09:00-18:00, Sat 10:00-16:00, Sunday closed, UTC.
OFFICE_HOURS = weekly_hours({day: "09:00-18:00" for day in WEEKDAYS[:5]} | {"sat": "10:00-16:00"})
OFFICE = Calendar(UTC_ZONE, OFFICE_HOURS)
