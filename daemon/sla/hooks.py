"""The escalation triggers where their data appears: a customer's mail, a survey rating, an unassigned report.

Imported only with ``[sla]`` (as daemon.sla.schedule is), inside the transaction that stores
what a trigger reads, so the escalation commits with it. Each trigger raises a ticket one tier
(daemon.sla.escalate) at most once: the ``escalated`` events name the triggers that fired, and
the clock read here counts them. None runs without ``[[sla.escalation]]`` steps. Mail from a
robot (RFC 3834, lists, noreply: daemon.filters.autoreply) never triggers: an out-of-office
that says "contact my supervisor", or a monitor's tenth alert on one subject, asks for nobody.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from ticketd.daemon.filters.autoreply import automatic_reason
from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.daemon.sla.clock import Clock, load_clock
from ticketd.daemon.sla.escalate import escalate
from ticketd.daemon.sla.mail import duration
from ticketd.daemon.sla.schedule import reschedule_sla
from ticketd.daemon.sla.triggers import (CSAT, MANAGER, REPEAT, SECURITY, UNASSIGNED, VIP, Triggers, first_phrase,
                                 low_rating, normalise_subject, vip_tier)
from ticketd.storage.models import Ticket
from ticketd.storage.writes import TicketRow

if TYPE_CHECKING:
    from ticketd.daemon.commit import Commit

REPEAT_LOOKBACK = 200  # the requester's latest tickets read: a robot's thousands stay unread


async def customer_mail(commit: Commit, ticket: TicketRow, msg: ParsedMessage, new: bool,
                        triggers: bool = True) -> None:
    """A new ticket or a customer's message on one: its triggers, then the ticket's SLA steps rebuilt.

    Takes the place of ``reschedule_sla`` there: the clock read once serves both. ``triggers``
    False: an agent's mail stored as a customer's (it proved nothing), which asks for nobody.
    """
    await commit.writes.flush()  # the clock reads this group's events (an escalation of an earlier message)
    clock = await load_clock(ticket.id, commit.config.rules)
    if clock is not None and triggers and commit.config.sla.escalation \
            and not automatic_reason(msg, commit.config.own_addresses):
        for trigger, reason in await _mail_triggers(commit, commit.config.sla.triggers, clock, ticket, msg, new):
            if trigger not in clock.triggered:
                await escalate(commit, ticket, clock, reason, trigger=trigger)
    await reschedule_sla(commit, ticket.id, clock)


async def rated(commit: Commit, ticket: TicketRow, rating: int) -> None:
    """A survey rating below ``csat_below``; the customer's mail that gave it reschedules after."""
    sla = commit.config.sla
    if not sla.escalation or not low_rating(sla.triggers, rating):
        return
    await commit.writes.flush()
    clock = await load_clock(ticket.id, commit.config.rules)
    if clock is not None and CSAT not in clock.triggered:
        await escalate(commit, ticket, clock, f"CSAT {rating} of 5 (below {sla.triggers.csat_below})", trigger=CSAT)


async def unassigned(commit: Commit, ticket: TicketRow, waited: timedelta) -> None:
    """Nobody took the ticket within its queue's ``unassigned_timeout`` (daemon.due reported it)."""
    sla = commit.config.sla
    if not sla.escalation or not sla.triggers.unassigned:
        return
    await commit.writes.flush()
    clock = await load_clock(ticket.id, commit.config.rules)
    if clock is None or UNASSIGNED in clock.triggered:
        return
    reason = f"unassigned for {duration(waited)} in queue {ticket.queue or 'none'}"
    if await escalate(commit, ticket, clock, reason, trigger=UNASSIGNED):
        await reschedule_sla(commit, ticket.id, clock)  # a tier's queue may bring another policy


async def _mail_triggers(commit: Commit, triggers: Triggers, clock: Clock, ticket: TicketRow, msg: ParsedMessage,
                         new: bool) -> list[tuple[str, str]]:
    """(trigger, reason) of each trigger the mail fires, in a fixed order."""
    found: list[tuple[str, str]] = []
    if new and vip_tier(triggers, clock.tier):
        found.append((VIP, f"a VIP customer (tier {clock.tier})"))
    # The new text only (no quotes: what we wrote ourselves); a new ticket's subject says as much.
    text = f"{msg.subject}\n{msg.new_text}" if new else msg.new_text
    for trigger, pattern, what in ((MANAGER, triggers.manager, "the customer asks for a manager"),
                                   (SECURITY, triggers.security, "security or compliance words")):
        phrase = first_phrase(pattern, text)
        if phrase is not None:
            found.append((trigger, f'{what} ("{phrase}")'))
    if new and triggers.repeat_subject_count and ticket.requester:
        count, subject = await _repeats(commit, ticket, triggers.repeat_subject_days)
        if count >= triggers.repeat_subject_count:
            found.append((REPEAT, f'ticket {count} from {ticket.requester} on "{subject[:100]}" '
                                  f"in {triggers.repeat_subject_days} days"))
    return found


async def _repeats(commit: Commit, ticket: TicketRow, days: int) -> tuple[int, str]:
    """How many of the requester's tickets of the last ``days`` (this one included) share its subject."""
    subject = normalise_subject(ticket.subject)
    if not subject:
        return 0, subject
    # Subjects are compared normalised, which SQL cannot do: the requester's (indexed) latest few are read.
    subjects = await Ticket.filter(requester=ticket.requester, created_at__gte=commit.now - timedelta(days=days),
                                   created_at__lte=commit.now).order_by("-id").limit(REPEAT_LOOKBACK) \
        .values_list("subject", flat=True)
    return sum(1 for s in subjects if normalise_subject(str(s)) == subject), subject
