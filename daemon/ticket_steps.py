"""A ticket changing state, whoever moves it: the event, the timestamps, the timed steps, the survey.

Used by an agent's reply (daemon.agent_reply), a customer's reply (daemon.customer_reply) and
the scheduler (daemon.due), always inside a commit group's transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from daemon import lifecycle
from daemon.relay import thread_of
from daemon.responders import TicketView
from storage.models import DueStep, Ticket
from storage.writes import TicketRow

if TYPE_CHECKING:
    from daemon.commit import Commit


def ticket_view(ticket: TicketRow, fired_rules: tuple[str, ...] = ()) -> TicketView:
    view = TicketView(ticket.number, ticket.subject, ticket.status, ticket.priority, ticket.category, ticket.queue,
                      ticket.requester, ticket.requester_name, tuple(ticket.tags))
    if fired_rules and hasattr(view, "fired_rules"):
        from dataclasses import replace

        view = replace(view, fired_rules=fired_rules)
    return view


async def change_status(commit: Commit, ticket: TicketRow, new: str, who: str, reopened: bool = False) -> None:
    """Move ``ticket`` to ``new``: cancel what the old state scheduled, schedule what the new one does."""
    old, now, config = ticket.status, commit.now, commit.config.lifecycle
    updates: dict[str, Any] = {"status": new, "updated_at": now}
    if new == lifecycle.SOLVED:
        updates["solved_at"] = now
    if new == lifecycle.CLOSED:
        updates["closed_at"] = now
    if reopened:
        current = await Ticket.filter(id=ticket.id).first().values("reopen_count")
        updates["reopen_count"] = int(current["reopen_count"] or 0) + 1
    await Ticket.filter(id=ticket.id).update(**updates)
    ticket.status = new  # later messages of this group see it (daemon.threader keeps this object)
    cancelled = lifecycle.STEPS_OF.get(old, ())
    if cancelled:
        await DueStep.filter(ticket_id=ticket.id, done_at=None, kind__in=list(cancelled)).update(done_at=now)
    for kind, due_at in lifecycle.due_steps(new, now, config):
        await DueStep.create(ticket_id=ticket.id, kind=kind, due_at=due_at, created_at=now)
    commit.writes.event(ticket.id, "status_changed", {"from": old, "to": new, **({"reopened": True} if reopened
                                                                                 else {})}, who=who)
    if new == lifecycle.SOLVED and commit.config.survey.enabled and ticket.requester:
        await _survey(commit, ticket)


async def _survey(commit: Commit, ticket: TicketRow) -> None:
    from daemon.responders.survey import survey_draft

    if ticket.requester in commit.suppressed:
        return
    thread = await thread_of(ticket.id)
    draft = survey_draft(commit.config, ticket_view(ticket), ticket.requester, thread.in_reply_to, thread.references)
    commit._outbound_row(ticket, draft)
    commit.writes.event(ticket.id, "survey_sent", {"to": ticket.requester}, who="system")
