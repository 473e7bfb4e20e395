"""webhook: each ticket event a [[webhooks]] table asks for becomes a delivery row, in the event's transaction.

It watches the events a commit group writes (storage.writes.GroupWrites calls ``wants`` for
each, and ``write`` when the group flushes), so every way a ticket changes (a mail, an agent's
reply, the scheduler's SLA steps and auto-solve) is covered by the one place that records it.
The rows commit with the event or not at all: an event is delivered if and only if it
happened, and a group retried after a rollback writes its rows again only once.
daemon.webhook_sender POSTs them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ticketd.daemon import webhook_format
from ticketd.daemon.config_webhooks import WebhookConfig
from ticketd.storage import bulk
from ticketd.storage.models import WebhookDelivery, WebhookStatus

EXCERPT = 500  # characters of a text in the payload (include_text = true only)

# Stored event (what) -> webhook event; "status_changed" counts only when it is to solved.
_KINDS = {"created": "created", "agent_reply": "agent_reply", "escalated": "escalated", "sla_breach": "breached",
          "status_changed": "solved", "csat": "csat"}
_TICKET = ("id", "number", "subject", "status", "priority", "queue", "requester", "assignee")
_ROWS = bulk.Table(WebhookDelivery, ["webhook", "event", "event_id", "ticket_id", "body", "status", "attempts",
                                     "next_try_at", "created_at", "last_error"])

Stored = tuple[int, str, dict[str, Any], str]  # (ticket id, what, detail, who) as GroupWrites.event got them


class Webhook:
    name = "webhook"
    description = "POST each ticket event a [[webhooks]] table asks for, through the webhook_delivery table"

    def __init__(self, hooks: tuple[WebhookConfig, ...]) -> None:
        self.hooks = hooks
        self.kinds = {kind for hook in hooks for kind in hook.events}
        self.wrote = False  # rows were written since the pipeline last looked (it wakes the sender)

    def wants(self, what: str, detail: dict[str, Any]) -> bool:
        """Whether a stored event may be one some webhook is sent (queues are looked at in ``write``)."""
        return event_kind(what, detail) in self.kinds

    async def write(self, events: list[Stored], now: datetime) -> None:
        """The delivery rows of ``events``, in their order; the tickets as this group leaves them."""
        tickets = await _tickets({e[0] for e in events})
        texts = await _texts(events) if any(h.include_text for h in self.hooks) else {}
        rows = []
        for ticket_id, what, detail, who in events:
            kind, ticket = event_kind(what, detail), tickets.get(ticket_id)
            if kind is None or ticket is None:
                continue
            event_id = str(uuid.uuid4())  # the same for every webhook told of this event
            for hook in self.hooks:
                if hook.wants(kind, ticket["queue"]):
                    payload = event_payload(kind, event_id, ticket, detail, who, now,
                                            texts if hook.include_text else None)
                    rows.append({"webhook": hook.name, "event": kind, "event_id": payload["id"],
                                 "ticket_id": ticket_id, "body": webhook_format.body(hook.format, payload),
                                 "status": WebhookStatus.PENDING, "attempts": 0, "next_try_at": now,
                                 "created_at": now, "last_error": ""})
        if rows:
            await _ROWS.insert(rows)
            self.wrote = True


def event_kind(what: str, detail: dict[str, Any]) -> str | None:
    kind = _KINDS.get(what)
    if kind == "solved" and detail.get("to") != "solved":
        return None
    return kind


def event_payload(kind: str, event_id: str, ticket: dict[str, Any], detail: dict[str, Any], who: str,
                  now: datetime, texts: dict[int, str] | None) -> dict[str, Any]:
    """Our JSON for one event; "id" is the receiver's key to drop a copy (README "Webhooks")."""
    view = {k: ticket[k] for k in _TICKET[1:]}
    return {"event": kind, "id": event_id, "occurred_at": now.isoformat(), "ticket": view,
            "detail": _detail(kind, detail, who, texts)}


def _detail(kind: str, detail: dict[str, Any], who: str, texts: dict[int, str] | None) -> dict[str, Any]:
    """What the event adds; customer text (a mail, a CSAT comment) only with ``texts`` (include_text)."""
    out: dict[str, Any] = {}
    if kind == "agent_reply":
        out = {"agent": who, "relayed": bool(detail.get("relayed"))}
    elif kind == "escalated":
        out = {k: detail[k] for k in ("tier", "level", "reason", "target", "trigger") if k in detail}
    elif kind == "breached":
        out = {k: detail[k] for k in ("target", "due") if k in detail}
    elif kind == "solved":
        out = {"by": who}
    elif kind == "csat":
        out = {"rating": detail.get("rating")}
        if texts is not None:  # include_text: the comment is customer text like a mail's
            out["comment"] = str(detail.get("comment", ""))[:EXCERPT]
    article = detail.get("article")
    if texts is not None and isinstance(article, int) and article in texts:
        out["text"] = texts[article]
    return out


async def _tickets(ids: set[int]) -> dict[int, dict[str, Any]]:
    rows = await bulk.fetch(f"SELECT {', '.join(_TICKET)} FROM ticket WHERE id IN ({bulk.marks(len(ids))})",
                            sorted(ids))
    return {int(r[0]): {name: r[i] for i, name in enumerate(_TICKET)} | {"number": int(r[1])} for r in rows}


async def _texts(events: list[Stored]) -> dict[int, str]:
    """The new text (no quote, no signature) of the events' articles, cut to EXCERPT."""
    ids = sorted({a for _, _, d, _ in events if isinstance(a := d.get("article"), int)})
    if not ids:
        return {}
    rows = await bulk.fetch(f"SELECT id, new_text, text FROM article WHERE id IN ({bulk.marks(len(ids))})", ids)
    return {int(i): (new or text or "").strip()[:EXCERPT] for i, new, text in rows}
