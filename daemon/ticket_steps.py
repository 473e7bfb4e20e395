"""A ticket changing state, whoever moves it: the event, the timestamps, the timed steps, the survey.

Used by an agent's reply (daemon.agent_reply), a customer's reply (daemon.customer_reply) and
the scheduler (daemon.due), always inside a commit group's transaction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ticketd.daemon import lifecycle
from ticketd.daemon.relay import thread_of
from ticketd.daemon.responders import TicketView
from tortoise.expressions import F

from ticketd.storage import bulk
from ticketd.storage.models import DueStep, Ticket
from ticketd.storage.writes import TicketRow

if TYPE_CHECKING:
    from ticketd.daemon.commit import Commit
    from ticketd.daemon.config_agents import QueueConfig

UNASSIGNED_REPORT = "unassigned_report"  # a new ticket nobody took within its queue's timeout


def ticket_view(ticket: TicketRow, fired_rules: tuple[str, ...] = ()) -> TicketView:
    return TicketView(ticket.number, ticket.subject, ticket.status, ticket.priority, ticket.category, ticket.queue,
                      ticket.requester, ticket.requester_name, tuple(ticket.tags), fired_rules)


async def change_status(commit: Commit, ticket: TicketRow, new: str, who: str, reopened: bool = False) -> None:
    """Move ``ticket`` to ``new``: cancel what the old state scheduled, schedule what the new one does."""
    old, now = ticket.status, commit.now
    updates: dict[str, Any] = {"status": new, "updated_at": now}
    if new == lifecycle.SOLVED:
        updates["solved_at"] = now
    if new == lifecycle.CLOSED:
        updates["closed_at"] = now
    if reopened:
        updates["reopen_count"] = F("reopen_count") + 1
    await Ticket.filter(id=ticket.id).update(**updates)
    ticket.status = new  # later messages of this group see it (daemon.threader keeps this object)
    await _reschedule(commit, ticket.id, old, new)
    commit.writes.event(ticket.id, "status_changed", {"from": old, "to": new, **({"reopened": True} if reopened
                                                                                 else {})}, who=who)
    if commit.config.sla is not None:  # pending pauses, solved and closed stop, a reopen resumes
        from ticketd.daemon.sla.schedule import reschedule_sla

        await reschedule_sla(commit, ticket.id)
    if new == lifecycle.SOLVED and commit.config.survey.enabled and ticket.requester:
        await _survey(commit, ticket)


async def change_queue(commit: Commit, ticket: TicketRow, queue: str, who: str) -> bool:
    """Move ``ticket`` to ``queue`` (an agent's #queue, an escalation's tier); False if it is there already."""
    if queue == ticket.queue:
        return False
    commit.writes.event(ticket.id, "queue_changed", {"from": ticket.queue, "to": queue}, who=who)
    await Ticket.filter(id=ticket.id).update(queue=queue, updated_at=commit.now)
    ticket.queue = queue  # later messages of this group see it (daemon.threader keeps this object)
    return True


async def restart_steps(commit: Commit, ticket: TicketRow) -> None:
    """The timed steps of the ticket's state, counted again from now (an agent asked once more)."""
    await _reschedule(commit, ticket.id, ticket.status, ticket.status)


async def _reschedule(commit: Commit, ticket_id: int, old: str, new: str) -> None:
    """Cancel what ``old`` scheduled and schedule what ``new`` does (each step a row, run once)."""
    cancelled = lifecycle.STEPS_OF.get(old, ())
    if cancelled:
        done_at = DueStep._meta.fields_map["done_at"].to_db_value(commit.now, None)
        await bulk.execute(f"UPDATE due_step SET done_at = ? WHERE ticket_id = ? "
                           f"AND {bulk.unindexed('done_at')} IS NULL AND kind IN ({bulk.marks(len(cancelled))})",
                           [done_at, ticket_id, *cancelled])
    for kind, due_at in lifecycle.due_steps(new, commit.now, commit.config.lifecycle):
        await DueStep.create(ticket_id=ticket_id, kind=kind, due_at=due_at, created_at=commit.now)


async def _survey(commit: Commit, ticket: TicketRow) -> None:
    from ticketd.daemon.responders.survey import survey_draft

    if ticket.requester in commit.suppressed:
        return
    thread = await thread_of(ticket.id)
    draft = survey_draft(commit.config, ticket_view(ticket), ticket.requester, thread.in_reply_to, thread.references)
    commit._outbound_row(ticket, draft)
    commit.writes.event(ticket.id, "survey_sent", {"to": ticket.requester}, who="system")


async def assign_new(commit: Commit, ticket: TicketRow, text: str, queue: QueueConfig) -> None:
    """A new ticket's assignee, by its queue's rule; the assignee is told in person.

    Left unassigned, it is reported after the queue's ``unassigned_timeout`` (a timed step).
    """
    from ticketd.daemon.assign import choose

    await commit.writes.flush()  # the open-ticket counts must see this group's new tickets
    team = commit.config.team
    choice = await choose(team, queue, text, tuple(ticket.tags), commit.now) if queue.assign != "none" else None
    agent = getattr(choice, "agent", None)
    if agent is not None:
        await Ticket.filter(id=ticket.id).update(assignee=agent.address)
        commit.writes.event(ticket.id, "assigned", {"to": agent.address, "how": choice.how}, who="system")
        notify_assignee(commit, ticket, agent.address)
        return
    if choice is not None:
        commit.writes.event(ticket.id, "unassigned", {"reason": getattr(choice, "reason", "")}, who="system")
    if queue.unassigned_timeout:
        await DueStep.create(ticket_id=ticket.id, kind=UNASSIGNED_REPORT, created_at=commit.now,
                             due_at=commit.now + timedelta(seconds=queue.unassigned_timeout))


def notify_assignee(commit: Commit, ticket: TicketRow, address: str) -> None:
    from ticketd.daemon.notices import assigned_draft
    from ticketd.daemon.signing import reply_address

    signing = commit.config.team.signing
    reply = reply_address(commit.config.support_address(commit.mailbox), ticket.number, signing.key,
                          signing.reply_format)
    commit._outbound_row(ticket, assigned_draft(commit.config, address, ticket_view(ticket), reply))
