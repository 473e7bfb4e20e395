"""Firing an SLA step: a warning, a breach or the escalation steps after it, each at most once per ticket and target.

daemon.due claims the step and calls ``fire`` in the transaction of its effects. The clock is
read again at the step's run time: a target met or no longer at the step's level meanwhile
fires nothing. Either way the ticket's SLA steps are rebuilt (after a warning: its breach).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ticketd.daemon.sla.calendar import business_between
from ticketd.daemon.sla.clock import BREACH, UPDATE, WARNING, Clock, load_clock
from ticketd.daemon.sla.config import SlaConfig
from ticketd.daemon.sla.due import TargetStatus
from ticketd.daemon.sla.escalate import climb
from ticketd.daemon.sla.mail import duration, owners, send, when, words
from ticketd.daemon.sla.policy import TARGETS
from ticketd.daemon.sla.schedule import ESCALATE, FIRE_BREACH, PREFIX, WARN, reschedule_sla
from ticketd.storage.writes import TicketRow

if TYPE_CHECKING:
    from ticketd.daemon.commit import Commit

log = logging.getLogger("ticketd.sla")


def is_sla(kind: str) -> bool:
    return kind.startswith(PREFIX)


async def fire(commit: Commit, kind: str, ticket: TicketRow, clock: Clock | None = None) -> bool:
    """Run SLA step ``kind`` ("sla_warn:first_response", ...); False if nothing was due any more.

    ``clock``: the ticket's, read in this transaction with the other steps of a batch (by
    default it is read here); it is kept up to date with what fires.
    """
    sla: SlaConfig | None = commit.config.sla
    level, _, target = kind.partition(":")
    if sla is None or target not in TARGETS:
        return False  # [sla] removed since the step was written, or a kind we do not know
    clock = clock or await load_clock(ticket.id, commit.config.rules)
    if clock is None:
        return False
    state = None if clock.stopped else getattr(clock.status_at(sla, commit.now), target)
    done = False
    if state is not None and level == WARN and state.state == "warned" and (WARNING, target) not in clock.fired:
        _warn(commit, clock, ticket, target, state)
        done = True
    elif state is not None and level == FIRE_BREACH and state.state == "breached" \
            and (BREACH, target) not in clock.fired:
        _breach(commit, sla, clock, ticket, target, state)
        await climb(commit, ticket, clock, target, state)  # the steps due at once ("0m")
        done = True
    elif state is not None and level == ESCALATE and (BREACH, target) in clock.fired:
        done = await climb(commit, ticket, clock, target, state)
    # The clock read above, with what was just fired added: the same as reading it again.
    await reschedule_sla(commit, ticket.id, clock)
    return done


def _warn(commit: Commit, clock: Clock, ticket: TicketRow, target: str, state: TargetStatus) -> None:
    left = int(state.left.total_seconds())
    commit.writes.event(ticket.id, WARNING, {"target": target, "due": state.due.isoformat(),
                                             "business_left_seconds": left, **_interval(clock, target)},
                        who="system")
    send(commit, owners(commit.config, clock), "warning", ticket,
         f"[#{ticket.number}] SLA warning ({words(target)}): {ticket.subject}",
         target=words(target), due=when(state.due), left=duration(state.left))
    clock.fired.add((WARNING, target))
    commit.fired["warning", target] += 1  # counted by the metrics once this commits
    log.info("ticket #%d: SLA warning, %s due %s", ticket.number, target, state.due.isoformat())


def _breach(commit: Commit, sla: SlaConfig, clock: Clock, ticket: TicketRow, target: str,
            state: TargetStatus) -> None:
    over = _over(sla, clock, state, commit.now)
    commit.writes.event(ticket.id, BREACH, {"target": target, "due": state.due.isoformat(),
                                            "business_over_seconds": int(over.total_seconds()),
                                            **_interval(clock, target)}, who="system")
    send(commit, owners(commit.config, clock), "breach", ticket,
         f"[#{ticket.number}] SLA breached ({words(target)}): {ticket.subject}",
         target=words(target), due=when(state.due), over=duration(over))
    log.warning("ticket #%d: SLA breach, %s was due %s", ticket.number, target, state.due.isoformat())
    clock.fired.add((BREACH, target))
    commit.fired["breach", target] += 1


def _interval(clock: Clock, target: str) -> dict[str, str]:
    """A next update is owed once per interval: its events say which ("since": the interval's start)."""
    since = clock.update_since if target == UPDATE else None
    return {"since": since.isoformat()} if since is not None else {}


def _over(sla: SlaConfig, clock: Clock, state: TargetStatus, now: datetime) -> timedelta:
    return business_between(sla.calendar(clock.policy(sla)), state.due, now)
