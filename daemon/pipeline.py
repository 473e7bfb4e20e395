"""Process stored inbound rows: parse, thread, write ticket + article + outbox in one commit."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from tortoise.expressions import F
from tortoise.transactions import in_transaction

from daemon.config import Config, MailboxConfig
from daemon.outgoing import one_line
from daemon.parsers import parse_message
from daemon.parsers.model import ParsedMessage, UnreadableMessage
from daemon.responders import Draft, ResponseContext, Responder, TicketView
from daemon.threader import find_ticket
from daemon.turn import WriteTurn
from storage.bulk import update_rows
from storage.models import (Article, Attachment, Counter, Event, InboundMessage, InboundStatus,
                            OutboundMessage, Participant, Ticket)

log = logging.getLogger("ticketd.pipeline")

ROW_FIELDS = ["status", "reason", "attempts", "ticket_id", "duplicate_of_id", "processed_at"]


@dataclass(frozen=True)
class Outcome:
    """What became of one inbound row."""

    inbound_id: int
    status: str
    ticket_number: int | None = None
    new_ticket: bool = False
    outbound: int = 0
    reason: str = ""


def parse_or_reason(raw: bytes) -> ParsedMessage | str:
    """Parse, turning every failure into a stored reason instead of an exception."""
    try:
        return parse_message(raw)
    except UnreadableMessage as exc:
        return f"unreadable: {exc}"
    except RecursionError:
        return "unreadable: MIME structure nested too deeply"
    except Exception as exc:  # a parser bug must quarantine one message, never stop the daemon
        return f"parser error: {type(exc).__name__}: {exc}"


class Processor:
    """Runs the steps between intake and outbox for batches of stored rows."""

    # Messages per transaction: commits are shared, and a poison message costs a retry of
    # at most this many one by one.
    commit_group = 25

    def __init__(self, config: Config, responders: list[Responder], pool: Executor | None = None,
                 on_outbox: Callable[[], None] = lambda: None, write_turn: WriteTurn | None = None) -> None:
        self.config = config
        # Taken around every write transaction; the outbox sender holds it across SMTP DATA.
        self.write_turn = write_turn or WriteTurn()
        self.responders = responders
        self.pool = pool
        self.on_outbox = on_outbox

    async def process(self, rows: list[InboundMessage], mailbox: MailboxConfig | None,
                      parsed: list[ParsedMessage | str] | None = None) -> list[Outcome]:
        """Process ``rows`` in order and commit them together; one bad row never sinks the rest."""
        if parsed is None:
            parsed = await self.parse(rows)
        todo = [(row, item) for row, item in zip(rows, parsed) if row.status == InboundStatus.RECEIVED]
        if not todo:
            return []
        outcomes: list[Outcome] = []
        for start in range(0, len(todo), self.commit_group):
            group = todo[start:start + self.commit_group]
            try:
                async with self.write_turn.exclusive(), in_transaction():
                    done = await _Batch(self, mailbox).run(*_unzip(group))
            except Exception:
                log.exception("a group of %d failed; retrying one message at a time", len(group))
                done = await self._one_by_one(*_unzip(group), mailbox)
            outcomes += done
            if any(o.outbound for o in done):
                self.on_outbox()
        return outcomes

    async def _one_by_one(self, rows: list[InboundMessage], parsed: list[ParsedMessage | str],
                          mailbox: MailboxConfig | None) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for row, item in zip(rows, parsed):
            await row.refresh_from_db(fields=ROW_FIELDS + ["server_done"])
            try:
                async with self.write_turn.exclusive(), in_transaction():
                    outcomes += await _Batch(self, mailbox).run([row], [item])
            except Exception as exc:
                log.exception("message %s (inbound %d) failed", row.message_id, row.id)
                async with self.write_turn.exclusive():
                    outcomes.append(await quarantine(row, f"processing error: {type(exc).__name__}: {exc}"))
        return outcomes

    async def parse(self, rows: list[InboundMessage]) -> list[ParsedMessage | str]:
        """Parse rows still to be processed (others get ""), in the pool when there is one."""
        todo = [row.status == InboundStatus.RECEIVED for row in rows]
        if self.pool is None or len(rows) == 1:
            return [parse_or_reason(row.raw_bytes) if wanted else "" for row, wanted in zip(rows, todo)]
        loop = asyncio.get_running_loop()
        try:
            return list(await asyncio.gather(*(
                loop.run_in_executor(self.pool, parse_or_reason, row.raw_bytes) if wanted else _skipped()
                for row, wanted in zip(rows, todo))))
        except BrokenProcessPool:
            log.error("parser process died; parsing in the main process from now on")
            self.pool = None
            return [parse_or_reason(row.raw_bytes) if wanted else "" for row, wanted in zip(rows, todo)]


async def _skipped() -> str:
    return ""


def _unzip(pairs: list[tuple[InboundMessage, ParsedMessage | str]]) -> tuple[
        list[InboundMessage], list[ParsedMessage | str]]:
    return [row for row, _ in pairs], [item for _, item in pairs]


async def quarantine(row: InboundMessage, reason: str) -> Outcome:
    row.status, row.reason = InboundStatus.QUARANTINED, reason[:2000]
    row.attempts += 1
    row.processed_at = datetime.now(timezone.utc)
    await row.save(update_fields=["status", "reason", "attempts", "processed_at"])
    log.warning("inbound %d quarantined: %s", row.id, reason)
    return Outcome(row.id, row.status, reason=reason)


class _Batch:
    """The writes of one transaction; rows are updated together at the end."""

    def __init__(self, processor: Processor, mailbox: MailboxConfig | None) -> None:
        self.p = processor
        self.mailbox = mailbox
        self.events: list[Event] = []
        self.outbound: list[OutboundMessage] = []  # written together at the end of the batch
        self.seen_ids: dict[str, InboundMessage] = {}
        self.numbers: _Numbers = _Numbers()

    async def run(self, rows: list[InboundMessage], parsed: list[ParsedMessage | str]) -> list[Outcome]:
        earlier = await self._already_processed(rows)
        outcomes = [await self._one(row, item, earlier) for row, item in zip(rows, parsed)]
        await self.numbers.save()
        if self.events:
            await Event.bulk_create(self.events)
        if self.outbound:
            await OutboundMessage.bulk_create(self.outbound)
        await update_rows(rows, ROW_FIELDS)
        return outcomes

    async def _one(self, row: InboundMessage, item: ParsedMessage | str,
                   earlier: dict[str, InboundMessage]) -> Outcome:
        now = datetime.now(timezone.utc)
        row.processed_at, row.attempts = now, row.attempts + 1
        if isinstance(item, str):
            row.status, row.reason = InboundStatus.QUARANTINED, item[:2000]
            log.warning("inbound %d quarantined: %s", row.id, item)
            return Outcome(row.id, row.status, reason=item)
        key = row.message_id or f"sha256:{row.sha256}"
        first = self.seen_ids.get(key) or earlier.get(key)
        if first is not None and first.id != row.id:
            row.status, row.ticket_id, row.duplicate_of_id = InboundStatus.DUPLICATE, first.ticket_id, first.id
            log.info("inbound %d %s is a duplicate of inbound %d", row.id, key, first.id)
            return Outcome(row.id, row.status)
        outcome = await self._to_ticket(row, item, now)
        self.seen_ids[key] = row
        return outcome

    async def _already_processed(self, rows: list[InboundMessage]) -> dict[str, InboundMessage]:
        ids = [r.message_id for r in rows if r.message_id]
        hashes = [r.sha256 for r in rows if not r.message_id]
        found: dict[str, InboundMessage] = {}
        fields = ("id", "message_id", "sha256", "ticket_id")
        if ids:
            for r in await InboundMessage.filter(message_id__in=ids, status=InboundStatus.PROCESSED).only(*fields):
                found.setdefault(r.message_id, r)
        if hashes:
            for r in await InboundMessage.filter(sha256__in=hashes, message_id="",
                                                 status=InboundStatus.PROCESSED).only(*fields):
                found.setdefault(f"sha256:{r.sha256}", r)
        return found

    async def _to_ticket(self, row: InboundMessage, msg: ParsedMessage, now: datetime) -> Outcome:
        match = await find_ticket(msg)
        ticket = match.ticket if match else await self._new_ticket(msg)
        article = await self._article(ticket, row, msg)
        await _add_participants(ticket, msg, self.p.config.own_addresses)
        self.events.append(Event(ticket_id=ticket.id, what="created" if match is None else "article",
                                 detail={"article": article.id, "inbound": row.id,
                                         "threaded_by": match.how if match else None}))
        drafts = self._respond(ticket, msg, is_new=match is None)
        self.outbound += [OutboundMessage(
            ticket_id=ticket.id, kind=d.kind, message_id=d.message_id, mail_from=d.mail_from,
            recipients=list(d.recipients), raw_bytes=d.raw, next_try_at=now) for d in drafts]
        row.status, row.ticket_id = InboundStatus.PROCESSED, ticket.id
        log.info("%s %s ticket #%d (%s)", msg.message_id or "(no Message-ID)",
                 "opened" if match is None else "added to", ticket.number,
                 "new" if match is None else f"threaded by {match.how}")
        return Outcome(row.id, row.status, ticket.number, match is None, len(drafts))

    async def _new_ticket(self, msg: ParsedMessage) -> Ticket:
        sender = msg.from_
        return await Ticket.create(
            number=await self.numbers.next(), subject=one_line(msg.subject, 998) or "(no subject)",
            requester=(sender.email if sender else "").lower(), requester_name=one_line(sender.name) if sender else "",
            mailbox=self.mailbox.name if self.mailbox else "", queue=self.mailbox.name if self.mailbox else "",
        )

    async def _article(self, ticket: Ticket, row: InboundMessage, msg: ParsedMessage) -> Article:
        article = await Article.create(
            ticket=ticket, inbound_id=row.id, direction="in", sender=str(msg.from_ or ""),
            to=", ".join(map(str, msg.to)), cc=", ".join(map(str, msg.cc)), subject=msg.subject,
            message_id=msg.message_id, in_reply_to=" ".join(msg.in_reply_to),
            references=" ".join(msg.references), date=msg.date, text=msg.text, html=msg.html,
        )
        if msg.attachments:
            await Attachment.bulk_create([
                Attachment(article_id=article.id, filename=a.filename, content_type=a.content_type,
                           size=a.size, sha256=hashlib.sha256(a.content).hexdigest(), content=a.content,
                           content_id=a.content_id, inline=a.inline)
                for a in msg.attachments])
        return article

    def _respond(self, ticket: Ticket, msg: ParsedMessage, is_new: bool) -> list[Draft]:
        view = TicketView(ticket.number, ticket.subject, ticket.status, ticket.priority, ticket.category,
                          ticket.queue, ticket.requester, ticket.requester_name)
        ctx = ResponseContext(view, msg, is_new, self.mailbox)
        return [draft for responder in self.p.responders for draft in responder.run(ctx)]


async def _add_participants(ticket: Ticket, msg: ParsedMessage, own: frozenset[str]) -> None:
    people = {a.email.lower() for a in (msg.from_, *msg.cc) if a is not None and "@" in a.email}
    people -= own | {ticket.requester}
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
