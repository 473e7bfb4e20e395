"""Decide whether a message continues an existing ticket or opens a new one."""

from __future__ import annotations

import re
from dataclasses import dataclass

from daemon.parsers.model import ParsedMessage
from storage.models import Article, OutboundMessage, Participant, Ticket

_TAG = re.compile(r"\[#(\d{1,18})\]")


@dataclass(frozen=True)
class ThreadMatch:
    ticket: Ticket
    how: str  # "references" | "subject-tag"


def subject_tags(subject: str) -> list[int]:
    """Ticket numbers tagged in a subject as [#N], in order of appearance."""
    return [int(n) for n in _TAG.findall(subject)]


def referenced_ids(message: ParsedMessage) -> list[str]:
    """Message-IDs this message answers, nearest first (In-Reply-To, then References backwards)."""
    seen: dict[str, None] = {}
    for mid in (*message.in_reply_to, *reversed(message.references)):
        if mid and mid != message.message_id:
            seen.setdefault(mid, None)
    return list(seen)


def sender_addresses(message: ParsedMessage) -> set[str]:
    # From only: Reply-To costs a stranger nothing to set to the requester's address.
    return {message.from_.email.lower()} if message.from_ and message.from_.email else set()


async def find_ticket(message: ParsedMessage) -> ThreadMatch | None:
    """References first (hard to forge), then a subject tag from a known participant."""
    ids = referenced_ids(message)
    if ids:
        ticket = await _by_message_ids(ids)
        if ticket is not None:
            return ThreadMatch(ticket, "references")
    for number in subject_tags(message.subject):
        ticket = await Ticket.get_or_none(number=number)
        if ticket is not None and await _is_participant(ticket, sender_addresses(message)):
            return ThreadMatch(ticket, "subject-tag")
    return None


async def _by_message_ids(ids: list[str]) -> Ticket | None:
    """The ticket of the nearest referenced message; our own outbound mail counts too."""
    order = {mid: i for i, mid in enumerate(ids)}
    hits = await Article.filter(message_id__in=ids).values_list("message_id", "ticket_id")
    if not hits:  # most replies quote a customer's message; only then look at what we sent
        hits = await OutboundMessage.filter(message_id__in=ids, ticket_id__isnull=False) \
            .values_list("message_id", "ticket_id")
    if not hits:
        return None
    _, ticket_id = min((order[mid], ticket_id) for mid, ticket_id in hits)
    return await Ticket.get_or_none(id=ticket_id)


async def _is_participant(ticket: Ticket, addresses: set[str]) -> bool:
    if ticket.requester.lower() in addresses:
        return True
    return await Participant.filter(ticket=ticket, email__in=sorted(addresses)).exists()
