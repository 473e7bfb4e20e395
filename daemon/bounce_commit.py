"""A delivery failure inside a commit group: attach it to the ticket whose mail bounced.

Bounces are rare, so this path keeps the ORM's clarity; the group's own writes are flushed
before it runs, so it sees tickets and outbound rows written earlier in the same group.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ticketd.daemon import verp
from ticketd.daemon.filters import Decision
from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.storage.models import Article, InboundMessage, InboundStatus, OutboundMessage, OutboundStatus, Suppression
from ticketd.storage.writes import TicketRow, load_tickets

if TYPE_CHECKING:
    from ticketd.daemon.commit import Commit, Outcome

log = logging.getLogger("ticketd.pipeline")


async def record_bounce(commit: Commit, row: InboundMessage, msg: ParsedMessage, decision: Decision) -> Outcome:
    """Attach the bounce as an internal article; never a new ticket. Suppress only on proof."""
    from ticketd.daemon.commit import Outcome

    info: dict[str, Any] = decision.detail("bounce")["bounce"]
    original = info.get("original_message_id", "")
    sent = await OutboundMessage.filter(message_id=original).first() if original else None
    ticket = await _bounced_ticket(original, sent)
    if ticket is None:
        return commit._hold(row, InboundStatus.QUARANTINED,
                            f"bounce for a message we did not send: {info.get('status', '')} "
                            f"{', '.join(info.get('recipients', []))}".strip())
    suppressed, why = await _suppression(commit, msg, decision, info, sent)
    outcome = f"suppressed {', '.join(suppressed)}: {why}" if suppressed else f"suppressed nothing: {why}"
    article = await commit.article(ticket, row, msg, internal=True, author="system")
    if "bounced" not in ticket.tags:
        ticket.tags = [*ticket.tags, "bounced"]
        commit.writes.tags(ticket)
    commit.writes.event(ticket.id, "bounce", {"article": article, **info, "suppressed": suppressed,
                                              "suppression": outcome})
    if sent is not None:  # a bounce never cancels a delivery still queued
        await OutboundMessage.filter(id=sent.id).exclude(status=OutboundStatus.PENDING).update(
            status=OutboundStatus.BOUNCED, last_error=(info.get("diagnostic") or info.get("status", ""))[:2000])
    row.status, row.ticket_id = InboundStatus.PROCESSED, ticket.id
    log.warning("bounce %s for ticket #%d: %s %s; %s", msg.message_id, ticket.number, info.get("status"),
                ", ".join(info.get("recipients", [])), outcome)
    return Outcome(row.id, row.status, ticket.number)


async def _suppression(commit: Commit, msg: ParsedMessage, decision: Decision, info: dict[str, Any],
                       sent: OutboundMessage | None) -> tuple[list[str], str]:
    if sent is None:
        return [], "the bounced message is not in our outbox"
    if not info.get("permanent"):
        return [], "not a permanent failure"
    # Every customer gets our Message-IDs, so citing one proves nothing: only a DSN sent to
    # the signed return address of that very message may silence anyone.
    smtp = commit.config.smtp
    proven, why = verp.proof(msg.headers, smtp.envelope_from, smtp.bounce_key, sent.message_id)
    if not proven:
        return [], why
    ours = {r.lower() for r in sent.recipients}  # and only addresses we really wrote to
    suppressed = sorted({a.lower() for a in info.get("recipients", []) if a.lower() in ours})
    await _suppress(commit, suppressed, int(decision.detail("bounce").get("suppress_days", 60)), info)
    return suppressed, why if suppressed else "it names no recipient of the bounced message"


async def _suppress(commit: Commit, addresses: list[str], days: int, info: dict[str, Any]) -> None:
    until = commit.now + timedelta(days=days)
    reason = f"bounced permanently: {info.get('status', '')} {info.get('diagnostic', '')}".strip()
    for address in {a.lower() for a in addresses if a}:
        updated = await Suppression.filter(address=address).update(until=until, reason=reason[:2000])
        if not updated:
            await Suppression.create(address=address, until=until, reason=reason[:2000])
        commit.suppressed.add(address)


async def _bounced_ticket(original: str, sent: OutboundMessage | None) -> TicketRow | None:
    if sent is not None and sent.ticket_id is not None:
        ticket_id = sent.ticket_id
    else:
        article = await Article.filter(message_id=original).first() if original else None
        if article is None:
            return None
        ticket_id = article.ticket_id
    found = await load_tickets({ticket_id}, set())
    return found[0] if found else None
