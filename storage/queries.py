"""Read-only views for the CLI, as plain JSON-ready dicts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tortoise.functions import Count

from ticketd.storage import bulk
from ticketd.storage.models import Article, Event, InboundMessage, InboundStatus, Participant, Ticket


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _ticket_dict(t: Ticket, article_count: int) -> dict[str, Any]:
    return {
        "number": t.number, "subject": t.subject, "status": t.status, "priority": t.priority,
        "category": t.category, "queue": t.queue, "requester": t.requester,
        "requester_name": t.requester_name, "mailbox": t.mailbox, "assignee": t.assignee,
        "created_at": t.created_at.isoformat(), "updated_at": t.updated_at.isoformat(),
        "article_count": article_count, "fired_rules": t.fired_rules, "tags": t.tags,
    }


async def ticket_list(limit: int | None = None, status: str | None = None, queue: str | None = None,
                      assignee: str | None = None) -> list[dict[str, Any]]:
    """Tickets newest first; each filter given is an exact match (the assignee's address in any case).

    A status filter uses ticket(status), the index the open work is found by. Queue and
    assignee have none: this is a listing a person reads, not the hot path, and every ticket
    row is one more index page per new ticket there (see storage.legacy.REDUNDANT).
    """
    query = Ticket.annotate(article_count=Count("articles")).order_by("-number")
    if status is not None:
        query = query.filter(status=status)
    if queue is not None:
        query = query.filter(queue=queue)
    if assignee is not None:
        query = query.filter(assignee__iexact=assignee)
    if limit:
        query = query.limit(limit)
    return [_ticket_dict(t, t.article_count) for t in await query]  # type: ignore[attr-defined]


async def ticket_detail(number: int) -> dict[str, Any] | None:
    ticket = await Ticket.get_or_none(number=number)
    if ticket is None:
        return None
    articles = await Article.filter(ticket=ticket).order_by("id").prefetch_related("attachments")
    result = _ticket_dict(ticket, len(articles))
    stored = await _stored_attachments(ticket.id) if any(a.attachments for a in articles) else set()
    followers = await Participant.filter(ticket=ticket, following=True).values_list("email", flat=True)
    result.update(
        csat=ticket.csat, first_response_at=_iso(ticket.first_response_at), solved_at=_iso(ticket.solved_at),
        closed_at=_iso(ticket.closed_at), reopen_count=ticket.reopen_count, agent_replies=ticket.agent_replies,
        linked_to=ticket.linked_to, followers=sorted(set(followers) - {ticket.requester}))
    result["articles"] = [{
        "id": a.id, "direction": a.direction, "author": a.author, "from": a.sender, "to": a.to, "cc": a.cc,
        "subject": a.subject, "date": _iso(a.date), "created_at": a.created_at.isoformat(),
        "message_id": a.message_id, "internal": a.internal,
        # Articles stored before new_text existed have none: all of their text is what they say.
        "new_text": a.new_text or a.text, "text": a.text,
        # content_removed: retention (storage.retention) took the bytes; the description stays.
        "attachments": [{"filename": x.filename, "content_type": x.content_type, "size": x.size,
                         "sha256": x.sha256, "content_removed": x.id not in stored} for x in a.attachments],
    } for a in articles]
    # In time order; the id breaks ties (one commit group writes its events at one time).
    result["events"] = [{"what": e.what, "who": e.who, "at": e.at.isoformat(), "detail": e.detail}
                        for e in await Event.filter(ticket=ticket).order_by("at", "id")]
    return result


async def _stored_attachments(ticket_id: int) -> set[int]:
    """Ids of the ticket's attachments whose bytes are still stored (by a join: a ticket may have many)."""
    rows = await bulk.fetch("SELECT c.attachment_id FROM attachment_content c "
                            "JOIN attachment x ON x.id = c.attachment_id JOIN article a ON a.id = x.article_id "
                            "WHERE a.ticket_id = ?", [ticket_id])
    return {int(r[0]) for r in rows}


async def quarantine_list() -> list[dict[str, Any]]:
    rows = await InboundMessage.filter(status__in=(InboundStatus.QUARANTINED, InboundStatus.REJECTED)) \
        .order_by("id").only("id", "status", "mailbox_id", "uid", "message_id", "size", "reason", "received_at") \
        .prefetch_related("mailbox")
    return [{"id": r.id, "status": r.status, "mailbox": r.mailbox.name if r.mailbox else None, "uid": r.uid,
             "message_id": r.message_id, "size": r.size, "reason": r.reason,
             "received_at": r.received_at.isoformat()} for r in rows]


HELD = (InboundStatus.QUARANTINED, InboundStatus.REJECTED)


async def held_message(inbound_id: int) -> InboundMessage | None:
    return await InboundMessage.filter(id=inbound_id, status__in=HELD).prefetch_related("mailbox").first()


def held_detail(row: InboundMessage, headers: dict[str, str]) -> dict[str, Any]:
    return {"id": row.id, "status": row.status, "mailbox": row.mailbox.name if row.mailbox else None,
            "uid": row.uid, "message_id": row.message_id, "size": row.size, "reason": row.reason,
            "received_at": row.received_at.isoformat(), "truncated": row.truncated,
            "verdicts": row.verdicts, "headers": headers}


_INBOUND_FIELDS = ("id", "status", "mailbox_id", "uid", "uidvalidity", "message_id", "size", "reason",
                   "received_at", "processed_at", "ticket_id", "duplicate_of_id", "attempts", "truncated")


def _inbound_dict(row: InboundMessage, numbers: dict[int, int]) -> dict[str, Any]:
    return {"id": row.id, "mailbox": row.mailbox.name if row.mailbox else None, "uid": row.uid,
            "message_id": row.message_id, "status": row.status, "reason": row.reason,
            "ticket": numbers.get(row.ticket_id) if row.ticket_id else None,
            "duplicate_of": row.duplicate_of_id, "size": row.size, "attempts": row.attempts,
            "received_at": row.received_at.isoformat(),
            "processed_at": row.processed_at.isoformat() if row.processed_at else None}


async def _ticket_numbers(rows: list[InboundMessage]) -> dict[int, int]:
    ids = {r.ticket_id for r in rows if r.ticket_id}
    return dict(await Ticket.filter(id__in=ids).values_list("id", "number")) if ids else {}


async def inbound_list(status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Every inbound message's fate, newest first: ticket, duplicate, held (with its reason) or waiting."""
    query = InboundMessage.all() if status is None else InboundMessage.filter(status=status)
    query = query.order_by("-id").only(*_INBOUND_FIELDS).prefetch_related("mailbox")
    rows = await (query.limit(limit) if limit else query)
    numbers = await _ticket_numbers(rows)
    return [_inbound_dict(r, numbers) for r in rows]


async def inbound_row(inbound_id: int) -> InboundMessage | None:
    return await InboundMessage.filter(id=inbound_id).prefetch_related("mailbox").first()


async def inbound_detail(row: InboundMessage, headers: dict[str, str]) -> dict[str, Any]:
    result = _inbound_dict(row, await _ticket_numbers([row]))
    result.update(uidvalidity=row.uidvalidity, truncated=row.truncated, verdicts=row.verdicts, headers=headers)
    return result
