"""The outbox sender: deliver committed outbound rows over SMTP, retrying with backoff."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

import aiosmtplib
from tortoise.expressions import F
from tortoise.transactions import in_transaction

from daemon.config import SmtpConfig
from daemon.imap import tls_context
from storage.models import OutboundMessage, OutboundStatus

log = logging.getLogger("ticketd.smtp")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class DeliveryReport:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    # Seconds between the server's "250" and our commit of "sent": the only window in
    # which a crash makes us send a message twice.
    windows: list[float] = field(default_factory=list)

    def add(self, other: "DeliveryReport") -> None:
        self.sent += other.sent
        self.deferred += other.deferred
        self.failed += other.failed
        self.windows += other.windows


class OutboxSender:
    """Delivers due outbox rows over one reused SMTP connection."""

    batch = 100

    def __init__(self, config: SmtpConfig, clock: Clock = utcnow) -> None:
        self.config = config
        self.clock = clock
        self.wake = asyncio.Event()
        self.smtp: aiosmtplib.SMTP | None = None
        self.totals = DeliveryReport()  # everything since start, for run --once's exit code

    def notify(self) -> None:
        self.wake.set()

    async def deliver_due(self, ignore_schedule: bool = False) -> DeliveryReport:
        """One pass over due rows (every pending row with ``ignore_schedule``)."""
        query = OutboundMessage.filter(status=OutboundStatus.PENDING)
        if not ignore_schedule:
            query = query.filter(next_try_at__lte=self.clock())
        rows = await query.order_by("id").limit(self.batch)
        report = DeliveryReport()
        for row in rows:
            if not await self._deliver(row, report):
                break
        self.totals.add(report)
        return report

    async def _deliver(self, row: OutboundMessage, report: DeliveryReport) -> bool:
        """Send one row; False when the server is unreachable and the pass should stop."""
        try:
            smtp = await self._connection()
            # Hold the database's write turn across the send: the server's "250" and our commit
            # of "sent" are then a few hundred microseconds apart, the only crash window in which
            # a message goes out twice (it must not wait behind a batch of inbound mail).
            async with in_transaction():
                await smtp.sendmail(row.mail_from, list(row.recipients), row.raw_bytes)
                accepted = time.monotonic()
                await OutboundMessage.filter(id=row.id).update(
                    status=OutboundStatus.SENT, sent_at=self.clock(), attempts=F("attempts") + 1, last_error="")
            report.windows.append(time.monotonic() - accepted)
            report.sent += 1
            log.info("sent %s (%s) to %s", row.message_id, row.kind, ", ".join(row.recipients))
            return True
        except (aiosmtplib.SMTPConnectResponseError, aiosmtplib.SMTPHeloError,
                aiosmtplib.SMTPAuthenticationError) as exc:
            # The server turned the session down, not this message: try again later.
            await self._close()
            await self._defer(row, f"{exc.code} {exc.message}", report)
            return False
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0]
            await self._failed_or_deferred(row, first.code, first.message, report)
            return True
        except aiosmtplib.SMTPResponseException as exc:
            await self._failed_or_deferred(row, exc.code, exc.message, report)
            return True
        except (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError) as exc:
            await self._close()
            await self._defer(row, f"{type(exc).__name__}: {exc}", report)
            return False

    async def _failed_or_deferred(self, row: OutboundMessage, code: int, message: str,
                                  report: DeliveryReport) -> None:
        text = f"{code} {message}"
        if 500 <= code < 600:
            await OutboundMessage.filter(id=row.id).update(
                status=OutboundStatus.FAILED, attempts=F("attempts") + 1, last_error=text[:2000])
            report.failed += 1
            log.error("gave up on %s to %s: %s", row.message_id, ", ".join(row.recipients), text)
        else:
            await self._defer(row, text, report)
        await self._reset_transaction()

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
        log.warning("deferred %s for %.0f s: %s", row.message_id, delay, error)

    async def _connection(self) -> aiosmtplib.SMTP:
        if self.smtp is not None and self.smtp.is_connected:
            return self.smtp
        cfg = self.config
        context = tls_context(cfg) if cfg.security != "none" else None
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host, port=cfg.port, timeout=cfg.timeout,
            use_tls=cfg.security == "tls", start_tls=cfg.security == "starttls",
            tls_context=context,
        )
        await smtp.connect()
        if cfg.username and cfg.password:
            await smtp.login(cfg.username, cfg.password.reveal())
        self.smtp = smtp
        return smtp

    async def _reset_transaction(self) -> None:
        if self.smtp is not None and self.smtp.is_connected:
            try:
                await self.smtp.rset()
            except aiosmtplib.SMTPException:
                await self._close()

    async def _close(self) -> None:
        smtp, self.smtp = self.smtp, None
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
                wait = await self.next_due_in(60.0)
            except Exception:  # a database hiccup must not end delivery for good
                log.exception("outbox pass failed")
                wait = 5.0
            await _wait_any(self.wake, stop, wait)
            if not stop.is_set():
                await asyncio.sleep(0)
        await self._close()

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
        await self._close()
        return total

    async def close(self) -> None:
        await self._close()


async def _wait_any(wake: asyncio.Event, stop: asyncio.Event, timeout: float) -> None:
    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
