"""Targets per priority (first response, next update, resolution), their durations and defaults.

A target is business time on the policy's calendar: a ``timedelta`` ("4h", "2d": a day is 24
hours of business time, so "2d" on a 9-hour office is more than five working days), or
``BusinessDays`` ("5bd": the same business offset into the day, that many open days later; see
calendar.add_business_days). ``budget`` turns either into business time from a start, which is
what pauses and the warning threshold are measured in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from ticketd.daemon.sla.calendar import Calendar, add_business_days, business_between

PRIORITIES = ("P1", "P2", "P3", "P4")
TARGETS = ("first_response", "next_update", "resolution")
MAX_TARGET = timedelta(days=366)  # longer is a typo, and would make each due time a long walk
MAX_BUSINESS_DAYS = 366
DURATION_EXPECTED = 'a duration like "30m", "4h", "1h30m", "2d" (24-hour days), "5bd" (business days) or "none"'
_PARTS = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?")
_BUSINESS_DAYS = re.compile(r"(\d+)bd")


@dataclass(frozen=True)
class BusinessDays:
    """A target of whole open days of the calendar (``"5bd"``)."""

    days: int

    def __str__(self) -> str:
        return f"{self.days}bd"


Target = timedelta | BusinessDays


@dataclass(frozen=True)
class Policy:
    calendar_name: str  # a key of SlaConfig.calendars; "24x7" is built in
    first_response: Target | None  # None: no such target
    next_update: Target | None
    resolution: Target | None


def parse_duration(text: str) -> Target | None:
    """'1h30m' -> timedelta, '5bd' -> BusinessDays(5), 'none' -> None; ValueError otherwise."""
    text = text.strip().lower()
    if text == "none":
        return None
    if match := _BUSINESS_DAYS.fullmatch(text):
        return BusinessDays(int(match.group(1)))
    match = _PARTS.fullmatch(text)
    if not text or not match:  # the pattern also matches "", which says nothing
        raise ValueError(DURATION_EXPECTED)
    days, hours, minutes = (int(g or 0) for g in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes)


def format_duration(target: Target | None) -> str:
    """The inverse of parse_duration, for logs and `check-config`."""
    if target is None:
        return "none"
    if isinstance(target, BusinessDays):
        return str(target)
    minutes = int(target.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    text = (f"{days}d" if days else "") + (f"{rest // 60}h" if rest // 60 else "") + (f"{rest % 60}m" if rest % 60 else "")
    return text or "0m"


def budget(cal: Calendar, start: datetime, target: Target) -> timedelta:
    """The business time a target allows from ``start``; business days become the time to that moment."""
    if isinstance(target, BusinessDays):
        return business_between(cal, start, add_business_days(cal, start, target.days))
    return target


def _h(hours: int) -> timedelta:
    return timedelta(hours=hours)


# The defaults. P1 runs around the clock; the others on the office's hours.
DEFAULT_POLICIES: dict[str, Policy] = {
    "P1": Policy("24x7", _h(1), _h(1), _h(4)),
    "P2": Policy("office", _h(4), _h(4), _h(24)),
    "P3": Policy("office", _h(8), _h(24), _h(72)),
    "P4": Policy("office", _h(24), None, BusinessDays(5)),
}
