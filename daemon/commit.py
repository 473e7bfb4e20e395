"""The writes of one transaction: tickets, articles, outbox rows, and each row's outcome.

A group of messages is read in a few queries up front (claims, duplicates, limits, threads),
decided message by message in memory, and written by one INSERT per table at the end
(``storage.writes``): the statements per group stay the same whether it holds 1 message or 50.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ticketd.daemon import customer_reply, lifecycle, logcontext, verp
from ticketd.daemon.addresses import is_own, is_valid
from ticketd.daemon.bounce_commit import record_bounce
from ticketd.daemon.dedup import Earlier, earlier_of, key, load_earlier, same_message
from ticketd.daemon.filters import DEFER, QUARANTINE, REJECT, Decision
from ticketd.daemon.metrics import ACKNOWLEDGEMENT
from ticketd.daemon.outgoing import one_line
from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.daemon.prepare import Prepared
from ticketd.daemon.responders import Draft, ResponseContext, Withheld
from ticketd.daemon.responders.acknowledgement import reply_address
from ticketd.daemon.rules import Classification, classify, match_articles
from ticketd.daemon.threader import Threads
from ticketd.daemon.ticket_steps import ticket_view
from ticketd.storage import bulk
from ticketd.storage.models import InboundMessage, InboundStatus, OutboundMessage
from ticketd.storage.numbers import TicketNumbers
from ticketd.storage.writes import GroupWrites, TicketRow

if TYPE_CHECKING:
    from ticketd.daemon.agent_mail import AgentMail
    from ticketd.daemon.pipeline import Processor

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
        self.writes = GroupWrites(self.now, getattr(processor, "webhook", None))  # None without [[webhooks]]
        self.threads = Threads()
        self.seen: dict[str, list[Earlier]] = {}  # this transaction's new articles, by key
        self.numbers = TicketNumbers()
        self.recent: dict[str, int] = {}  # recipient -> automatic mails in the last hour
        self.suppressed: set[str] = set()
        self.drafts = 0  # outbound rows this group queued
        # For the metrics once the transaction commits (daemon.pipeline): each acknowledgement's
        # Message-ID with its message's arrival, and the SLA events fired (daemon.sla).
        self.arrivals: list[tuple[str, datetime]] = []
        self.fired: Counter[tuple[str, str]] = Counter()

    async def run(self, rows: list[InboundMessage], prepared: list[Prepared]) -> list[Outcome]:
        claimed = await self._claim(rows)
        mine = [(r, p) for r, p in zip(rows, prepared) if r.id in claimed]
        earlier = await load_earlier([r for r, _ in mine])
        readable = [p.parsed for _, p in mine if not isinstance(p.parsed, str)]
        await self._load_limits(readable)
        await self.threads.load(readable)
        outcomes: list[Outcome] = []
        for row, item in zip(rows, prepared):
            with logcontext.message(self.mailbox, row.id, row.message_id):  # its lines say which message
                outcomes.append(await self._one(row, item, earlier) if row.id in claimed else self._taken(row))
        await self.numbers.save()
        await self.writes.flush()
        await bulk.update_rows([r for r, o in zip(rows, outcomes) if r.id in claimed and o.status != "deferred"],
                               ROW_FIELDS)
        return outcomes

    async def _claim(self, rows: list[InboundMessage]) -> set[int]:
        """The rows still "received" now, inside the write transaction.

        Another process (an `ingest` beside the daemon's sweep of piped rows) may have
        processed a row since we read it; the write lock held since BEGIN makes this check
        and our writes one step, so no row is ever processed twice.
        """
        by_id = {r.id: r for r in rows}
        claimed = set()
        for row_id, status, ticket_id in await bulk.fetch(
                f"SELECT id, status, ticket_id FROM inbound_message WHERE id IN ({bulk.marks(len(by_id))})",
                list(by_id)):
            if status == InboundStatus.RECEIVED:
                claimed.add(int(row_id))
            else:
                row = by_id[int(row_id)]
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
                # Rare, and it reads what this group wrote before it: written first, then the ORM.
                await self.writes.flush()
                return await record_bounce(self, row, item.parsed, decision)
        mail = self._agent_mail(item.parsed)
        if mail is not None:
            from ticketd.daemon import agent_reply

            outcome = await agent_reply.record(self, row, item.parsed, decision, mail)
        else:
            outcome = await self._to_ticket(row, item.parsed, decision)
        self._collision(row, candidates)
        self.seen.setdefault(key(row), []).append(earlier_of(row, item.parsed))
        return outcome

    def _agent_mail(self, msg: ParsedMessage) -> AgentMail | None:
        team = self.config.team
        if team is None:
            return None
        from ticketd.daemon.agent_mail import agent_mail  # with agents only: `ingest` starts once per message

        return agent_mail(msg, team, self.config.support_addresses, self.config.own_addresses)

    def _collision(self, row: InboundMessage, candidates: list[Earlier]) -> None:
        """A different message with a Message-ID we know: processed as its own, and noted."""
        others = sorted({c.id for c in candidates if c.message_id and c.message_id == row.message_id})
        if not others or row.ticket_id is None:
            return
        row.reason = (f"Message-ID {one_line(row.message_id, 200)} is also on inbound "
                      f"{', '.join(map(str, others))}, a different message: processed as its own")
        log.warning("inbound %d: %s", row.id, row.reason)
        self.writes.event(row.ticket_id, "message_id_collision",
                          {"inbound": row.id, "also_on": others, "message_id": row.message_id})

    def _hold(self, row: InboundMessage, status: str, reason: str) -> Outcome:
        row.status, row.reason = status, reason[:2000]
        log.warning("inbound %d %s: %s", row.id, status, reason)
        return Outcome(row.id, status, reason=reason)

    async def _load_limits(self, messages: list[ParsedMessage]) -> None:
        """Recent automatic mail and suppressed addresses of this group's senders, in two queries.

        Served by the (recipient, created_at) index: an hour of one recipient's mail, never
        the recipient's whole history.
        """
        people = sorted({reply_address(m).lower() for m in messages} - {""})
        if not people:
            return
        since = OutboundMessage._meta.fields_map["created_at"].to_db_value(self.now - timedelta(hours=1), None)
        for recipient, count in await bulk.fetch(
                f"SELECT recipient, count(*) FROM outbound_message WHERE recipient IN ({bulk.marks(len(people))}) "
                "AND created_at >= ? AND automatic = ? GROUP BY recipient", [*people, since, True]):
            self.recent[recipient] = int(count)
        self.suppressed = {r[0] for r in await bulk.fetch(
            f"SELECT address FROM suppression WHERE address IN ({bulk.marks(len(people))}) AND until > ?",
            [*people, self.now])}

    async def _to_ticket(self, row: InboundMessage, msg: ParsedMessage, decision: Decision | None,
                         respond: bool = True) -> Outcome:
        match = self.threads.find(msg)
        reply, linked = None, None
        if match is not None and match.ticket.status in lifecycle.WAITING:
            reply = await customer_reply.decide(self, match.ticket, msg)
            if reply.follow_up:  # closed too long ago: a new ticket, linked to the old one
                linked, match, reply = match.ticket, None, None
        if match is None:
            rules = classify(msg, self.mailbox, self.config.rules)
            ticket = await self._new_ticket(msg, rules, decision, linked)
        else:
            rules, ticket = None, match.ticket
        article = await self.article(ticket, row, msg)
        self._add_participants(ticket, msg)
        self.writes.event(ticket.id, "created" if match is None else "article",
                          {"article": article, "inbound": row.id, "threaded_by": match.how if match else None,
                           "tags": list(decision.tags) if decision else [],
                           **({"linked_to": linked.number} if linked else {})}, who=_who(msg))
        if reply is not None:
            await customer_reply.apply(self, ticket, reply, _who(msg))
        if match is None and respond:
            await self._assign(ticket, msg)
        after_hours: dict[str, Any] = {}
        if self.config.sla is not None:  # clocks start or next update restarts; triggers may escalate
            from ticketd.daemon.sla.hooks import customer_mail
            from ticketd.daemon.sla.oncall import after_hours as paged

            await customer_mail(self, ticket, msg, new=match is None, triggers=respond)  # not an agent's refused mail
            after_hours = paged(self, ticket) if match is None else {}
        drafts = self._respond(ticket, msg, match is None, decision, rules, after_hours) if respond else []
        for draft in drafts:
            self._outbound_row(ticket, draft)
            if draft.kind == ACKNOWLEDGEMENT:
                self.arrivals.append((draft.message_id, row.received_at))
        row.status, row.ticket_id = InboundStatus.PROCESSED, ticket.id
        log.info("%s %s ticket #%d (%s)", msg.message_id or "(no Message-ID)",
                 "opened" if match is None else "added to", ticket.number,
                 f"{ticket.priority} {ticket.queue}" if match is None else f"threaded by {match.how}")
        return Outcome(row.id, row.status, ticket.number, match is None, len(drafts))

    async def _assign(self, ticket: TicketRow, msg: ParsedMessage) -> None:
        team = self.config.team
        queue = team.queue(ticket.queue) if team is not None else None
        if queue is not None and (queue.assign != "none" or queue.unassigned_timeout):
            from ticketd.daemon.ticket_steps import assign_new

            await assign_new(self, ticket, msg.new_text or msg.text, queue)

    def _outbound_row(self, ticket: TicketRow | None, draft: Draft) -> None:
        recipient = draft.recipients[0].lower() if draft.recipients else ""
        self.drafts += 1
        if draft.automatic:
            self.recent[recipient] = self.recent.get(recipient, 0) + 1
        mail_from, smtp = draft.mail_from, self.config.smtp
        if smtp.bounce_key is not None and mail_from.lower() == smtp.envelope_from.lower():
            # A return address only this message has: its bounce can prove it answers our mail.
            mail_from = verp.envelope_sender(smtp.envelope_from, draft.message_id, smtp.bounce_key)
        self.writes.outbound(ticket_id=ticket.id if ticket else None, kind=draft.kind, message_id=draft.message_id,
                             mail_from=mail_from, recipients=list(draft.recipients), recipient=recipient,
                             automatic=draft.automatic, raw_bytes=draft.raw)
        if ticket is not None:  # a notice about no ticket (an agent's #away) threads nowhere
            self.threads.add_outbound(draft.message_id, ticket.id)

    async def _new_ticket(self, msg: ParsedMessage, rules: Classification, decision: Decision | None,
                          linked: TicketRow | None = None) -> TicketRow:
        sender = msg.requester  # From, else Reply-To, else Sender: never junk around an address
        tags = list(dict.fromkeys((*rules.tags, *(decision.tags if decision else ()))))
        ticket = await self.writes.ticket(
            await self.numbers.next(), subject=one_line(msg.subject, 998) or "(no subject)",
            requester=(sender.email if sender else "").lower(), requester_name=one_line(sender.name) if sender else "",
            mailbox=self.mailbox, queue=rules.queue or self.mailbox, priority=rules.priority,
            category=rules.category, fired_rules=list(rules.fired), tags=tags,
            **({"linked_to": linked.number} if linked else {}),
        )
        self.threads.add_ticket(ticket)
        return ticket

    async def article(self, ticket: TicketRow, row: InboundMessage, msg: ParsedMessage,
                      internal: bool = False, author: str = "customer", new_text: str | None = None) -> int:
        """Queue the article of ``row`` (and its attachments); its id."""
        logcontext.set_ticket(ticket.number)  # the message's lines from here on name its ticket
        article = await self.writes.article({
            "ticket_id": ticket.id, "inbound_id": row.id, "direction": "in", "sender": str(msg.from_ or ""),
            "to": ", ".join(map(str, msg.to)), "cc": ", ".join(map(str, msg.cc)), "subject": msg.subject,
            "message_id": msg.message_id, "in_reply_to": " ".join(msg.in_reply_to),
            "references": " ".join(msg.references), "date": msg.date, "text": msg.text, "html": msg.html,
            "internal": internal, "author": author,
            "new_text": msg.new_text if new_text is None else new_text}, list(msg.attachments))
        self.threads.add_article(msg.message_id, ticket.id)
        return article

    def _add_participants(self, ticket: TicketRow, msg: ParsedMessage) -> None:
        own = self.config.own_addresses
        people = {a.email.lower() for a in (msg.from_, *msg.cc)
                  if a is not None and is_valid(a.email) and not is_own(a.email, own)}
        people -= {ticket.requester}
        if people:
            self.writes.participants(ticket.id, people)
            self.threads.add_participants(ticket.id, people)

    def _respond(self, ticket: TicketRow, msg: ParsedMessage, is_new: bool, decision: Decision | None,
                 rules: Classification | None, after_hours: dict[str, Any] | None = None) -> list[Draft]:
        view = ticket_view(ticket, tuple(rules.fired) if rules else ())
        recipient = reply_address(msg).lower()
        ctx = ResponseContext(
            view, msg, is_new, self.mailbox, decision=decision,
            recent_automatic=self.recent.get(recipient, 0), suppressed=recipient in self.suppressed,
            first_response=rules.first_response if rules else "",
            articles=match_articles(msg, self.config.rules) if is_new and rules else (),
            **(after_hours or {}),
        )
        drafts: list[Draft] = []
        for result in (r for responder in self.p.responders for r in responder.run(ctx)):
            if isinstance(result, Withheld):  # the audit trail says why a customer heard nothing
                self.writes.event(ticket.id, "withheld", {
                    "kind": result.kind, "recipient": result.recipient, "reason": result.reason})
            else:
                drafts.append(result)
        return drafts


def _who(msg: ParsedMessage) -> str:
    return (msg.from_.email.lower() if msg.from_ and msg.from_.email else "")[:320]
