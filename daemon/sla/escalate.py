"""Raising a ticket one tier of the escalation matrix: the event, the tier's mail, the tier's queue.

Whatever raises a ticket (a target's breach and the steps after it, daemon.sla.fire; a trigger,
daemon.sla.hooks) raises it here, inside the transaction of the step or message that decided
it: the ``escalated`` event and the mail commit together or not at all, and the event is what
later reads of the clock count (the level, the breach steps run, the triggers fired), so nothing
is escalated twice across restarts. After it the tier's people hear of the ticket's warnings and
breaches as well (daemon.sla.mail.owners).

The event's detail: ``tier``, ``level`` (after it), ``reason``, ``to`` (the addresses mailed);
``target`` and ``step`` (the index in ``[[sla.escalation]]``) for a breach's steps, ``trigger``
(daemon.sla.triggers) for a trigger.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ticketd.daemon.outgoing import one_line
from ticketd.daemon.sla.clock import ESCALATED, Clock
from ticketd.daemon.sla.due import TargetStatus
from ticketd.daemon.sla.levels import next_breach_step, next_tier, still_breached
from ticketd.daemon.sla.mail import send, when
from ticketd.daemon.ticket_steps import change_queue
from ticketd.storage.writes import TicketRow

if TYPE_CHECKING:
    from ticketd.daemon.commit import Commit

log = logging.getLogger("ticketd.sla")


async def escalate(commit: Commit, ticket: TicketRow, clock: Clock, reason: str, *, target: str | None = None,
                   step: int | None = None, trigger: str | None = None, due: datetime | None = None) -> bool:
    """Raise ``ticket`` one tier past ``clock.level``; False (and nothing written) at the top tier.

    ``clock`` is kept up to date (level, tier, queue, what ran), so the caller can reschedule from it.
    """
    tier = next_tier(commit.config.sla.escalation, clock.level)
    if tier is None:
        log.info("ticket #%d: not escalated (%s): at the top tier already", ticket.number, reason)
        return False
    reason, level = one_line(reason, 300), clock.level + 1
    detail: dict[str, Any] = {"tier": tier.tier, "level": level, "reason": reason, "to": list(tier.recipients)}
    detail.update({k: v for k, v in (("target", target), ("step", step), ("trigger", trigger)) if v is not None})
    commit.writes.event(ticket.id, ESCALATED, detail, who="system")
    send(commit, tier.recipients, "escalation", ticket, f"[#{ticket.number}] Escalated to {tier.tier}: {ticket.subject}",
         tier=tier.tier, level=level, reason=reason, assignee=clock.assignee or "", due=when(due) if due else "")
    _record(clock, tier.tier, target, step, trigger)
    commit.fired["escalation", trigger or target or "other"] += 1  # counted by the metrics once this commits
    if tier.queue is not None and await change_queue(commit, ticket, tier.queue, "system"):
        clock.queue = tier.queue  # its policy may differ: the caller reschedules from this clock
    log.warning("ticket #%d: escalated to %s, level %d (%s)", ticket.number, tier.tier, level, reason)
    return True


def _record(clock: Clock, tier: str, target: str | None, step: int | None, trigger: str | None) -> None:
    """What reading the event just written would add to the clock."""
    clock.level += 1
    clock.escalated_to = tier
    if trigger is not None:
        clock.triggered.add(trigger)
    elif target is not None:
        clock.climbed.add((target, step or 0))


async def climb(commit: Commit, ticket: TicketRow, clock: Clock, target: str, state: TargetStatus) -> bool:
    """Run the steps of ``target``'s breach that are due by now, in order; whether one raised the ticket.

    Several are due at once when the scheduler was stopped past more than one ``after``.
    """
    steps = commit.config.sla.escalation
    raised = False
    for _ in steps:  # each pass runs a step or stops: never more passes than steps
        i = next_breach_step(len(steps), clock.level, clock.breach_steps(target))
        if i is None or commit.now < state.due + steps[i].after or \
                not still_breached(target, state, clock.first_reply_at):
            break
        raised = await escalate(commit, ticket, clock, f"breach of {target}", target=target, step=i,
                                due=state.due) or raised
    return raised
