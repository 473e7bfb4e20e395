"""The outbox sender: deliver committed outbound rows over SMTP, retrying with backoff."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import aiosmtplib
from tortoise.expressions import F

from daemon.config import SmtpConfig
from daemon.imap import tls_context
from daemon.turn import WriteTurn
from storage.models import OutboundMessage, OutboundStatus

log = logging.getLogger("ticketd.smtp")

Clock = Callable[[], datetime]

# The server turned the whole session down, not one message: stop the pass, retry later.
SESSION_ERRORS = (aiosmtplib.SMTPConnectResponseError, aiosmtplib.SMTPHeloError,
                  aiosmtplib.SMTPAuthenticationError)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class DeliveryReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    # Seconds between the server's "250" and our commit of "sent": the only window in which
    # a crash makes us send a message twice.
    windows: list[float] = field(default_factory=list)

    def add(self, other: "DeliveryReport") -> None:
        self.sent += other.sent
        self.deferred += other.deferred
        self.failed += other.failed
        self.windows += other.windows


class Unreachable(Exception):
    """The SMTP server cannot take mail right now (refused, dropped, said no to the session)."""


class OutboxSender:
    """Delivers due outbox rows over a few reused SMTP connections ("lanes")."""

    batch = 100

    def __init__(self, config: SmtpConfig, clock: Clock = utcnow, write_turn: WriteTurn | None = None,
                 lanes: int = 4) -> None:
        self.config = config
        self.clock = clock
        # Held (shared) from DATA until "sent" commits: see daemon.turn.
        self.write_turn = write_turn or WriteTurn()
        self.lanes = lanes
        self.wake = asyncio.Event()
        self.connections: list[aiosmtplib.SMTP | None] = [None] * lanes
        self.totals = DeliveryReport()  # everything since start, for run --once's exit code

    def notify(self) -> None:
        self.wake.set()

    async def deliver_due(self, ignore_schedule: bool = False) -> DeliveryReport:
        """One pass over due rows (every pending row with ``ignore_schedule``)."""
        query = OutboundMessage.filter(status=OutboundStatus.PENDING)
        if not ignore_schedule:
            query = query.filter(next_try_at__lte=self.clock())
        queue = deque(await query.order_by("id").limit(self.batch))
        report = DeliveryReport()
        lanes = range(min(self.lanes, len(queue)))
        outcomes = await asyncio.gather(*(self._lane(i, queue, report) for i in lanes), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, Unreachable)]
        if errors:  # every row still waiting gets the backoff, not a tight retry loop
            for row in queue:
                await self._defer(row, str(errors[0]), report)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Unreachable):
                raise outcome
        self.totals.add(report)
        return report

    async def _lane(self, lane: int, queue: deque[OutboundMessage], report: DeliveryReport) -> None:
        while queue:
            row = queue.popleft()
            try:
                await self._deliver(lane, row, report)
            except Unreachable as exc:
                await self._defer(row, str(exc), report)
                raise

    async def _deliver(self, lane: int, row: OutboundMessage, report: DeliveryReport) -> None:
        try:
            smtp = await self._connection(lane)
            await smtp.mail(row.mail_from)
            for recipient in row.recipients:
                await smtp.rcpt(recipient)
            async with self.write_turn.shared():
                await smtp.data(row.raw_bytes)
                accepted = time.monotonic()
                await OutboundMessage.filter(id=row.id).update(
                    status=OutboundStatus.SENT, sent_at=self.clock(), attempts=F("attempts") + 1, last_error="")
            report.windows.append(time.monotonic() - accepted)
            report.sent += 1
            log.info("sent %s (%s) to %s", row.message_id, row.kind, ", ".join(row.recipients))
        except SESSION_ERRORS as exc:
            await self._close(lane)
            raise Unreachable(f"{exc.code} {exc.message}") from None
        except aiosmtplib.SMTPResponseException as exc:
            await self._failed_or_deferred(lane, row, exc.code, exc.message, report)
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await self._close(lane)
            raise Unreachable(f"{type(exc).__name__}: {exc}") from None

    async def _failed_or_deferred(self, lane: int, row: OutboundMessage, code: int, message: str,
                                  report: DeliveryReport) -> None:
        text = f"{code} {message}"
        if 500 <= code < 600:
            await OutboundMessage.filter(id=row.id).update(
                status=OutboundStatus.FAILED, attempts=F("attempts") + 1, last_error=text[:2000])
            report.failed += 1
            log.error("gave up on %s to %s: %s", row.message_id, ", ".join(row.recipients), text)
        else:
            await self._defer(row, text, report)
        await self._reset(lane)

    async def _defer(self, row: OutboundMessage, error: str, report: DeliveryReport) -> None:
        now = self.clock()
        if now - row.created_at > timedelta(seconds=self.config.give_up_after):
            await OutboundMessage.filter(id=row.id).update(
                status=OutboundStatus.FAILED, attempts=F("attempts") + 1,
                last_error=f"gave up after {self.config.give_up_after:.0f} s: {error}"[:2000])
            report.failed += 1
            log.error("gave up on %s after retrying: %s", row.message_id, error)
            return
        delay = min(self.config.retry_max, self.config.retry_base * 2 ** min(row.attempts, 30))
        delay *= random.uniform(0.8, 1.2)  # jitter: many deferred rows must not retry in lockstep
        await OutboundMessage.filter(id=row.id).update(
            attempts=F("attempts") + 1, next_try_at=now + timedelta(seconds=delay), last_error=error[:2000])
        report.deferred += 1
        log.warning("deferred %s for %.1f s: %s", row.message_id, delay, error)

    async def _connection(self, lane: int) -> aiosmtplib.SMTP:
        smtp = self.connections[lane]
        if smtp is not None and smtp.is_connected:
            return smtp
        cfg = self.config
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host, port=cfg.port, timeout=cfg.timeout,
            use_tls=cfg.security == "tls", start_tls=cfg.security == "starttls",
            tls_context=tls_context(cfg) if cfg.security != "none" else None,
        )
        await smtp.connect()
        if cfg.username and cfg.password:
            await smtp.login(cfg.username, cfg.password.reveal())
        self.connections[lane] = smtp
        return smtp

    async def _reset(self, lane: int) -> None:
        smtp = self.connections[lane]
        if smtp is not None and smtp.is_connected:
            try:
                await smtp.rset()
            except aiosmtplib.SMTPException:
                await self._close(lane)

    async def _close(self, lane: int) -> None:
        smtp, self.connections[lane] = self.connections[lane], None
        if smtp is None:
            return
        try:
            await asyncio.wait_for(smtp.quit(), 5)
        except Exception:  # already gone: nothing to do
            smtp.close()

    async def next_due_in(self, cap: float) -> float:
        row = await OutboundMessage.filter(status=OutboundStatus.PENDING).order_by("next_try_at") \
            .only("id", "next_try_at").first()
        if row is None:
            return cap
        return max(0.0, min(cap, (row.next_try_at - self.clock()).total_seconds()))

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; woken early by ``notify``."""
        while not stop.is_set():
            self.wake.clear()
            try:
                while (await self.deliver_due()).sent == self.batch:
                    pass
                # Rows written by another process (ingest) are found within 5 s.
                wait = await self.next_due_in(5.0)
            except Exception:  # a database hiccup must not end delivery for good
                log.exception("outbox pass failed")
                wait = 5.0
            await _wait_any(self.wake, stop, wait)
        await self.close()

    async def drain(self, seconds: float, ignore_schedule: bool = False) -> DeliveryReport:
        """Deliver what is due until nothing is left or ``seconds`` pass."""
        total = DeliveryReport()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            report = await asyncio.wait_for(self.deliver_due(ignore_schedule),
                                            max(0.1, deadline - time.monotonic()))
            total.add(report)
            if report.sent == 0:
                break
        await self.close()
        return total

    async def close(self) -> None:
        for lane in range(self.lanes):
            await self._close(lane)


async def _wait_any(wake: asyncio.Event, stop: asyncio.Event, timeout: float) -> None:
    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
