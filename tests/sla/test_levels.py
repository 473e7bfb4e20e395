"""Escalation levels: the tier reached next, the tier a ticket is at, which step of a breach runs next."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ticketd.daemon.sla.due import TargetStatus
from ticketd.daemon.sla.levels import current_tier, next_breach_step, next_tier, still_breached

TIERS = ("Tier 2", "Engineering", "Management")
AT = datetime(2026, 12, 1, 9, tzinfo=UTC)
BREACHED = TargetStatus(AT, AT, "breached", timedelta(hours=1), timedelta(0))


def test_a_ticket_climbs_one_tier_past_its_level_and_none_past_the_top() -> None:
    assert [next_tier(TIERS, level) for level in range(4)] == ["Tier 2", "Engineering", "Management", None]
    assert next_tier((), 0) is None


def test_the_tier_a_ticket_is_at() -> None:
    assert [current_tier(TIERS, level) for level in range(4)] == [None, "Tier 2", "Engineering", "Management"]
    assert current_tier(TIERS, 7) == "Management"  # steps removed from the config since: the last one
    assert current_tier((), 2) is None


def test_a_breach_runs_its_steps_in_order() -> None:
    assert next_breach_step(3, 0, set()) == 0
    assert next_breach_step(3, 1, {0}) == 1
    assert next_breach_step(3, 2, {0, 1}) == 2
    assert next_breach_step(3, 3, {0, 1, 2}) is None


def test_the_first_step_of_a_breach_raises_an_escalated_ticket_once_more() -> None:
    # A trigger took it to Tier 2: the breach takes it on to Engineering.
    assert next_breach_step(3, 1, set()) == 0


def test_a_later_step_is_skipped_when_the_ticket_is_at_its_tier_already() -> None:
    # Engineering reached (by a trigger after the breach): the Engineering step is passed over.
    assert next_breach_step(3, 2, {0}) == 2
    assert next_breach_step(3, 3, {0}) is None  # at the top: nothing is left to run


def test_another_targets_breach_raises_the_ticket_past_what_the_first_reached() -> None:
    # first_response took it to Engineering; resolution's breach has run nothing yet.
    assert next_breach_step(3, 2, set()) == 0
    assert next_breach_step(3, 3, {0}) is None


def test_still_breached_until_answered() -> None:
    assert still_breached("resolution", BREACHED, None)
    assert still_breached("next_update", BREACHED, AT)  # a reply restarts it: breached is the new one
    assert not still_breached("first_response", BREACHED, AT)  # answered late: breached for good, but answered
    assert still_breached("first_response", BREACHED, None)
    assert not still_breached("resolution", None, None)  # stopped: solved or closed
    for state in ("running", "warned", "paused", "met"):
        assert not still_breached("resolution", TargetStatus(AT, AT, state, timedelta(0), timedelta(0)), None)
