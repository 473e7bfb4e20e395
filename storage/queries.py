"""Read-only views for the CLI, as plain JSON-ready dicts."""

from __future__ import annotations

from typing import Any

from tortoise.functions import Count

from storage.models import Article, InboundMessage, InboundStatus, Ticket


def _ticket_dict(t: Ticket, article_count: int) -> dict[str, Any]:
    return {
        "number": t.number, "subject": t.subject, "status": t.status, "priority": t.priority,
        "category": t.category, "queue": t.queue, "requester": t.requester,
        "requester_name": t.requester_name, "mailbox": t.mailbox,
        "created_at": t.created_at.isoformat(), "updated_at": t.updated_at.isoformat(),
        "article_count": article_count, "fired_rules": t.fired_rules, "tags": t.tags,
    }


async def ticket_list(limit: int | None = None) -> list[dict[str, Any]]:
    query = Ticket.annotate(article_count=Count("articles")).order_by("-number")
    if limit:
        query = query.limit(limit)
    return [_ticket_dict(t, t.article_count) for t in await query]  # type: ignore[attr-defined]


async def ticket_detail(number: int) -> dict[str, Any] | None:
    ticket = await Ticket.get_or_none(number=number)
    if ticket is None:
        return None
    articles = await Article.filter(ticket=ticket).order_by("id").prefetch_related("attachments")
    result = _ticket_dict(ticket, len(articles))
    result["articles"] = [{
        "direction": a.direction, "from": a.sender, "to": a.to, "cc": a.cc, "subject": a.subject,
        "date": a.date.isoformat() if a.date else None, "message_id": a.message_id, "text": a.text,
        "internal": a.internal,
        "attachments": [{"filename": x.filename, "content_type": x.content_type, "size": x.size,
                         "sha256": x.sha256} for x in a.attachments],
    } for a in articles]
    return result


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
