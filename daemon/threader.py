"""Decide whether a message continues an existing ticket or opens a new one.

``Threads`` answers for a whole commit group: it reads what the group's messages refer to
in a few queries up front, then decides message by message in memory, seeing what earlier
messages of the same group added (a reply may arrive in the same group as its question).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.storage import bulk
from ticketd.storage.writes import TicketRow, load_tickets

_TAG = re.compile(r"\[#(\d{1,18})\]")
# A reply's nearest ancestors are what thread it; a hostile References header of thousands
# of IDs must not turn into thousands of lookups.
MAX_REFERENCES = 100


@dataclass(frozen=True)
class ThreadMatch:
    ticket: TicketRow
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
    return list(seen)[:MAX_REFERENCES]


def sender_addresses(message: ParsedMessage) -> set[str]:
    # From only: Reply-To costs a stranger nothing to set to the requester's address.
    return {message.from_.email.lower()} if message.from_ and message.from_.email else set()


class Threads:
    """Threading lookups for one group of messages; ``add_*`` keep it current as it commits."""

    def __init__(self) -> None:
        self.articles: dict[str, int] = {}  # message id -> ticket id (inbound articles)
        self.outbound: dict[str, int] = {}  # message id -> ticket id (mail we sent)
        self.tickets: dict[int, TicketRow] = {}
        self.numbers: dict[int, int] = {}  # ticket number -> ticket id
        self.people: set[tuple[int, str]] = set()  # (ticket id, participant address)

    async def load(self, messages: list[ParsedMessage]) -> None:
        """Everything ``find`` may need for these messages, in four queries at most."""
        refs = sorted({mid for m in messages for mid in referenced_ids(m)})
        tags = {n for m in messages for n in subject_tags(m.subject)}
        if refs:
            for mid, ticket_id in await bulk.fetch(
                    f"SELECT message_id, ticket_id FROM article WHERE message_id IN ({bulk.marks(len(refs))})", refs):
                self.articles[mid] = min(int(ticket_id), self.articles.get(mid, int(ticket_id)))
            # Most replies quote a customer's message; only the others need what we sent.
            rest = sorted({mid for m in messages if not any(r in self.articles for r in referenced_ids(m))
                           for mid in referenced_ids(m)})
            if rest:
                for mid, ticket_id in await bulk.fetch(
                        f"SELECT message_id, ticket_id FROM outbound_message WHERE ticket_id IS NOT NULL "
                        f"AND message_id IN ({bulk.marks(len(rest))})", rest):
                    self.outbound[mid] = min(int(ticket_id), self.outbound.get(mid, int(ticket_id)))
        ids = {*self.articles.values(), *self.outbound.values()}
        for ticket in await load_tickets(ids, tags):
            self.add_ticket(ticket)
        tagged = [self.numbers[n] for n in tags if n in self.numbers]
        senders = sorted({a for m in messages for a in sender_addresses(m)})
        if tagged and senders:
            for ticket_id, email in await bulk.fetch(
                    f"SELECT ticket_id, email FROM participant WHERE ticket_id IN ({bulk.marks(len(tagged))}) "
                    f"AND email IN ({bulk.marks(len(senders))})", [*tagged, *senders]):
                self.people.add((int(ticket_id), email))

    def find(self, message: ParsedMessage) -> ThreadMatch | None:
        """References first (hard to forge), then a subject tag from a known participant."""
        ids = referenced_ids(message)
        for known in (self.articles, self.outbound):  # the nearest referenced message wins
            hit = next((known[mid] for mid in ids if mid in known), None)
            if hit is not None and hit in self.tickets:
                return ThreadMatch(self.tickets[hit], "references")
        senders = sender_addresses(message)
        for number in subject_tags(message.subject):
            ticket = self.tickets.get(self.numbers.get(number, -1))
            if ticket is not None and self._is_participant(ticket, senders):
                return ThreadMatch(ticket, "subject-tag")
        return None

    def _is_participant(self, ticket: TicketRow, addresses: set[str]) -> bool:
        return ticket.requester.lower() in addresses or any((ticket.id, a) in self.people for a in addresses)

    def add_ticket(self, ticket: TicketRow) -> None:
        self.tickets[ticket.id] = ticket
        self.numbers[ticket.number] = ticket.id

    def add_article(self, message_id: str, ticket_id: int) -> None:
        if message_id:
            self.articles.setdefault(message_id, ticket_id)

    def add_outbound(self, message_id: str, ticket_id: int) -> None:
        self.outbound.setdefault(message_id, ticket_id)

    def add_participants(self, ticket_id: int, emails: set[str]) -> None:
        self.people |= {(ticket_id, e) for e in emails}
