"""Retention: the bytes of tickets closed long ago go; the tickets, their text and their history stay.

What goes, for a ticket closed (and still closed) before the cutoff: the raw inbound messages
of its mail (inbound_raw), its attachments' contents (attachment_content), and the stored copy
of the mail we sent for it once delivered (outbound_message.raw_bytes, emptied: a relayed
agent reply carries the agent's attachments), likewise the bodies of its delivered or failed
webhook events (webhook_delivery.body: subject and addresses). What stays: the ticket, its articles' text and
html, the attachments' names, types, sizes and hashes, the inbound rows (Message-ID, hash:
duplicates are still recognised), the events. Held messages (quarantined or rejected) are
the quarantine's business and are never touched here; nor is mail still waiting to be sent.

Each ticket so stripped gets a ``raw_removed`` event with what went. That event is also the
mark: a ticket is taken again only if it was closed again after it (a reopened ticket's new
mail). Finding the tickets is a read (keyset by id over ticket(status)); each batch of them is
then stripped in one short write transaction.
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ticketd.storage import bulk
from ticketd.storage.models import Event, InboundStatus, OutboundStatus, Ticket, WebhookStatus

CLOSED = "closed"  # daemon.lifecycle.CLOSED; storage does not import the daemon
EVENT = "raw_removed"
PRUNED_STATUSES = (InboundStatus.PROCESSED, InboundStatus.DUPLICATE)
CHUNK = 500  # ids per IN list: far below SQLite's and PostgreSQL's limits on parameters

_EVENTS = bulk.Table(Event, ["ticket_id", "what", "detail", "at", "who"])
_CLOSED_AT = "coalesce(t.closed_at, t.updated_at)"  # closed before closed_at existed: its last change


@dataclass
class Removed:
    """What one pass removed; per ticket for the events, in total for the log."""

    tickets: int = 0
    raw_messages: int = 0
    attachments: int = 0
    outbound: int = 0
    by_ticket: dict[int, dict[str, int]] = field(default_factory=dict)

    def add(self, other: Removed) -> None:
        self.tickets += other.tickets
        self.raw_messages += other.raw_messages
        self.attachments += other.attachments
        self.outbound += other.outbound

    def as_dict(self) -> dict[str, int]:
        return {"tickets": self.tickets, "raw_messages": self.raw_messages, "attachments": self.attachments,
                "outbound": self.outbound}


def _db_time(value: datetime) -> Any:
    return Ticket._meta.fields_map["closed_at"].to_db_value(value, None)


async def due_tickets(cutoff: datetime, after_id: int, limit: int) -> list[int]:
    """Ids past ``after_id`` of tickets closed before ``cutoff`` and not stripped since their closing."""
    rows = await bulk.fetch(
        f"SELECT t.id FROM ticket t WHERE t.status = ? AND t.id > ? AND {_CLOSED_AT} < ? "
        f"AND NOT EXISTS (SELECT 1 FROM event e WHERE e.ticket_id = t.id AND e.what = ? AND e.at >= {_CLOSED_AT}) "
        f"ORDER BY t.id LIMIT {int(limit)}", [CLOSED, after_id, _db_time(cutoff), EVENT])
    return [int(r[0]) for r in rows]


async def strip(ticket_ids: list[int], cutoff: datetime, now: datetime, days: int) -> Removed:
    """Remove the bytes of these tickets, in the caller's transaction; each still closed is checked again
    (a reply may have reopened it since it was found)."""
    ids = await _still_closed(ticket_ids, cutoff)
    removed = Removed(tickets=len(ids))
    if not ids:
        return removed
    tally: dict[str, Tally[int]] = {}
    tally["raw_messages"] = await _delete("inbound_raw", "inbound_id", await _raw_messages(ids))
    tally["attachments"] = await _delete("attachment_content", "attachment_id", await _attachments(ids))
    tally["outbound"] = await _empty_outbound(ids)
    await _empty_webhooks(ids)  # not tallied: the event's detail counts mail (its keys are an interface)
    for what, counts in tally.items():
        setattr(removed, what, sum(counts.values()))
    removed.by_ticket = {t: {what: counts[t] for what, counts in tally.items()} for t in ids}
    await _EVENTS.insert({"ticket_id": t, "what": EVENT, "at": now, "who": "system",
                          "detail": {"reason": f"closed more than {days} day(s) ago: raw mail and attachment "
                                               "contents removed", **removed.by_ticket[t]}} for t in ids)
    return removed


def _chunks(values: list[Any]) -> list[list[Any]]:
    return [values[i:i + CHUNK] for i in range(0, len(values), CHUNK)]


async def _still_closed(ticket_ids: list[int], cutoff: datetime) -> list[int]:
    found: list[int] = []
    for part in _chunks(ticket_ids):
        rows = await bulk.fetch(f"SELECT t.id FROM ticket t WHERE t.id IN ({bulk.marks(len(part))}) "
                                f"AND t.status = ? AND {_CLOSED_AT} < ?", [*part, CLOSED, _db_time(cutoff)])
        found += [int(r[0]) for r in rows]
    return sorted(found)


async def _raw_messages(ids: list[int]) -> list[tuple[int, int]]:
    """(inbound id, ticket id) of the tickets' stored messages, unless an article of another
    ticket came from the same message (that ticket may still be open)."""
    found: list[tuple[int, int]] = []
    for part in _chunks(ids):
        marks = bulk.marks(len(part))
        found += [(int(r[0]), int(r[1])) for r in await bulk.fetch(
            f"SELECT m.id, m.ticket_id FROM inbound_message m JOIN inbound_raw r ON r.inbound_id = m.id "
            f"WHERE m.ticket_id IN ({marks}) AND m.status IN (?, ?) AND NOT EXISTS (SELECT 1 FROM article a "
            f"WHERE a.inbound_id = m.id AND a.ticket_id NOT IN ({marks}))", [*part, *PRUNED_STATUSES, *part])]
    return found


async def _attachments(ids: list[int]) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    for part in _chunks(ids):
        found += [(int(r[0]), int(r[1])) for r in await bulk.fetch(
            "SELECT c.attachment_id, a.ticket_id FROM attachment_content c JOIN attachment x ON x.id = c.attachment_id "
            f"JOIN article a ON a.id = x.article_id WHERE a.ticket_id IN ({bulk.marks(len(part))})", part)]
    return found


async def _delete(table: str, key: str, found: list[tuple[int, int]]) -> Tally[int]:
    for part in _chunks([row_id for row_id, _ in found]):
        await bulk.execute(f'DELETE FROM "{table}" WHERE "{key}" IN ({bulk.marks(len(part))})', part)
    return Tally(ticket for _, ticket in found)


async def _empty_outbound(ids: list[int]) -> Tally[int]:
    """Empty the stored copies of the tickets' delivered (or given up) mail; pending mail is still to send."""
    tally: Tally[int] = Tally()
    for part in _chunks(ids):
        rows = await bulk.fetch(f"SELECT id, ticket_id FROM outbound_message WHERE ticket_id IN "
                                f"({bulk.marks(len(part))}) AND status <> ? AND length(raw_bytes) > 0",
                                [*part, OutboundStatus.PENDING])
        for chunk in _chunks([int(r[0]) for r in rows]):
            await bulk.execute(f"UPDATE outbound_message SET raw_bytes = ? WHERE id IN ({bulk.marks(len(chunk))})",
                               [b"", *chunk])
        tally.update(int(r[1]) for r in rows)
    return tally


async def _empty_webhooks(ids: list[int]) -> None:
    """Empty the bodies of the tickets' webhook events that are done; a pending one is still to POST."""
    for part in _chunks(ids):
        await bulk.execute(f"UPDATE webhook_delivery SET body = '' WHERE ticket_id IN ({bulk.marks(len(part))}) "
                           "AND status <> ? AND body <> ''", [*part, WebhookStatus.PENDING])
