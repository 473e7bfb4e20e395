"""Who hears of a ticket's SLA, and the mail they get (templates/sla_*.txt.j2, to agents only)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ticketd.daemon.sla.clock import Clock
from ticketd.daemon.sla.levels import current_tier
from ticketd.daemon.ticket_steps import ticket_view
from ticketd.storage.writes import TicketRow

if TYPE_CHECKING:
    from ticketd.daemon.commit import Commit
    from ticketd.daemon.config import Config


def send(commit: Commit, people: tuple[str, ...], name: str, ticket: TicketRow, subject: str,
         **values: object) -> None:
    """One outbox row per address, in the transaction of the step that decided it."""
    from ticketd.daemon.notices import sla_draft

    view = ticket_view(ticket)
    for address in people:
        commit._outbound_row(ticket, sla_draft(commit.config, address, name, view, subject, **values))


def owners(config: Config, clock: Clock) -> tuple[str, ...]:
    """The assignee, else the agents the ticket's queue notifies; and the people of the tier it is escalated to.

    Only agents (their mail may be signed); each once.
    """
    team = config.team
    if team is None:
        return ()
    agent = team.agent_by_address(clock.assignee) if clock.assignee else None
    people = (agent.address,) if agent is not None else team.recipients(clock.queue)
    tier = current_tier(config.sla.escalation, clock.level)
    return tuple(dict.fromkeys((*people, *(tier.recipients if tier is not None else ()))))


def duration(span: timedelta) -> str:
    from ticketd.daemon.notices import duration as words

    return words(span)


def when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def words(target: str) -> str:
    return target.replace("_", " ")
