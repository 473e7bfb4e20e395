"""The one clock: every time ticketd stores, compares or puts in a Date header comes from here.

``--now TIMESTAMP`` (``run --once``, ``ingest``, ``sla run``, ``sla status``, ``report``, ``tickets
show``) starts it at that instant; from there it runs at the wall clock's pace, so the order of
what one run writes, and the durations between, stay true. Tests and replays so move time across
weekends, holidays and DST changes at once, and "what if" checks need no waiting.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

_offset = timedelta(0)  # what --now added to the wall clock; zero for the daemon


def now() -> datetime:
    return datetime.now(timezone.utc) + _offset


def start_at(instant: datetime) -> None:
    """From now on, ``now()`` is ``instant`` plus the time since this call (this process only)."""
    global _offset
    _offset = instant - datetime.now(timezone.utc)


def parse_instant(text: str) -> datetime:
    """ISO 8601 with an offset ("2026-12-04T17:30:00+01:00", "...Z"); ValueError with the reason."""
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time like 2026-12-04T17:30:00+01:00") from None
    if instant.utcoffset() is None:
        raise ValueError(f"{text!r} has no UTC offset (add +01:00, Z, ...): a local time would be a guess")
    return instant.astimezone(timezone.utc)
