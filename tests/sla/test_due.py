"""Due times and states: running, warned at 75 %, breached at 100 %, met, and pending pausing resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ticketd.daemon.sla.calendar import ALWAYS_OPEN, WEEKDAYS, Calendar, weekly_hours
from ticketd.daemon.sla.due import SlaStatus, TargetStatus, sla_status
from ticketd.daemon.sla.policy import DEFAULT_POLICIES, BusinessDays, Policy

H = timedelta(hours=1)
WEEK = Calendar(ZoneInfo("UTC"), weekly_hours({day: "09:00-18:00" for day in WEEKDAYS[:5]}))
P2 = Policy("week", 4 * H, 4 * H, 24 * H)


def jan(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)  # 2026-01-05 is a Monday


CREATED = jan(5, 9)


def status(now: datetime, policy: Policy = P2, cal: Calendar = WEEK, **times: object) -> SlaStatus:
    return sla_status(policy, cal, created_at=times.pop("created_at", CREATED), now=now, **times)  # type: ignore[arg-type]


def test_fresh_ticket_runs() -> None:
    result = status(jan(5, 10))
    assert result.first_response == TargetStatus(jan(5, 13), jan(5, 12), "running", H, 3 * H)
    # 24 business hours: Monday 9, Tuesday 9, Wednesday 6.
    assert result.resolution == TargetStatus(jan(7, 15), jan(6, 18), "running", H, 23 * H)
    assert result.next_update is None  # no agent has replied yet


def test_warned_at_three_quarters_and_breached_at_the_due_minute() -> None:
    assert status(jan(5, 11, 59)).first_response.state == "running"  # type: ignore[union-attr]
    assert status(jan(5, 12)).first_response.state == "warned"  # type: ignore[union-attr]
    late = status(jan(5, 13)).first_response
    assert late is not None and (late.state, late.left, late.used) == ("breached", timedelta(0), 4 * H)
    assert status(jan(6, 10)).first_response.used == 10 * H  # type: ignore[union-attr]


def test_reply_in_time_is_met_and_late_is_breached() -> None:
    met = status(jan(6, 10), first_reply_at=jan(5, 13)).first_response
    assert met == TargetStatus(jan(5, 13), jan(5, 12), "met", 4 * H, timedelta(0))
    late = status(jan(6, 10), first_reply_at=jan(5, 14)).first_response
    assert late == TargetStatus(jan(5, 13), jan(5, 12), "breached", 5 * H, timedelta(0))


def test_a_reply_after_now_has_not_happened_yet() -> None:
    assert status(jan(5, 10), first_reply_at=jan(5, 11)).first_response.state == "running"  # type: ignore[union-attr]


def test_pending_moves_the_resolution_due_time() -> None:
    # Pending Mon 10:00 - Tue 10:00: 9 business hours (Monday 8, Tuesday 1) that do not count.
    result = status(jan(6, 12), pending=[(jan(5, 10), jan(6, 10))], first_reply_at=jan(5, 10))
    assert result.resolution == TargetStatus(jan(8, 15), jan(7, 18), "running", 3 * H, 21 * H)
    assert result.first_response is not None and result.first_response.state == "met"


def test_still_pending_is_paused_and_due_keeps_moving() -> None:
    pending = [(jan(5, 10), None)]
    result = status(jan(6, 10), pending=pending)
    assert result.resolution is not None
    assert (result.resolution.state, result.resolution.due, result.resolution.used) == ("paused", jan(8, 15), H)
    assert status(jan(6, 12), pending=pending).resolution.due == jan(8, 17)  # type: ignore[union-attr]
    # The first response is not paused by pending.
    assert result.first_response is not None and result.first_response.state == "breached"


def test_pending_after_a_breach_stays_breached_with_its_due_time() -> None:
    result = status(jan(9, 10), pending=[(jan(8, 10), None)])
    assert result.resolution is not None
    assert (result.resolution.state, result.resolution.due) == ("breached", jan(7, 15))


def test_overlapping_pending_intervals_count_once() -> None:
    pending = [(jan(5, 10), jan(5, 14)), (jan(5, 12), jan(5, 16))]
    assert status(jan(5, 17), pending=pending).resolution.used == 2 * H  # type: ignore[union-attr]


def test_solved_is_met() -> None:
    result = status(jan(9, 10), first_reply_at=jan(5, 10), last_agent_at=jan(6, 10), solved_at=jan(6, 12))
    assert result.resolution == TargetStatus(jan(7, 15), jan(6, 18), "met", 12 * H, 12 * H)
    assert result.next_update is not None and result.next_update.state == "met"


def test_next_update_counts_from_the_latest_reply_or_customer_message() -> None:
    times = dict(first_reply_at=jan(5, 10), last_agent_at=jan(5, 10), last_customer_at=jan(5, 15))
    result = status(jan(5, 16), **times)
    # 15:00 + 4 business hours: 3 on Monday, 1 on Tuesday.
    assert result.next_update == TargetStatus(jan(6, 10), jan(5, 18), "running", H, 3 * H)
    paused = status(jan(6, 9, 30), pending=[(jan(5, 16), None)], **times).next_update
    assert paused is not None and (paused.state, paused.due) == ("paused", jan(6, 12, 30))


def test_p4_business_days_and_no_next_update() -> None:
    p4 = DEFAULT_POLICIES["P4"]
    assert p4.resolution == BusinessDays(5)
    result = status(jan(7, 11), p4, created_at=jan(7, 10), first_reply_at=jan(7, 10, 30))
    assert result.next_update is None
    assert result.resolution == TargetStatus(jan(14, 10), jan(12, 16, 45), "running", H, 44 * H)


def test_p1_on_24x7_across_spring_forward() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    created = datetime(2026, 3, 29, 1, 30, tzinfo=berlin)  # CET, 00:30 UTC
    result = status(datetime(2026, 3, 29, 5, 30, tzinfo=berlin), DEFAULT_POLICIES["P1"], ALWAYS_OPEN,
                    created_at=created)
    assert result.resolution is not None
    assert result.resolution.due == datetime(2026, 3, 29, 6, 30, tzinfo=berlin)  # 4 hours later, CEST
    assert (result.resolution.state, result.resolution.used) == ("warned", 3 * H)
    assert result.first_response is not None and result.first_response.state == "breached"
