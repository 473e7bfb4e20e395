"""Due times and states of a ticket's SLA targets: a pure function of the policy, the ticket's times and now.

Each target is a budget of business time on the policy's calendar, counted from a start until a
stop (or now). Time pending (waiting for the customer) does not count toward resolution or the
next update: the due time moves later by the business time spent pending. The first response is
never paused: a ticket set pending has had an agent's attention, which is what it measures.
Nothing here reads a clock; ``now`` is an argument, so a test or `--now` decides what now is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from ticketd.daemon.sla.calendar import Calendar, add_business, business_between, merged_spans
from ticketd.daemon.sla.policy import Policy, Target, budget

WARN_FRACTION = 0.75  # warned once this share of the budget is used
ZERO = timedelta(0)
State = Literal["running", "paused", "met", "warned", "breached"]
Pause = tuple[datetime, datetime | None]  # pending [from, to); None: still pending


@dataclass(frozen=True)
class TargetStatus:
    due: datetime  # UTC: when the budget is used up, counting the pauses before it
    warn_at: datetime  # UTC: when WARN_FRACTION of it is used
    state: State
    used: timedelta  # business time counted so far (pauses excluded)
    left: timedelta  # business time left, zero once breached


@dataclass(frozen=True)
class SlaStatus:
    """None for a target the policy does not set, or that does not apply yet (next_update before a reply)."""

    first_response: TargetStatus | None
    next_update: TargetStatus | None
    resolution: TargetStatus | None


def sla_status(policy: Policy, cal: Calendar, *, created_at: datetime, now: datetime,
               pending: Sequence[Pause] = (), first_reply_at: datetime | None = None,
               solved_at: datetime | None = None, last_customer_at: datetime | None = None,
               last_agent_at: datetime | None = None) -> SlaStatus:
    """Every target of ``policy`` for one ticket at ``now``; all datetimes aware."""
    first = None
    if policy.first_response is not None:
        first = target_status(cal, policy.first_response, created_at, first_reply_at, (), now)
    update = None
    start = update_start(first_reply_at, last_agent_at, last_customer_at)
    if policy.next_update is not None and start is not None:
        update = target_status(cal, policy.next_update, start, solved_at, pending, now)
    resolution = None
    if policy.resolution is not None:
        resolution = target_status(cal, policy.resolution, created_at, solved_at, pending, now)
    return SlaStatus(first, update, resolution)


def update_start(first_reply_at: datetime | None, last_agent_at: datetime | None,
                 last_customer_at: datetime | None) -> datetime | None:
    """Where the next update's interval starts: None before the first reply, then the latest reply
    or customer message (each restarts it: an update is owed after the latest)."""
    if first_reply_at is None:
        return None
    return max(t for t in (first_reply_at, last_agent_at, last_customer_at) if t is not None)


def target_status(cal: Calendar, target: Target, start: datetime, stop: datetime | None,
                  pending: Sequence[Pause], now: datetime) -> TargetStatus:
    """One target counted from ``start`` until ``stop`` (the reply, the solve) or ``now``."""
    start, now = start.astimezone(UTC), now.astimezone(UTC)
    stopped = stop is not None and stop <= now  # a stop after now has not happened yet
    end = max(stop if stop is not None and stopped else now, start)
    pauses = _pauses(pending, start, end)
    allowed = budget(cal, start, target)
    used = business_between(cal, start, end) - sum((business_between(cal, a, b) for a, b in pauses), ZERO)
    state = _state(used, allowed, stopped, _pending_at(pending, now))
    return TargetStatus(_moment(cal, start, allowed, pauses), _moment(cal, start, allowed * WARN_FRACTION, pauses),
                        state, used, max(allowed - used, ZERO))


def _state(used: timedelta, allowed: timedelta, stopped: bool, paused: bool) -> State:
    if stopped:
        return "met" if used <= allowed else "breached"  # an answer at the due minute is in time
    if used >= allowed:
        return "breached"  # stays breached while paused: a breach is never undone
    if paused:
        return "paused"
    return "warned" if used >= allowed * WARN_FRACTION else "running"


def _moment(cal: Calendar, start: datetime, amount: timedelta, pauses: list[tuple[datetime, datetime]]) -> datetime:
    """When ``amount`` of counted business time is used: each pause before that moment pushes it on."""
    moment = add_business(cal, start, amount)
    for begin, finish in pauses:  # sorted: a pushed moment can only take in later pauses
        if begin >= moment:
            break
        moment = add_business(cal, moment, business_between(cal, begin, finish))
    return moment


def _pauses(pending: Sequence[Pause], start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """Pending intervals clipped to [start, end), sorted and merged, so no time is subtracted twice."""
    return merged_spans((max(a.astimezone(UTC), start), min(b.astimezone(UTC) if b is not None else end, end))
                        for a, b in pending)


def _pending_at(pending: Sequence[Pause], now: datetime) -> bool:
    return any(a <= now and (b is None or b > now) for a, b in pending)
