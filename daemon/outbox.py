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

from daemon.addresses import is_valid
from daemon.config import SmtpConfig
from daemon.imap import tls_context
from daemon.outgoing import one_line
from daemon.turn import WriteTurn
from storage.models import OutboundMessage, OutboundStatus

log = logging.getLogger("ticketd.smtp")

Clock = Callable[[], datetime]

# Anything that goes wrong with the connection itself (dropped, hung, TLS, refused TCP): the
# server cannot take mail now, whatever the message.
TRANSPORT_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)

# A lane unused this long is closed with QUIT. Postfix in stress mode drops idle clients after
# 10 s (smtpd_timeout), so 5 s says goodbye before any common server gives up on us, while a
# burst of mail (a fetched backlog, a notify per ticket) still reuses its connections.
IDLE_AFTER = 5.0


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class DeliveryReport:
    sent: int = 0
    # Rows still pending after the pass: deferred with backoff, or not reached before a deadline.
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


class _Unsendable(Exception):
    """An address of this row cannot be written in an SMTP command at all."""


class Unreachable(Exception):
    """The server cannot or will not take mail right now: nothing to do with one message.

    Raised for everything before RCPT (greeting, EHLO/HELO, STARTTLS, AUTH, MAIL FROM) and for a
    connection that drops or hangs. ``refused`` is a 5xx answer: our settings need a human.
    """

    def __init__(self, reason: str, refused: bool = False) -> None:
        super().__init__(reason)
        self.refused = refused

    @classmethod
    def of(cls, exc: BaseException) -> "Unreachable":
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            return cls(f"{exc.code} {one_line(exc.message)}", refused=500 <= exc.code < 600)
        return cls(f"{type(exc).__name__}: {one_line(str(exc))}", refused=isinstance(exc, ValueError))


class EnvelopeError(ValueError):
    """An address cannot be written on the wire to this server."""

    def __init__(self, role: str, reason: str) -> None:
        super().__init__(reason)
        self.role = role


@dataclass(frozen=True)
class Envelope:
    """MAIL FROM / RCPT TO as this server can take them."""

    sender: str
    recipients: tuple[str, ...]
    utf8: bool = False

    @property
    def options(self) -> list[str]:
        return ["SMTPUTF8"] if self.utf8 else []

    @property
    def encoding(self) -> str:
        return "utf-8" if self.utf8 else "ascii"


def plan_envelope(sender: str, recipients: list[str], smtputf8: bool) -> Envelope:
    """SMTPUTF8 (RFC 6531) when an address needs it and the server offers it; else plain ASCII.

    Without SMTPUTF8 a non-ASCII domain goes out IDNA-encoded (RFC 5890), which every server
    understands; a non-ASCII local part has no ASCII form, so it raises EnvelopeError.
    """
    # aiosmtplib reads a "<...>" out of whatever it is given (parseaddr), so junk around an
    # address would reach another recipient: only a well-formed addr-spec goes on the wire.
    for role, address in (("sender", sender), *(("recipient", r) for r in recipients)):
        if (address or role == "recipient") and not is_valid(address):
            raise EnvelopeError(role, f"{role} {one_line(address)} is not a well-formed address")
    if sender.isascii() and all(r.isascii() for r in recipients):
        return Envelope(sender, tuple(recipients))
    if smtputf8:
        return Envelope(sender, tuple(recipients), utf8=True)
    return Envelope(_ascii(sender, "sender"), tuple(_ascii(r, "recipient") for r in recipients))


def _ascii(address: str, role: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii():
        raise EnvelopeError(role, f"{role} {one_line(address)} needs SMTPUTF8, which the server does not offer")
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        raise EnvelopeError(role, f"{role} {one_line(address)}: the domain has no IDNA form") from None


class OutboxSender:
    """Delivers due outbox rows over a few reused SMTP connections ("lanes").

    One row's trouble never reaches another row: after any error the lane is reset (RSET) or
    dropped, so the next row starts a clean transaction.
    """

    batch = 100

    def __init__(self, config: SmtpConfig, clock: Clock = utcnow, write_turn: WriteTurn | None = None,
                 lanes: int = 4, idle_after: float = IDLE_AFTER) -> None:
        self.config = config
        self.clock = clock
        # Held (shared) from DATA until "sent" commits: see daemon.turn.
        self.write_turn = write_turn or WriteTurn()
        self.lanes = lanes
        self.idle_after = idle_after
        self.wake = asyncio.Event()
        self.connections: list[aiosmtplib.SMTP | None] = [None] * lanes
        self.used = [0.0] * lanes  # time.monotonic() of each lane's last command
        self.totals = DeliveryReport()  # everything since start, for run --once's exit code

    def notify(self) -> None:
        self.wake.set()

    async def deliver_due(self, ignore_schedule: bool = False, deadline: float | None = None) -> DeliveryReport:
        """One pass over due rows (every pending row with ``ignore_schedule``).

        No lane starts a row after ``deadline`` (time.monotonic()); a row in hand is finished,
        which every SMTP read's timeout bounds.
        """
        query = OutboundMessage.filter(status=OutboundStatus.PENDING)
        if not ignore_schedule:
            query = query.filter(next_try_at__lte=self.clock())
        queue = deque(await query.order_by("id").limit(self.batch))
        report = DeliveryReport()
        trouble: list[Unreachable] = []
        lanes = range(min(self.lanes, len(queue)))
        outcomes = await asyncio.gather(*(self._lane(i, queue, trouble, report, deadline) for i in lanes),
                                        return_exceptions=True)
        if trouble:  # every row still waiting gets the backoff, not a tight retry loop
            for row in queue:
                await self._defer(row, str(trouble[0]), report, quiet=True)
            # One line a pass, not one a row: a refused session is one problem, however many rows wait.
            log.log(logging.ERROR if trouble[0].refused else logging.WARNING,
                    "SMTP %s:%d cannot take mail: %s; %d message(s) wait for the next try%s",
                    self.config.host, self.config.port, trouble[0], report.deferred,
                    " (check the [smtp] settings)" if trouble[0].refused else "")
        else:
            report.deferred += len(queue)  # not reached before the deadline: still pending, still due
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        self.totals.add(report)
        return report

    async def _lane(self, lane: int, queue: deque[OutboundMessage], trouble: list[Unreachable],
                    report: DeliveryReport, deadline: float | None) -> None:
        while queue and not trouble and (deadline is None or time.monotonic() < deadline):
            row = queue.popleft()
            try:
                await self._deliver(lane, row, report)
            except Unreachable as exc:
                trouble.append(exc)
                await self._defer(row, str(exc), report, quiet=True)
            finally:
                self.used[lane] = time.monotonic()

    async def _deliver(self, lane: int, row: OutboundMessage, report: DeliveryReport) -> None:
        """Send one row; a session problem raises Unreachable, the row's own fate is settled here."""
        try:
            smtp, envelope = await self._begin(lane, row)
        except EnvelopeError as exc:  # this recipient, on this server: nothing was sent
            await self._fail(row, str(exc), report)
            return
        try:
            for recipient in envelope.recipients:
                try:
                    await smtp.rcpt(recipient, encoding=envelope.encoding)
                except ValueError as exc:  # an address aiosmtplib will not put on the wire (a control)
                    raise _Unsendable(str(exc)) from None
            async with self.write_turn.shared():
                await smtp.data(row.raw_bytes)
                accepted = time.monotonic()
                await OutboundMessage.filter(id=row.id).update(
                    status=OutboundStatus.SENT, sent_at=self.clock(), attempts=F("attempts") + 1, last_error="")
            report.windows.append(time.monotonic() - accepted)
            report.sent += 1
            log.info("sent %s (%s) to %s", row.message_id, row.kind, one_line(", ".join(row.recipients)))
        except aiosmtplib.SMTPResponseException as exc:  # RCPT or DATA refused: this message, not the session
            await self._reset(lane)
            where = f" (recipient {one_line(exc.recipient)})" if isinstance(exc, aiosmtplib.SMTPRecipientRefused) else ""
            text = f"{exc.code} {one_line(exc.message)}{where}"
            if 500 <= exc.code < 600:
                await self._fail(row, text, report)
            else:
                await self._defer(row, text, report)
        except _Unsendable as exc:  # caught at RCPT only: a ValueError after DATA must not fail a sent row
            await self._reset(lane)
            await self._fail(row, f"cannot send: {one_line(str(exc))}", report)
        except TRANSPORT_ERRORS as exc:  # dropped or hung mid-transaction
            self._drop(lane)
            raise Unreachable.of(exc) from None
        except BaseException:  # cancelled (or the database failed) mid-transaction: state unknown
            self._drop(lane)
            raise

    async def _begin(self, lane: int, row: OutboundMessage) -> tuple[aiosmtplib.SMTP, Envelope]:
        """Connect if needed and send MAIL FROM: everything up to here is session level, except
        a recipient this server cannot take (EnvelopeError, raised before MAIL)."""
        current = self.connections[lane]
        reused = current is not None and current.is_connected
        while True:
            try:
                smtp = await self._connection(lane)
                envelope = plan_envelope(row.mail_from, list(row.recipients), smtp.supports_extension("smtputf8"))
                await smtp.mail(envelope.sender, options=envelope.options, encoding=envelope.encoding)
                return smtp, envelope
            except EnvelopeError as exc:
                if exc.role == "recipient":
                    raise
                await self._close(lane)
                raise Unreachable(str(exc), refused=True) from None
            except aiosmtplib.SMTPServerDisconnected as exc:
                self._drop(lane)
                if not reused:
                    raise Unreachable.of(exc) from None
                reused = False  # the server closed the connection we kept idle: one fresh try
            except (*TRANSPORT_ERRORS, ValueError) as exc:
                await self._close(lane)
                raise Unreachable.of(exc) from None

    async def _fail(self, row: OutboundMessage, reason: str, report: DeliveryReport) -> None:
        await OutboundMessage.filter(id=row.id).update(
            status=OutboundStatus.FAILED, attempts=F("attempts") + 1, last_error=reason[:2000])
        report.failed += 1
        log.error("gave up on %s to %s: %s", row.message_id, one_line(", ".join(row.recipients)), reason)

    async def _defer(self, row: OutboundMessage, error: str, report: DeliveryReport, quiet: bool = False) -> None:
        now = self.clock()
        if now - row.created_at > timedelta(seconds=self.config.give_up_after):
            await self._fail(row, f"gave up after {self.config.give_up_after:.0f} s: {error}", report)
            return
        delay = min(self.config.retry_max, self.config.retry_base * 2 ** min(row.attempts, 30))
        delay *= random.uniform(0.8, 1.2)  # jitter: many deferred rows must not retry in lockstep
        await OutboundMessage.filter(id=row.id).update(
            attempts=F("attempts") + 1, next_try_at=now + timedelta(seconds=delay), last_error=error[:2000])
        report.deferred += 1
        # Quiet for a session problem: deliver_due says it once for the whole pass.
        log.log(logging.DEBUG if quiet else logging.WARNING, "deferred %s for %.1f s: %s",
                row.message_id, delay, error)

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
        self.connections[lane] = smtp  # before connect: a refused AUTH or EHLO still gets its QUIT
        await smtp.connect()
        if cfg.username and cfg.password:
            await smtp.login(cfg.username, cfg.password.reveal())
        if smtp.is_ehlo_or_helo_needed:  # the extensions (SMTPUTF8) are known only after EHLO
            try:
                await smtp.ehlo()
            except aiosmtplib.SMTPHeloError:
                await smtp.helo()
        return smtp

    async def _reset(self, lane: int) -> None:
        """Abort the transaction in progress; a lane that cannot RSET is dropped instead."""
        smtp = self.connections[lane]
        if smtp is not None and smtp.is_connected:
            try:
                await smtp.rset()
                return
            except TRANSPORT_ERRORS:
                pass
        self._drop(lane)

    async def _close(self, lane: int) -> None:
        """Say QUIT (bounded by the configured timeout) and forget the connection."""
        smtp, self.connections[lane] = self.connections[lane], None
        if smtp is None or not smtp.is_connected:
            return
        try:
            await smtp.quit()
        except (*TRANSPORT_ERRORS, ValueError):  # already gone or hung: just let go
            smtp.close()

    def _drop(self, lane: int) -> None:
        """Forget a connection in an unknown state without a word: a fresh one is clean."""
        smtp, self.connections[lane] = self.connections[lane], None
        if smtp is not None:
            smtp.close()

    async def close_idle(self) -> None:
        """QUIT every lane unused for ``idle_after`` seconds, before the server drops it."""
        now = time.monotonic()
        for lane, smtp in enumerate(self.connections):
            if smtp is not None and now - self.used[lane] >= self.idle_after:
                await self._close(lane)

    def _idle_in(self, cap: float) -> float:
        """Seconds until the next open lane is due for close_idle (``cap`` if none is open)."""
        now = time.monotonic()
        due = [self.used[lane] + self.idle_after - now for lane, smtp in enumerate(self.connections) if smtp]
        return max(0.0, min([cap, *due]))

    async def next_due_in(self, cap: float) -> float:
        row = await OutboundMessage.filter(status=OutboundStatus.PENDING).order_by("next_try_at") \
            .only("id", "next_try_at").first()
        if row is None:
            return cap
        return max(0.0, min(cap, (row.next_try_at - self.clock()).total_seconds()))

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; woken early by ``notify``; idle lanes are closed."""
        while not stop.is_set():
            self.wake.clear()
            try:
                while (await self.deliver_due()).sent == self.batch:
                    pass
                # Rows written by another process (ingest) are found within 5 s.
                wait = await self.next_due_in(5.0)
                await self.close_idle()
            except Exception:  # a database hiccup must not end delivery for good
                log.exception("outbox pass failed")
                wait = 5.0
            await _wait_any(self.wake, stop, self._idle_in(wait))
        await self.close()

    async def drain(self, seconds: float, ignore_schedule: bool = False) -> DeliveryReport:
        """Deliver what is due until nothing is left or ``seconds`` pass.

        The deadline is handed to the pass instead of cancelling it (asyncio.wait_for did):
        a send cancelled between the server's 250 and our commit is the duplicate we avoid,
        and the timeout must not escape to the caller.
        """
        total = DeliveryReport()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            report = await self.deliver_due(ignore_schedule, deadline)
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
