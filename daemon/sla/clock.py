"""A ticket's SLA clock read from the database: its inputs in two indexed queries, its status at a time.

The ticket row gives the priority, queue, status and the first reply; the ticket's events give
the rest: when it waited (pending, solved or closed before a reopen: none of that counts toward
resolution or the next update), when the customer wrote and an agent answered, which warnings
and breaches have already happened (each is recorded once, by an event), and its escalations:
the level (one per ``escalated`` event), the breach steps run and the triggers that fired.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ticketd.daemon import lifecycle
from ticketd.daemon.sla.config import SlaConfig
from ticketd.daemon.sla.due import Pause, SlaStatus, TargetStatus, sla_status, update_start
from ticketd.daemon.sla.policy import TARGETS, Policy
from ticketd.storage import bulk
from ticketd.storage.clock import now as clock_now
from ticketd.storage.models import Event, Ticket

if TYPE_CHECKING:
    from ticketd.daemon.rules import RuleSet

STOPPED = (lifecycle.SOLVED, lifecycle.CLOSED)  # no clock runs; a reopen resumes them
PAUSED = (lifecycle.PENDING, *STOPPED)
WARNING, BREACH, ESCALATED = "sla_warning", "sla_breach", "escalated"
UPDATE = "next_update"  # the one target owed again and again: once per interval
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
    tier: str | None = None  # the requester's customer tier ([rules.tiers]): [sla.tiers.NAME] overrides
    escalated_to: str | None = None  # the support tier of the latest escalation
    fired: set[tuple[str, str]] = field(default_factory=set)  # (WARNING | BREACH, target)
    level: int = 0  # tiers climbed: one per ``escalated`` event (daemon.sla.levels)
    climbed: set[tuple[str, int]] = field(default_factory=set)  # (target, step) of the breach steps run
    triggered: set[str] = field(default_factory=set)  # the triggers that raised it (daemon.sla.triggers)

    @property
    def stopped(self) -> bool:
        return self.status in STOPPED

    def breach_steps(self, target: str) -> set[int]:
        """The steps of ``[[sla.escalation]]`` that ``target``'s breach has run (by index)."""
        return {step for name, step in self.climbed if name == target}

    def policy(self, sla: SlaConfig) -> Policy:
        # Rules give tiers in lower case ("Tier names are case-insensitive"); [sla.tiers] keeps the admin's.
        tier = next((name for name in sla.tier_policies if self.tier and name.lower() == self.tier.lower()), None)
        return sla.policy(self.priority, self.queue or None, tier)

    @property
    def update_since(self) -> datetime | None:
        """The start of the next update's current interval (None before the first reply)."""
        return update_start(self.first_reply_at, self.last_agent_at, self.last_customer_at)

    def status_at(self, sla: SlaConfig, now: datetime) -> SlaStatus:
        policy = self.policy(sla)
        return sla_status(policy, sla.calendar(policy), created_at=self.created_at, now=now, pending=self.pending,
                          first_reply_at=self.first_reply_at, solved_at=self.stopped_at,
                          last_customer_at=self.last_customer_at, last_agent_at=self.last_agent_at)


async def load_clock(ticket_id: int, rules: RuleSet | None = None) -> Clock | None:
    """The clock of ticket ``ticket_id`` (None if there is none), from what is written: flush first.

    ``rules`` gives the requester's tier, whose [sla.tiers] policy then applies.
    """
    return (await load_clocks([ticket_id], rules)).get(ticket_id)


async def load_clocks(ticket_ids: Collection[int], rules: RuleSet | None = None) -> dict[int, Clock]:
    """The clocks of several tickets (those that exist) in two queries, for a batch of due steps.

    Plain SQL: building the ORM queries cost more than running them (a tenth of `sla run`).
    """
    ids = sorted(set(ticket_ids))
    if not ids:
        return {}
    rows = await bulk.fetch(f"SELECT {', '.join(_TICKET)} FROM ticket WHERE id IN ({bulk.marks(len(ids))})", ids)
    clocks = {}
    for row in rows:
        values = dict(zip(_TICKET, row, strict=True))
        for name in _TIMES:
            values[name] = _time(values[name])
        clock = _clock(values)
        if rules is not None and values["requester"]:
            clock.tier = rules.tier_of(values["requester"]) or None
        clocks[clock.ticket_id] = clock
    events: dict[int, list[tuple[str, datetime, dict]]] = {i: [] for i in clocks}  # type: ignore[type-arg]
    found = await bulk.fetch(
        f"SELECT ticket_id, what, at, detail FROM event WHERE ticket_id IN ({bulk.marks(len(ids))}) "
        f"AND what IN ({bulk.marks(len(_EVENTS))}) ORDER BY ticket_id, at, id", [*ids, *_EVENTS])
    for ticket_id, what, at, detail in found:
        events[int(ticket_id)].append((what, _time(at), _detail(detail)))
    for ticket_id, clock in clocks.items():
        _read_events(clock, events[ticket_id])
    return clocks


_TICKET = ("id", "number", "priority", "queue", "status", "assignee", "created_at", "first_response_at", "solved_at",
           "closed_at", "requester")
_TIMES = ("created_at", "first_response_at", "solved_at", "closed_at")


def _clock(row: dict[str, Any]) -> Clock:
    status = row["status"]
    stopped_at = (row["solved_at"] or row["closed_at"]) if status in STOPPED else None
    return Clock(int(row["id"]), int(row["number"]), row["priority"], row["queue"], status, row["assignee"],
                 row["created_at"], row["first_response_at"], stopped_at)


def _time(value: Any) -> datetime | None:
    return Ticket._meta.fields_map["created_at"].to_python_value(value)


def _detail(value: Any) -> dict:  # type: ignore[type-arg]
    return Event._meta.fields_map["detail"].to_python_value(value) or {}


def _read_events(clock: Clock, events: list[tuple[str, datetime, dict]]) -> None:  # type: ignore[type-arg]
    paused_since: datetime | None = None
    updates: list[tuple[str, str | None]] = []  # next-update warnings and breaches: (what, interval start)
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
        elif what in (WARNING, BREACH) and detail.get("target") == UPDATE:
            updates.append((what, detail.get("since")))
        elif what in (WARNING, BREACH):
            clock.fired.add((what, str(detail.get("target", ""))))
        elif what == ESCALATED:
            _escalated(clock, detail)
    if paused_since is not None:
        clock.pending.append((paused_since, None))
    # The next update is owed anew after each reply and customer message: only what was fired
    # for the current interval counts (an event from before intervals were recorded: the current).
    since = clock.update_since
    for what, when in updates:
        if when is None or since is None or datetime.fromisoformat(when) == since:
            clock.fired.add((what, UPDATE))


def _escalated(clock: Clock, detail: dict) -> None:  # type: ignore[type-arg]
    clock.level += 1
    clock.escalated_to = detail.get("tier") or clock.escalated_to
    if detail.get("trigger"):
        clock.triggered.add(str(detail["trigger"]))
    elif detail.get("target"):  # written before steps were numbered: the breach's first
        clock.climbed.add((str(detail["target"]), int(detail.get("step", 0))))


async def summary(sla: SlaConfig, ticket_id: int, now: datetime,
                  rules: RuleSet | None = None) -> dict[str, Any] | None:
    """The ``sla`` of `tickets show --json`: the policy and each target's due, state and business time left."""
    clock = await load_clock(ticket_id, rules)
    if clock is None:
        return None
    status = clock.status_at(sla, now)
    targets = {}
    for name in TARGETS:
        target: TargetStatus | None = getattr(status, name)
        if target is not None:
            targets[name] = {"due": target.due.isoformat(), "state": target.state,
                             "business_left_seconds": int(target.left.total_seconds())}
    return {"policy": clock.priority, "tier": clock.tier, "escalated_to": clock.escalated_to,
            "level": clock.level, "stopped": clock.stopped, "targets": targets}


async def shown(sla: SlaConfig, number: int, now: datetime | None = None,
                rules: RuleSet | None = None) -> dict[str, Any] | None:
    """``summary`` of ticket ``number`` at ``now`` (by default the one clock's: storage.clock)."""
    ticket_id = await Ticket.filter(number=number).first().values_list("id", flat=True)
    if ticket_id is None:
        return None
    return await summary(sla, int(ticket_id), now or clock_now(), rules)  # type: ignore[call-overload]
