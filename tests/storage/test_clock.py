"""The one clock: --now moves every time ticketd writes, and nothing else about it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ticketd.storage import clock

BERLIN_EVENING = "2026-12-04T17:30:00+01:00"


def test_an_instant_needs_its_offset_and_comes_back_in_utc() -> None:
    assert clock.parse_instant(BERLIN_EVENING) == datetime(2026, 12, 4, 16, 30, tzinfo=timezone.utc)
    assert clock.parse_instant("2026-03-29T01:30:00Z") == datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="no UTC offset"):
        clock.parse_instant("2026-12-04T17:30:00")
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        clock.parse_instant("Friday evening")


def test_started_at_an_instant_the_clock_runs_on_from_there() -> None:
    try:
        clock.start_at(datetime(2030, 1, 4, 23, 59, 59, tzinfo=timezone.utc))
        first = clock.now()
        assert timedelta(0) <= first - datetime(2030, 1, 4, 23, 59, 59, tzinfo=timezone.utc) < timedelta(seconds=5)
        assert clock.now() >= first  # it runs on: what one run writes keeps its order
    finally:
        clock.start_at(datetime.now(timezone.utc))
    assert abs(clock.now() - datetime.now(timezone.utc)) < timedelta(seconds=1)
