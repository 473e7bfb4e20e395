"""A ticket's SLA clock read from the database: its inputs in two indexed queries, its status at a time.

The ticket row gives the priority, queue, status and the first reply; the ticket's events give
the rest: when it waited (pending, solved or closed before a reopen: none of that counts toward
resolution or the next update), when the customer wrote and an agent answered, and which
warnings, breaches and escalations have already happened (each is recorded once, by an event).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from daemon import lifecycle
from daemon.sla.config import SlaConfig
from daemon.sla.due import Pause, SlaStatus, sla_status
from daemon.sla.policy import Policy
from storage.models import Event, Ticket

STOPPED = (lifecycle.SOLVED, lifecycle.CLOSED)  # no clock runs; a reopen resumes them
PAUSED = (lifecycle.PENDING, *STOPPED)
WARNING, BREACH, ESCALATED = "sla_warning", "sla_breach", "escalated"
# Only the events the clock reads: served by the event(ticket) index, a handful per ticket.
_EVENTS = ("created", "article", "agent_reply", "status_changed", WARNING, BREACH, ESCALATED)


@dataclass
class Clock:
    """What the SLA of one ticket depends on, as stored."""

    ticket_id: int
    number: int
    priority: str
    queue: str
    status: str
    assignee: str | None
    created_at: datetime
    first_reply_at: datetime | None
    stopped_at: datetime | None  # solved (or closed) while it still is
    pending: list[Pause] = field(default_factory=list)
    last_customer_at: datetime | None = None
    last_agent_at: datetime | None = None
    tier: str | None = None  # of the latest escalation
    fired: set[tuple[str, str]] = field(default_factory=set)  # (WARNING | BREACH | ESCALATED, target)

    @property
    def stopped(self) -> bool:
        return self.status in STOPPED

    def policy(self, sla: SlaConfig) -> Policy:
        return sla.policy(self.priority, self.queue or None, self.tier)

    def status_at(self, sla: SlaConfig, now: datetime) -> SlaStatus:
        policy = self.policy(sla)
        return sla_status(policy, sla.calendar(policy), created_at=self.created_at, now=now, pending=self.pending,
                          first_reply_at=self.first_reply_at, solved_at=self.stopped_at,
                          last_customer_at=self.last_customer_at, last_agent_at=self.last_agent_at)


async def load_clock(ticket_id: int) -> Clock | None:
    """The clock of ticket ``ticket_id`` (None if there is none), from what is written: flush first."""
    row = await Ticket.filter(id=ticket_id).first().values(
        "number", "priority", "queue", "status", "assignee", "created_at", "first_response_at", "solved_at",
        "closed_at")
    if row is None:
        return None
    status = row["status"]
    stopped_at = (row["solved_at"] or row["closed_at"]) if status in STOPPED else None
    clock = Clock(ticket_id, row["number"], row["priority"], row["queue"], status, row["assignee"],
                  row["created_at"], row["first_response_at"], stopped_at)
    events = await Event.filter(ticket_id=ticket_id, what__in=_EVENTS).order_by("at", "id") \
        .values_list("what", "at", "detail")
    _read_events(clock, events)
    return clock


def _read_events(clock: Clock, events: list[tuple[str, datetime, dict]]) -> None:  # type: ignore[type-arg]
    paused_since: datetime | None = None
    for what, at, detail in events:
        detail = detail or {}
        if what == "status_changed":
            waiting = detail.get("to") in PAUSED
            if waiting and paused_since is None:
                paused_since = at
            elif not waiting and paused_since is not None:
                clock.pending.append((paused_since, at))
                paused_since = None
        elif what in ("created", "article"):
            clock.last_customer_at = at
        elif what == "agent_reply" and detail.get("relayed"):
            clock.last_agent_at = at
        elif what in (WARNING, BREACH):
            clock.fired.add((what, str(detail.get("target", ""))))
        elif what == ESCALATED:
            clock.fired.add((what, str(detail.get("target", ""))))
            clock.tier = detail.get("tier") or clock.tier
    if paused_since is not None:
        clock.pending.append((paused_since, None))
