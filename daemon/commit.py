"""The writes of one transaction: tickets, articles, outbox rows, and each row's outcome."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from tortoise.expressions import F

from daemon import verp
from daemon.addresses import is_own, is_valid
from daemon.dedup import Earlier, earlier_of, key, load_earlier, same_message
from daemon.filters import DEFER, QUARANTINE, REJECT, Decision
from daemon.outgoing import one_line
from daemon.parsers.model import ParsedMessage
from daemon.prepare import Prepared
from daemon.responders import Draft, ResponseContext, TicketView, Withheld
from daemon.responders.acknowledgement import reply_address
from daemon.rules import Classification, classify, match_articles
from daemon.threader import find_ticket
from storage.bulk import update_rows
from storage.models import (Article, Attachment, Counter, Event, InboundMessage, InboundStatus,
                            OutboundMessage, OutboundStatus, Participant, Suppression, Ticket)

if TYPE_CHECKING:
    from daemon.pipeline import Processor

log = logging.getLogger("ticketd.pipeline")

ROW_FIELDS = ["status", "reason", "attempts", "ticket_id", "duplicate_of_id", "processed_at", "verdicts"]


@dataclass(frozen=True)
class Outcome:
    """What became of one inbound row."""

    inbound_id: int
    status: str
    ticket_number: int | None = None
    new_ticket: bool = False
    outbound: int = 0
    reason: str = ""


class Commit:
    """One transaction's worth of rows; call ``run`` inside ``in_transaction()``."""

    def __init__(self, processor: Processor, mailbox: str) -> None:
        self.p = processor
        self.config = processor.config
        self.mailbox = mailbox
        self.now = processor.clock()
        self.events: list[Event] = []
        self.outbound: list[OutboundMessage] = []  # written together at the end
        self.seen: dict[str, list[Earlier]] = {}  # this transaction's new articles, by key
        self.numbers = _Numbers()
        self.recent: dict[str, int] = {}  # recipient -> automatic mails in the last hour
        self.suppressed: set[str] = set()

    async def run(self, rows: list[InboundMessage], prepared: list[Prepared]) -> list[Outcome]:
        claimed = await self._claim(rows)
        earlier = await load_earlier([r for r in rows if r.id in claimed])
        await self._load_limits(prepared)
        outcomes = [await self._one(row, item, earlier) if row.id in claimed else self._taken(row)
                    for row, item in zip(rows, prepared)]
        await self.numbers.save()
        if self.events:
            await Event.bulk_create(self.events)
        if self.outbound:
            await OutboundMessage.bulk_create(self.outbound)
        await update_rows([r for r, o in zip(rows, outcomes) if r.id in claimed and o.status != "deferred"],
                          ROW_FIELDS)
        return outcomes

    async def _claim(self, rows: list[InboundMessage]) -> set[int]:
        """The rows still "received" now, inside the write transaction.

        Another process (an `ingest` beside the daemon's sweep of piped rows) may have
        processed a row since we read it; the write lock held since BEGIN makes this check
        and our writes one step, so no row is ever processed twice.
        """
        current = await InboundMessage.filter(id__in=[r.id for r in rows]).values_list("id", "status", "ticket_id")
        claimed = set()
        for row_id, status, ticket_id in current:
            if status == InboundStatus.RECEIVED:
                claimed.add(row_id)
            else:
                row = next(r for r in rows if r.id == row_id)
                row.status, row.ticket_id = status, ticket_id
        return claimed

    def _taken(self, row: InboundMessage) -> Outcome:
        log.info("inbound %d was processed meanwhile by another process (%s)", row.id, row.status)
        return Outcome(row.id, row.status, reason="processed meanwhile by another process")

    async def _one(self, row: InboundMessage, item: Prepared, earlier: dict[str, list[Earlier]]) -> Outcome:
        row.processed_at, row.attempts = self.now, row.attempts + 1
        if isinstance(item.parsed, str):
            return self._hold(row, InboundStatus.QUARANTINED, item.parsed)
        candidates = [*self.seen.get(key(row), ()), *earlier.get(key(row), ())]
        first, how = same_message(row, item.parsed, candidates)
        if first is not None:
            row.status, row.ticket_id, row.duplicate_of_id = InboundStatus.DUPLICATE, first.ticket_id, first.id
            row.reason = f"duplicate of inbound {first.id}: {how}"
            log.info("inbound %d %s is a duplicate of inbound %d (%s)", row.id, key(row), first.id, how)
            return Outcome(row.id, row.status, reason=row.reason)
        decision = item.decision
        if decision is not None:
            row.verdicts = [[name, v.action, v.reason, v.details] for name, v in decision.verdicts]
            if decision.action == DEFER:
                log.info("inbound %d deferred: %s", row.id, decision.reason)
                return Outcome(row.id, "deferred", reason=decision.reason)
            if decision.action in (REJECT, QUARANTINE):
                status = InboundStatus.REJECTED if decision.action == REJECT else InboundStatus.QUARANTINED
                return self._hold(row, status, decision.reason)
            if decision.detail("bounce"):
                return await self._bounce(row, item.parsed, decision)
        outcome = await self._to_ticket(row, item.parsed, decision)
        self._collision(row, candidates)
        self.seen.setdefault(key(row), []).append(earlier_of(row, item.parsed))
        return outcome

    def _collision(self, row: InboundMessage, candidates: list[Earlier]) -> None:
        """A different message with a Message-ID we know: processed as its own, and noted."""
        others = sorted({c.id for c in candidates if c.message_id and c.message_id == row.message_id})
        if not others or row.ticket_id is None:
            return
        row.reason = (f"Message-ID {one_line(row.message_id, 200)} is also on inbound "
                      f"{', '.join(map(str, others))}, a different message: processed as its own")
        log.warning("inbound %d: %s", row.id, row.reason)
        self.events.append(Event(ticket_id=row.ticket_id, what="message_id_collision",
                                 detail={"inbound": row.id, "also_on": others, "message_id": row.message_id}))

    def _hold(self, row: InboundMessage, status: str, reason: str) -> Outcome:
        row.status, row.reason = status, reason[:2000]
        log.warning("inbound %d %s: %s", row.id, status, reason)
        return Outcome(row.id, status, reason=reason)

    async def _load_limits(self, prepared: list[Prepared]) -> None:
        """Recent automatic mail and suppressed addresses of this group's senders, in two queries."""
        people = {reply_address(p.parsed).lower() for p in prepared if not isinstance(p.parsed, str)} - {""}
        if not people:
            return
        since = self.now - timedelta(hours=1)
        for recipient in await OutboundMessage.filter(recipient__in=people, automatic=True,
                                                      created_at__gte=since).values_list("recipient", flat=True):
            self.recent[recipient] = self.recent.get(recipient, 0) + 1
        self.suppressed = set(await Suppression.filter(address__in=people, until__gt=self.now)
                              .values_list("address", flat=True))

    async def _to_ticket(self, row: InboundMessage, msg: ParsedMessage, decision: Decision | None) -> Outcome:
        match = await find_ticket(msg)
        if match is None:
            rules = classify(msg, self.mailbox, self.config.rules)
            ticket = await self._new_ticket(msg, rules, decision)
        else:
            rules, ticket = None, match.ticket
        article = await self._article(ticket, row, msg)
        await _add_participants(ticket, msg, self.config.own_addresses)
        self.events.append(Event(ticket_id=ticket.id, what="created" if match is None else "article",
                                 detail={"article": article.id, "inbound": row.id,
                                         "threaded_by": match.how if match else None,
                                         "tags": list(decision.tags) if decision else []}))
        drafts = self._respond(ticket, msg, match is None, decision, rules)
        self.outbound += [self._outbound_row(ticket, draft) for draft in drafts]
        row.status, row.ticket_id = InboundStatus.PROCESSED, ticket.id
        log.info("%s %s ticket #%d (%s)", msg.message_id or "(no Message-ID)",
                 "opened" if match is None else "added to", ticket.number,
                 f"{ticket.priority} {ticket.queue}" if match is None else f"threaded by {match.how}")
        return Outcome(row.id, row.status, ticket.number, match is None, len(drafts))

    def _outbound_row(self, ticket: Ticket, draft: Draft) -> OutboundMessage:
        recipient = draft.recipients[0].lower() if draft.recipients else ""
        if draft.automatic:
            self.recent[recipient] = self.recent.get(recipient, 0) + 1
        mail_from, smtp = draft.mail_from, self.config.smtp
        if smtp.bounce_key is not None and mail_from.lower() == smtp.envelope_from.lower():
            # A return address only this message has: its bounce can prove it answers our mail.
            mail_from = verp.envelope_sender(smtp.envelope_from, draft.message_id, smtp.bounce_key)
        return OutboundMessage(
            ticket_id=ticket.id, kind=draft.kind, message_id=draft.message_id, mail_from=mail_from,
            recipients=list(draft.recipients), recipient=recipient, automatic=draft.automatic,
            raw_bytes=draft.raw, next_try_at=self.now, created_at=self.now)

    async def _new_ticket(self, msg: ParsedMessage, rules: Classification, decision: Decision | None) -> Ticket:
        sender = msg.requester  # From, else Reply-To, else Sender: never junk around an address
        tags = list(dict.fromkeys((*rules.tags, *(decision.tags if decision else ()))))
        return await Ticket.create(
            number=await self.numbers.next(), subject=one_line(msg.subject, 998) or "(no subject)",
            requester=(sender.email if sender else "").lower(), requester_name=one_line(sender.name) if sender else "",
            mailbox=self.mailbox, queue=rules.queue or self.mailbox, priority=rules.priority,
            category=rules.category, fired_rules=list(rules.fired), tags=tags,
        )

    async def _article(self, ticket: Ticket, row: InboundMessage, msg: ParsedMessage,
                       internal: bool = False) -> Article:
        article = await Article.create(
            ticket=ticket, inbound_id=row.id, direction="in", sender=str(msg.from_ or ""),
            to=", ".join(map(str, msg.to)), cc=", ".join(map(str, msg.cc)), subject=msg.subject,
            message_id=msg.message_id, in_reply_to=" ".join(msg.in_reply_to),
            references=" ".join(msg.references), date=msg.date, text=msg.text, html=msg.html,
            internal=internal,
        )
        if msg.attachments:
            await Attachment.bulk_create([
                Attachment(article_id=article.id, filename=a.filename, content_type=a.content_type,
                           size=a.size, sha256=hashlib.sha256(a.content).hexdigest(), content=a.content,
                           content_id=a.content_id, inline=a.inline)
                for a in msg.attachments])
        return article

    def _respond(self, ticket: Ticket, msg: ParsedMessage, is_new: bool, decision: Decision | None,
                 rules: Classification | None) -> list[Draft]:
        view = TicketView(ticket.number, ticket.subject, ticket.status, ticket.priority, ticket.category,
                          ticket.queue, ticket.requester, ticket.requester_name, tuple(ticket.tags))
        recipient = reply_address(msg).lower()
        ctx = ResponseContext(
            view, msg, is_new, self.mailbox, decision=decision,
            recent_automatic=self.recent.get(recipient, 0), suppressed=recipient in self.suppressed,
            first_response=rules.first_response if rules else "",
            articles=match_articles(msg, self.config.rules) if is_new and rules else (),
        )
        drafts: list[Draft] = []
        for result in (r for responder in self.p.responders for r in responder.run(ctx)):
            if isinstance(result, Withheld):  # the audit trail says why a customer heard nothing
                self.events.append(Event(ticket_id=ticket.id, what="withheld", detail={
                    "kind": result.kind, "recipient": result.recipient, "reason": result.reason}))
            else:
                drafts.append(result)
        return drafts

    async def _bounce(self, row: InboundMessage, msg: ParsedMessage, decision: Decision) -> Outcome:
        """Attach a delivery failure to the ticket whose mail bounced; never a new ticket."""
        info: dict[str, Any] = decision.detail("bounce")["bounce"]
        original = info.get("original_message_id", "")
        sent = await OutboundMessage.filter(message_id=original).first() if original else None
        ticket = await _bounced_ticket(original, sent)
        if ticket is None:
            return self._hold(row, InboundStatus.QUARANTINED,
                              f"bounce for a message we did not send: {info.get('status', '')} "
                              f"{', '.join(info.get('recipients', []))}".strip())
        suppressed: list[str] = []
        if sent is None:
            why = "the bounced message is not in our outbox"
        elif not info.get("permanent"):
            why = "not a permanent failure"
        else:
            # Every customer gets our Message-IDs, so citing one proves nothing: only a DSN sent to
            # the signed return address of that very message may silence anyone.
            proven, why = verp.proof(msg.headers, self.config.smtp.envelope_from, self.config.smtp.bounce_key,
                                     sent.message_id)
            if proven:  # and only addresses we really wrote to
                ours = {r.lower() for r in sent.recipients}
                suppressed = sorted({a.lower() for a in info.get("recipients", []) if a.lower() in ours})
                await self._suppress(suppressed, int(decision.detail("bounce").get("suppress_days", 60)), info)
                why = why if suppressed else "it names no recipient of the bounced message"
        outcome = f"suppressed {', '.join(suppressed)}: {why}" if suppressed else f"suppressed nothing: {why}"
        article = await self._article(ticket, row, msg, internal=True)
        if "bounced" not in ticket.tags:
            ticket.tags = [*ticket.tags, "bounced"]
            await ticket.save(update_fields=["tags", "updated_at"])
        self.events.append(Event(ticket_id=ticket.id, what="bounce",
                                 detail={"article": article.id, **info, "suppressed": suppressed,
                                         "suppression": outcome}))
        if sent is not None:  # a bounce never cancels a delivery still queued
            await OutboundMessage.filter(id=sent.id).exclude(status=OutboundStatus.PENDING).update(
                status=OutboundStatus.BOUNCED, last_error=(info.get("diagnostic") or info.get("status", ""))[:2000])
        row.status, row.ticket_id = InboundStatus.PROCESSED, ticket.id
        log.warning("bounce %s for ticket #%d: %s %s; %s", msg.message_id, ticket.number, info.get("status"),
                    ", ".join(info.get("recipients", [])), outcome)
        return Outcome(row.id, row.status, ticket.number)

    async def _suppress(self, addresses: list[str], days: int, info: dict[str, Any]) -> None:
        until = self.now + timedelta(days=days)
        reason = f"bounced permanently: {info.get('status', '')} {info.get('diagnostic', '')}".strip()
        for address in {a.lower() for a in addresses if a}:
            updated = await Suppression.filter(address=address).update(until=until, reason=reason[:2000])
            if not updated:
                await Suppression.create(address=address, until=until, reason=reason[:2000])
            self.suppressed.add(address)


async def _bounced_ticket(original: str, sent: OutboundMessage | None) -> Ticket | None:
    if sent is not None and sent.ticket_id is not None:
        return await Ticket.get_or_none(id=sent.ticket_id)
    article = await Article.filter(message_id=original).first() if original else None
    return await Ticket.get_or_none(id=article.ticket_id) if article else None


async def _add_participants(ticket: Ticket, msg: ParsedMessage, own: frozenset[str]) -> None:
    people = {a.email.lower() for a in (msg.from_, *msg.cc)
              if a is not None and is_valid(a.email) and not is_own(a.email, own)}
    people -= {ticket.requester}
    if people:
        await Participant.bulk_create([Participant(ticket_id=ticket.id, email=e) for e in sorted(people)],
                                      ignore_conflicts=True)


class _Numbers:
    """Ticket numbers for one transaction: read the counter once, write it back once."""

    def __init__(self) -> None:
        self.value: int | None = None
        self.start: int | None = None

    async def next(self) -> int:
        if self.value is None:
            counter = await Counter.select_for_update().get_or_none(name="ticket")
            if counter is None:
                counter = await Counter.create(name="ticket", value=0)
            self.value = self.start = counter.value
        self.value += 1
        return self.value

    async def save(self) -> None:
        if self.value is not None and self.value != self.start:
            await Counter.filter(name="ticket").update(value=F("value") + (self.value - (self.start or 0)))
