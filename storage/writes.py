"""One commit group's writes, collected in memory and written by one INSERT per table.

The pipeline decides message by message; nothing it decides needs a row read back, because
the ids of new tickets, articles and attachments are picked here (``bulk.Ids``). What the
group has written so far is visible to the next message through the group's own maps
(``daemon.threader.Threads``), not through the database.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ticketd.storage import bulk
from ticketd.storage.models import (Article, Attachment, AttachmentContent, DueStep, Event, OutboundMessage,
                            OutboundStatus, Participant, Ticket)

TICKET_COLUMNS = ("id", "number", "subject", "status", "priority", "category", "queue", "requester",
                  "requester_name", "tags")


@dataclass
class TicketRow:
    """The part of a ticket the pipeline reads and changes."""

    id: int
    number: int
    subject: str
    status: str
    priority: str
    category: str
    queue: str
    requester: str
    requester_name: str
    tags: list[str] = field(default_factory=list)


def _ticket(row: Any) -> TicketRow:
    tags = row[9]
    return TicketRow(int(row[0]), int(row[1]), row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                     list(json.loads(tags) if isinstance(tags, str) else tags or []))


async def load_tickets(ids: set[int], numbers: set[int]) -> list[TicketRow]:
    """Tickets by id or by number, in one query."""
    if not ids and not numbers:
        return []
    where = " OR ".join(filter(None, [f"id IN ({bulk.marks(len(ids))})" if ids else "",
                                      f"number IN ({bulk.marks(len(numbers))})" if numbers else ""]))
    columns = ", ".join(TICKET_COLUMNS)
    return [_ticket(r) for r in await bulk.fetch(f"SELECT {columns} FROM ticket WHERE {where}",
                                                 [*sorted(ids), *sorted(numbers)])]


_TICKETS = bulk.Table(Ticket, ["id", "number", "subject", "status", "priority", "category", "queue", "mailbox",
                               "requester", "requester_name", "assignee", "fired_rules", "tags", "created_at",
                               "updated_at", "first_response_at", "solved_at", "closed_at", "reopen_count", "csat",
                               "linked_to", "agent_replies"])
_ARTICLES = bulk.Table(Article, ["id", "ticket_id", "inbound_id", "direction", "sender", "to", "cc", "subject",
                                 "message_id", "in_reply_to", "references", "date", "text", "html", "internal",
                                 "created_at", "author", "new_text"])
_ATTACHMENTS = bulk.Table(Attachment, ["id", "article_id", "filename", "content_type", "size", "sha256",
                                       "content_id", "inline"])
_CONTENTS = bulk.Table(AttachmentContent, ["attachment_id", "content"])
_PARTICIPANTS = bulk.Table(Participant, ["ticket_id", "email", "following"], conflict='"ticket_id", "email"')
_EVENTS = bulk.Table(Event, ["ticket_id", "what", "detail", "at", "who"])
_STEPS = bulk.Table(DueStep, ["ticket_id", "kind", "due_at", "created_at"])
_OUTBOUND = bulk.Table(OutboundMessage, ["ticket_id", "kind", "message_id", "mail_from", "recipients", "recipient",
                                         "automatic", "status", "attempts", "next_try_at", "last_error",
                                         "created_at", "sent_at", "raw_bytes"])


class EventHook(Protocol):
    """Writes rows of its own for some events, in the group's transaction (daemon.responders.webhook)."""

    def wants(self, what: str, detail: dict[str, Any]) -> bool: ...

    async def write(self, events: list[tuple[int, str, dict[str, Any], str]], now: datetime) -> None: ...


class GroupWrites:
    """Rows to write at the end of one commit group (or earlier, by ``flush``)."""

    def __init__(self, now: datetime, hook: EventHook | None = None) -> None:
        self.now = now
        self.hook = hook
        self._hooked: list[tuple[int, str, dict[str, Any], str]] = []  # events the hook wants, in order
        self.ids = bulk.Ids()
        self._rows: dict[bulk.Table, list[dict[str, Any]]] = {}
        self._tags: dict[int, list[str]] = {}  # ticket id -> new tags of an existing ticket
        # (ticket id, kind prefix) -> the (kind, due_at) steps that replace its undone ones of those kinds
        self._steps: dict[tuple[int, str], list[tuple[str, datetime]]] = {}

    def _add(self, table: bulk.Table, row: dict[str, Any]) -> None:
        self._rows.setdefault(table, []).append(row)

    async def ticket(self, number: int, **values: Any) -> TicketRow:
        ticket_id = await self.ids.take("ticket")
        row = {"id": ticket_id, "number": number, "status": "new", "assignee": None, "created_at": self.now,
               "updated_at": self.now, "first_response_at": None, "solved_at": None, "closed_at": None,
               "reopen_count": 0, "csat": None, "linked_to": None, "agent_replies": 0, **values}
        self._add(_TICKETS, row)
        return TicketRow(ticket_id, number, row["subject"], "new", row["priority"], row["category"],
                         row["queue"], row["requester"], row["requester_name"], list(row["tags"]))

    async def article(self, values: dict[str, Any], attachments: list[Any]) -> int:
        """Queue an article; ``values`` may say its "author" ("customer", "agent", "system") and
        "new_text" (what the writer added, quoted history and signature removed)."""
        article_id = await self.ids.take("article")
        self._add(_ARTICLES, {"id": article_id, "created_at": self.now, "author": "customer", "new_text": "",
                              **values})
        for item in attachments:
            attachment_id = await self.ids.take("attachment")
            self._add(_ATTACHMENTS, {
                "id": attachment_id, "article_id": article_id, "filename": item.filename,
                "content_type": item.content_type, "size": item.size,
                "sha256": hashlib.sha256(item.content).hexdigest(), "content_id": item.content_id,
                "inline": item.inline})
            self._add(_CONTENTS, {"attachment_id": attachment_id, "content": item.content})
        return article_id

    def participants(self, ticket_id: int, emails: set[str]) -> None:
        """New participants follow the ticket (get relayed agent replies); a known one keeps its choice."""
        for email in sorted(emails):
            self._add(_PARTICIPANTS, {"ticket_id": ticket_id, "email": email, "following": True})

    def event(self, ticket_id: int, what: str, detail: dict[str, Any], who: str = "") -> None:
        """``who``: the agent's or customer's address, or "system"; "" where nobody in particular."""
        self._add(_EVENTS, {"ticket_id": ticket_id, "what": what, "detail": detail, "at": self.now, "who": who})
        if self.hook is not None and self.hook.wants(what, detail):
            self._hooked.append((ticket_id, what, detail, who))

    def outbound(self, **values: Any) -> None:
        self._add(_OUTBOUND, {"status": OutboundStatus.PENDING, "attempts": 0, "last_error": "",
                              "next_try_at": self.now, "created_at": self.now, "sent_at": None, **values})

    def tags(self, ticket: TicketRow) -> None:
        self._tags[ticket.id] = list(ticket.tags)

    def due_steps(self, ticket_id: int, prefix: str, steps: list[tuple[str, datetime]]) -> None:
        """Replace the ticket's undone due steps of kinds starting with ``prefix`` by ``steps``.

        The latest call for a ticket wins: it was computed from everything before it.
        """
        self._steps[(ticket_id, prefix)] = steps

    async def flush(self) -> None:
        """Write everything collected so far, parents before children."""
        for table in (_TICKETS, _ARTICLES, _ATTACHMENTS, _CONTENTS, _PARTICIPANTS, _EVENTS, _OUTBOUND):
            rows = self._rows.pop(table, None)
            if rows:
                await table.insert(rows)
        if self._hooked and self.hook is not None:  # after the tickets: it reads them as this group leaves them
            hooked, self._hooked = self._hooked, []
            await self.hook.write(hooked, self.now)
        if self._tags:
            tags = Ticket._meta.fields_map["tags"]
            await bulk.execute_many("UPDATE ticket SET tags = ?, updated_at = ? WHERE id = ?",
                                    [[tags.to_db_value(t, None), self.now, i] for i, t in self._tags.items()], [True])
            self._tags = {}
        if self._steps:
            await self._replace_steps()

    async def _replace_steps(self) -> None:
        """One UPDATE per kind prefix cancels the undone steps, one INSERT writes the new ones."""
        steps, self._steps = self._steps, {}
        done_at = DueStep._meta.fields_map["done_at"].to_db_value(self.now, None)
        for prefix in sorted({p for _, p in steps}):
            ids = sorted(t for t, p in steps if p == prefix)
            await bulk.execute(f"UPDATE due_step SET done_at = ? WHERE {bulk.unindexed('done_at')} IS NULL "
                               f"AND substr(kind, 1, ?) = ? AND ticket_id IN ({bulk.marks(len(ids))})",
                               [done_at, len(prefix), prefix, *ids])
        rows = [{"ticket_id": t, "kind": kind, "due_at": due_at, "created_at": self.now}
                for (t, _), new in steps.items() for kind, due_at in new]
        if rows:
            await _STEPS.insert(rows)
