"""Process stored inbound rows: prepare (parse, filter), then commit in UID order."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Callable

from tortoise.transactions import in_transaction

from ticketd.daemon.commit import ROW_FIELDS, Commit, Outcome
from ticketd.daemon.config import AddressConfig, Config, MailboxConfig
from ticketd.daemon.filters import Filter
from ticketd.daemon.filters.registry import build_filters
from ticketd.daemon.metrics import Metrics
from ticketd.daemon.prepare import Clock, Prepared, filter_all, parse_all, utcnow
from ticketd.daemon.responders import Responder, build_responders
from ticketd.daemon.turn import WriteTurn
from ticketd.storage import intake
from ticketd.storage.errors import TemporaryFailure, describe, is_temporary
from ticketd.storage.models import InboundMessage, InboundStatus

if TYPE_CHECKING:
    from ticketd.daemon.responders.webhook import Webhook
    from ticketd.daemon.webhook_sender import WebhookSender

log = logging.getLogger("ticketd.pipeline")

__all__ = ["Outcome", "Processor", "quarantine"]


class Processor:
    """Runs the steps between intake and outbox for batches of stored rows."""

    # Messages per transaction: commits are shared, and a poison message costs a retry of
    # at most this many one by one.
    commit_group = 25

    def __init__(self, config: Config, responders: list[Responder] | None = None, pool: Executor | None = None,
                 on_outbox: Callable[[], None] = lambda: None, write_turn: WriteTurn | None = None,
                 filters: list[Filter] | None = None, clock: Clock = utcnow, metrics: Metrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or Metrics()  # counted whether [metrics] serves them or not: under 2 us a message
        self.responders = responders if responders is not None else build_responders(config)
        self.webhook: Webhook | None = _webhook(config)  # sees every event a commit writes
        self.on_webhook: Callable[[], None] = lambda: None  # a commit wrote webhook rows (daemon.app)
        self.webhook_sender: WebhookSender | None = None  # daemon.app's, where [[webhooks]] are configured
        self.filters = filters if filters is not None else build_filters(config.filters, self.metrics)
        self.pool = pool
        self.on_outbox = on_outbox
        # Taken (exclusively) around every write transaction; see daemon.turn.
        self.write_turn = write_turn or WriteTurn()
        self.clock = clock
        self.window: asyncio.Semaphore | None = None  # messages being filtered at once, all batches

    def reconfigure(self, config: Config) -> None:
        """Swap in a new, already validated configuration whole (SIGHUP)."""
        responders, filters = build_responders(config), build_filters(config.filters, self.metrics)
        self.config, self.responders, self.filters = config, responders, filters
        self.webhook = _webhook(config)
        self.window = None

    async def prepare(self, rows: list[InboundMessage], mailbox: str = "",
                      raws: dict[int, bytes] | None = None) -> list[Prepared]:
        """Parse and filter the rows still to be processed; safe to run ahead of ``process``.

        ``raws``: the stored bytes by row id, from a caller that has just stored them (the
        rest are read from the database).
        """
        todo = [row for row in rows if row.status == InboundStatus.RECEIVED]
        stored = dict(raws or {})
        missing = [row for row in todo if row.id not in stored]
        if missing:
            stored.update(await intake.raw_of(missing))
        raws = [stored.get(row.id) if row.status == InboundStatus.RECEIVED else None for row in rows]
        parsed, broken = await parse_all(raws, self.pool)
        if broken:
            self.pool = None
        if self.window is None:  # created lazily: it must belong to the running event loop
            self.window = asyncio.Semaphore(self.config.filters.concurrency)
        decisions = await filter_all(self.filters, parsed, raws, mailbox, self.config.own_addresses,
                                     self.window, self.clock, [row.id for row in rows])
        verdicts = self.metrics.verdicts
        for decision in decisions:
            for unit, verdict in decision.verdicts if decision is not None else ():
                verdicts[unit, verdict.action] += 1
        return [Prepared(p, d) for p, d in zip(parsed, decisions)]

    async def process(self, rows: list[InboundMessage], mailbox: MailboxConfig | AddressConfig | None,
                      prepared: list[Prepared] | None = None) -> list[Outcome]:
        """Commit ``rows`` in order, a group per transaction; one bad row never sinks the rest.

        A condition of the system (database locked or unreachable, disk full) raises
        ``TemporaryFailure``: the rows stay "received" and are processed again later, never
        quarantined. Groups committed before it stand.
        """
        name = mailbox.name if mailbox else ""
        if prepared is None:
            prepared = await self.prepare(rows, name)
        todo = [(row, item) for row, item in zip(rows, prepared) if row.status == InboundStatus.RECEIVED]
        outcomes: list[Outcome] = []
        for start in range(0, len(todo), self.commit_group):
            group = todo[start:start + self.commit_group]
            try:
                async with self.write_turn.exclusive(), in_transaction():
                    commit = Commit(self, name)
                    done = await commit.run([r for r, _ in group], [p for _, p in group])
                self._committed(commit, done)
            except Exception as exc:
                if is_temporary(exc):
                    raise TemporaryFailure(describe(exc)) from exc
                log.exception("a group of %d failed; retrying one message at a time", len(group))
                done = await self._one_by_one(group, name)
            outcomes += done
            if any(o.outbound for o in done):
                self.on_outbox()
        return outcomes

    async def _one_by_one(self, group: list[tuple[InboundMessage, Prepared]], mailbox: str) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for row, item in group:
            await row.refresh_from_db(fields=ROW_FIELDS + ["server_done"])
            try:
                async with self.write_turn.exclusive(), in_transaction():
                    commit = Commit(self, mailbox)
                    done = await commit.run([row], [item])
                self._committed(commit, done)
                outcomes += done
            except Exception as exc:
                if is_temporary(exc):
                    raise TemporaryFailure(describe(exc)) from exc
                log.exception("message %s (inbound %d) failed", row.message_id, row.id, extra=_about(row, mailbox))
                async with self.write_turn.exclusive():
                    held = await quarantine(row, f"processing error: {type(exc).__name__}: {exc}", self.clock)
                self.metrics.count_outcomes(mailbox, [held])
                outcomes.append(held)
        return outcomes

    def _committed(self, commit: Commit, outcomes: list[Outcome]) -> None:
        """Count a transaction's work once it has committed: a rolled-back one is done again."""
        self.metrics.count_outcomes(commit.mailbox, outcomes)
        self.metrics.expect_acks(commit.arrivals)
        if commit.fired:
            self.metrics.count_fired(commit.fired)
        if self.webhook is not None and self.webhook.wrote:
            self.webhook.wrote = False
            self.on_webhook()


def _webhook(config: Config) -> Webhook | None:
    """The webhook responder, None without [[webhooks]] (then nothing more is imported or done per event)."""
    if not config.webhooks:
        return None
    from ticketd.daemon.responders.webhook import Webhook

    return Webhook(config.webhooks)


async def quarantine(row: InboundMessage, reason: str, clock: Clock = utcnow) -> Outcome:
    row.status, row.reason = InboundStatus.QUARANTINED, reason[:2000]
    row.attempts += 1
    row.processed_at = clock()
    await row.save(update_fields=["status", "reason", "attempts", "processed_at"])
    log.warning("inbound %d quarantined: %s", row.id, reason, extra=_about(row))
    return Outcome(row.id, row.status, reason=reason)


def _about(row: InboundMessage, mailbox: str = "") -> dict[str, object]:
    """The log fields of a row whose lines come after its own scope (daemon.logcontext) ended."""
    return {k: v for k, v in (("mailbox", mailbox), ("inbound", row.id), ("message_id", row.message_id)) if v}
