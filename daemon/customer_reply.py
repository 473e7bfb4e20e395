"""A customer's reply to a ticket that waits (pending), is solved or is closed.

Reopens it, records a thank-you or a survey rating without reopening, or, for a ticket closed
longer than the reopen window, says to open a new ticket linked to the old one. New and open
tickets never come here, so the common follow-up costs nothing more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ticketd.daemon import lifecycle, satisfaction
from ticketd.daemon.filters.autoreply import automatic_reason
from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.daemon.ticket_steps import change_status, ticket_view
from ticketd.storage.models import OutboundMessage, Ticket
from ticketd.storage.writes import TicketRow

if TYPE_CHECKING:
    from ticketd.daemon.commit import Commit



class Reply:
    """Decided before the article is written (it may belong on a new ticket), applied after it."""

    def __init__(self, change: lifecycle.Change, rating: int | None, comment: str) -> None:
        self.change, self.rating, self.comment = change, rating, comment

    @property
    def follow_up(self) -> bool:
        return self.change.follow_up


async def decide(commit: Commit, ticket: TicketRow, msg: ParsedMessage) -> Reply:
    await commit.writes.flush()  # the ORM below must see this group's earlier writes
    text = msg.new_text or msg.text
    automatic = bool(automatic_reason(msg, commit.config.own_addresses))
    state = await Ticket.filter(id=ticket.id).first().values("closed_at", "csat")
    rating = None
    if not automatic and ticket.status in (lifecycle.SOLVED, lifecycle.CLOSED) and state["csat"] is None:
        if await OutboundMessage.filter(ticket_id=ticket.id, kind="survey").exists():
            rating = satisfaction.rating(text)
    if rating is not None:  # the answer to the survey: recorded, and the ticket stays where it is
        comment = "\n".join(text.strip().splitlines()[1:]).strip() or text.strip().partition(" ")[2]
        return Reply(lifecycle.Change(ticket.status), rating, comment[:2000])
    change = lifecycle.customer_reply(ticket.status, state["closed_at"], commit.now, commit.config.lifecycle,
                                      text, automatic)
    return Reply(change, None, "")


async def apply(commit: Commit, ticket: TicketRow, reply: Reply, who: str) -> None:
    if reply.rating is not None:
        await _rated(commit, ticket, reply.rating, reply.comment, who)
    elif reply.change.thanks:
        commit.writes.event(ticket.id, "thanks", {"status": ticket.status}, who=who)
    elif reply.change.status != ticket.status:
        await change_status(commit, ticket, reply.change.status, who, reopened=reply.change.reopened)


async def _rated(commit: Commit, ticket: TicketRow, rating: int, comment: str, who: str) -> None:
    await Ticket.filter(id=ticket.id).update(csat=rating, updated_at=commit.now)
    commit.writes.event(ticket.id, "csat", {"rating": rating, "comment": comment}, who=who)
    team = commit.config.team
    queue = team.queue(ticket.queue) if team is not None else None
    if rating <= satisfaction.LOW and queue is not None and queue.lead:
        from ticketd.daemon.notices import low_csat_draft

        commit._outbound_row(ticket, low_csat_draft(commit.config, queue.lead, ticket_view(ticket), rating, comment))
    if commit.config.sla is not None:  # after: the lead told is the queue's that served it, not a tier's
        from ticketd.daemon.sla.hooks import rated

        await rated(commit, ticket, rating)
