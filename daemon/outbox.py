"""The outbox sender: deliver committed outbound rows over SMTP, retrying with backoff."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable

import aiosmtplib
from tortoise.expressions import F
from tortoise.queryset import QuerySet

from ticketd.daemon import logcontext
from ticketd.daemon.config import SmtpConfig
from ticketd.daemon.metrics import Metrics
from ticketd.daemon import outbox_pipeline as pipeline
from ticketd.daemon.instance import instance_id
from ticketd.daemon.outbox_due import Due, claimed, due_rows, lapse_in, next_due, release, waiting
from ticketd.daemon.outbox_envelope import Envelope, EnvelopeError, plan_envelope
from ticketd.daemon.outbox_chain import Chains, DeliveryReport, Pass
from ticketd.daemon.outbox_pipeline import FirstFlight
from ticketd.daemon.outbox_lanes import IDLE_AFTER, SESSION_CAP_FOR, TRANSPORT_ERRORS, Lanes, SessionLimit, Unreachable
from ticketd.daemon.outage import Outage
from ticketd.daemon.outgoing import one_line
from ticketd.daemon.sent import Accepted, SentLedger
from ticketd.daemon.turn import WriteTurn
from ticketd.storage import clock
from ticketd.storage.errors import describe, is_temporary
from ticketd.storage.models import OutboundMessage, OutboundStatus

if TYPE_CHECKING:
    from ticketd.daemon.oauth import TokenManager

__all__ = ["DeliveryReport", "Envelope", "EnvelopeError", "OutboxSender", "Unreachable", "plan_envelope"]

log = logging.getLogger("ticketd.smtp")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return clock.now()


class _Unsendable(Exception):
    """An address of this row cannot be written in an SMTP command at all."""


class _ClaimLapsing(Exception):
    """Too little of the row's claim is left to send its content: another instance may take it."""


class OutboxSender:
    """Delivers due outbox rows over a few reused SMTP connections ("lanes").

    One row's trouble never reaches another row: after any error the lane is reset (RSET) or
    dropped, so the next row starts a clean transaction. Rows are claimed for ``instance`` before
    they are sent (daemon.outbox_due), so other instances on the database never send them too.
    """

    batch = 100

    def __init__(self, config: SmtpConfig, clock: Clock = utcnow, write_turn: WriteTurn | None = None,
                 lanes: int = 4, idle_after: float = IDLE_AFTER, metrics: Metrics | None = None,
                 tokens: TokenManager | None = None, instance: str | None = None) -> None:
        self.config = config
        self.instance = instance or instance_id()  # what this sender's claims say
        self.clock = clock
        self.metrics = metrics or Metrics()
        # Held (shared) from DATA until "sent" is committed: see daemon.turn.
        self.write_turn = write_turn or WriteTurn()
        self.lanes = Lanes(config, lanes, idle_after, tokens)  # tokens: daemon.oauth, for auth = "oauth2"
        self.ledger = SentLedger()  # "sent" of all lanes, grouped into one commit
        self.chains = Chains(self.lanes, config.timeout)  # per lane, its next row already in flight
        self.wake = asyncio.Event()
        self.totals = DeliveryReport()  # everything since start, for run --once's exit code
        # Sessions that failed, for the log (one line a step of the rows' own backoff).
        self.outage = Outage(config.retry_base, config.retry_max, lambda: self.clock().timestamp())

    @property
    def connections(self) -> list[aiosmtplib.SMTP | None]:
        return self.lanes.connections

    def notify(self) -> None:
        self.wake.set()

    async def deliver_due(self, ignore_schedule: bool = False, deadline: float | None = None) -> DeliveryReport:
        """One pass over due rows (every pending row with ``ignore_schedule``).

        No lane starts a row after ``deadline`` (time.monotonic()); a row in hand is finished,
        which every SMTP read's timeout bounds.
        """
        now = None if ignore_schedule else self.clock()
        claim = await due_rows(now, self.ledger.unrecorded, self.batch, self.instance, self.config.timeout)
        queue = deque(claim.rows)
        report = DeliveryReport()
        trouble: list[Unreachable] = []
        lanes = range(min(self.lanes.usable(), len(queue)))
        this = Pass(queue, trouble, report, deadline, claim)
        outcomes = await asyncio.gather(*(self._lane(i, this) for i in lanes), return_exceptions=True)
        if trouble:  # every row still waiting gets the backoff, not a tight retry loop
            for row in queue:
                await self._defer(row, str(trouble[0]), report, quiet=True, why="unreachable")
            self._down(trouble[0], report.deferred)
        else:
            # Not reached before the deadline or within the claim: still pending, still due, and
            # given back, so the next pass (of any instance) takes them without waiting for the claim.
            report.deferred += len(queue)
            await release(self.instance, [row.id for row in queue])
            if lanes and (tries := self.outage.answered()):
                log.info("SMTP %s:%d takes mail again after %d failed tries", self.config.host, self.config.port, tries)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        self.totals.add(report)
        return report

    def _down(self, problem: Unreachable, waiting: int) -> None:
        """One line a backoff step, not one a pass: rows fall due one by one while the server is down,
        and a refused session is one problem however many rows wait."""
        tries = self.outage.failed()
        if tries:
            log.log(logging.ERROR if problem.refused else logging.WARNING,
                    "SMTP %s:%d cannot take mail: %s; %d message(s) wait for the next try%s%s",
                    self.config.host, self.config.port, problem, waiting,
                    f" ({tries} tries failed since the last line)" if tries > 1 else "",
                    " (check the [smtp] settings)" if problem.refused else "")

    async def _lane(self, lane: int, this: Pass) -> None:
        async with self.write_turn.lane():  # rows in hand: it goes send after send in its slot
            try:
                while (row := self.chains.next_row(lane, this)) is not None:
                    try:
                        with logcontext.outbound(row.id, row.message_id, row.ticket):  # its lines say which row
                            await self._deliver(lane, row, this)
                    except SessionLimit as limit:  # nothing of the row went: the other lanes take it
                        this.queue.appendleft(row)
                        self._limited(limit)
                        return
                    except Unreachable as exc:
                        this.trouble.append(exc)
                        await self._defer(row, str(exc), this.report, quiet=True, why="unreachable")
                    finally:
                        self.lanes.touch(lane)
            finally:
                self.chains.give_back(lane, this.queue)

    async def _deliver(self, lane: int, row: Due, this: Pass) -> None:
        """Send one row; a session problem raises Unreachable, the row's own fate is settled here."""
        report = this.report
        try:
            accepted = await self._transaction(lane, row, this)
        except _ClaimLapsing:  # nothing delivered: the content was not sent (after a 354 only a drop ends DATA)
            self.lanes.drop(lane)
            await release(self.instance, [row.id])
            report.deferred += 1
            log.warning("%s not sent: too little of its claim was left for the content (slow SMTP server?); "
                        "given back for the next pass", row.message_id)
        except EnvelopeError as exc:  # this recipient, on this server: nothing was sent
            await self._fail(row, str(exc), report, why="unsendable")
        except aiosmtplib.SMTPResponseException as exc:  # RCPT or DATA refused: this message, not the session
            await self.lanes.reset(lane)
            where = f" (recipient {one_line(exc.recipient)})" if isinstance(exc, aiosmtplib.SMTPRecipientRefused) else ""
            text = f"{exc.code} {one_line(exc.message)}{where}"
            if 500 <= exc.code < 600:
                await self._fail(row, text, report, why="rejected")
            else:
                await self._defer(row, text, report, why="deferred")
        except _Unsendable as exc:  # caught at RCPT only: a ValueError after DATA must not fail a sent row
            await self.lanes.reset(lane)
            await self._fail(row, f"cannot send: {one_line(str(exc))}", report, why="unsendable")
        except TRANSPORT_ERRORS as exc:  # dropped or hung mid-transaction
            self.lanes.drop(lane)
            raise Unreachable.of(exc) from None
        except Unreachable:  # the lane is closed already
            raise
        except BaseException:  # cancelled mid-transaction: state unknown
            self.lanes.drop(lane)
            raise
        else:
            await self._record(row, accepted, report, this.deadline)

    async def _transaction(self, lane: int, row: Due, this: Pass) -> Accepted:
        """MAIL, RCPT, DATA; returns once the first commit of "sent" was tried."""
        smtp, envelope, flight = await self._begin(lane, row)  # connecting and MAIL/RCPT may overlap
        if flight is None:  # no PIPELINING: command by command, an inbound transaction still has no 250
            for recipient in envelope.recipients:
                try:
                    await smtp.rcpt(recipient, encoding=envelope.encoding)
                except ValueError as exc:  # an address aiosmtplib will not put on the wire (a control)
                    raise _Unsendable(str(exc)) from None
        elif (refusal := flight.refusal()) is not None:
            raise refusal
        async with self.write_turn.shared() as send:
            if not this.claim.may_send_content():  # the turn, or a slow server, took too long
                raise _ClaimLapsing()
            if flight is None:
                await smtp.data(row.raw_bytes)
            else:
                await self.chains.send_content(lane, smtp, row, this)
            send.accepted()
            accepted = self.ledger.add(row.id, row.message_id, self.clock())  # no await since the 250
            await accepted.tried.wait()
        return accepted

    async def _record(self, row: Due, accepted: Accepted, report: DeliveryReport,
                      deadline: float | None) -> None:
        """Wait for the row's "sent" commit (a locked database is retried) before the lane goes on."""
        window = await self.ledger.recorded(accepted, deadline)
        if window is None:  # the deadline passed first: still pending in the database
            report.deferred += 1
            return
        report.windows.append(window)
        report.sent += 1
        self.metrics.acknowledged(row.kind, row.message_id, accepted.sent_at)
        log.info("sent %s (%s) to %s", row.message_id, row.kind, one_line(", ".join(row.recipients)))

    async def _begin(self, lane: int, row: Due) -> tuple[aiosmtplib.SMTP, Envelope, FirstFlight | None]:
        """Send MAIL FROM (with RCPT TO and DATA where the server offers PIPELINING), reconnecting
        once if the kept connection was closed: everything up to here is session level, except
        a recipient this server cannot take (EnvelopeError, raised before MAIL) and the replies
        to RCPT and DATA in the flight."""
        flight = self.chains.take_flight(lane)  # sent behind the row before
        # A server that closed a connection in use (after so many messages, say) gets one fresh try too.
        reused = flight is not None or self.lanes.is_open(lane)
        while True:
            connecting = False  # a fresh session being opened: its refusal may be the server's limit
            try:
                if flight is not None:
                    landing, flight = flight, None
                    return landing.smtp, landing.planned.envelope, await landing.landed(self.config.timeout)
                connecting = not self.lanes.is_open(lane)
                smtp = await self.lanes.connection(lane)
                connecting = False
                envelope = plan_envelope(row.mail_from, list(row.recipients), smtp.supports_extension("smtputf8"))
                if pipeline.offered(smtp):
                    return smtp, envelope, await pipeline.first_flight(smtp, envelope, self.config.timeout)
                await smtp.mail(envelope.sender, options=envelope.options, encoding=envelope.encoding)
                return smtp, envelope, None
            except EnvelopeError as exc:
                if exc.role == "recipient":
                    raise
                await self.lanes.close(lane)
                raise Unreachable(str(exc), refused=True) from None
            except aiosmtplib.SMTPServerDisconnected as exc:
                self.lanes.drop(lane)
                if not reused:
                    raise await self._unreachable(lane, exc, connecting) from None
                reused = False  # the server closed the connection we kept idle: one fresh try
            except (*TRANSPORT_ERRORS, ValueError) as exc:
                await self.lanes.close(lane)
                raise await self._unreachable(lane, exc, connecting) from None

    async def _unreachable(self, lane: int, exc: BaseException, connecting: bool) -> Unreachable | SessionLimit:
        problem = Unreachable.of(exc)
        if not connecting:
            return problem
        # Lanes open side by side: those still being greeted decide whether this was the server's limit.
        await self.lanes.settled(lane, self.config.timeout)
        return self.lanes.refused_beside(lane, problem) or problem

    def _limited(self, limit: SessionLimit) -> None:
        if self.lanes.limit(limit.taken):  # one line a lower limit, not one a refused session
            log.warning("SMTP %s:%d refused another session beside %d of ours (%s): sending on %d for the next "
                        "%d minutes (smtp.connections = %d)", self.config.host, self.config.port, limit.taken,
                        limit.problem, self.lanes.usable(), SESSION_CAP_FOR // 60, len(self.lanes))

    async def _fail(self, row: Due, reason: str, report: DeliveryReport, why: str) -> None:
        """Give the row up; ``why`` is the metrics' reason (rejected, unsendable, expired)."""
        await self._ours(row).update(  # ours still: see _defer
            status=OutboundStatus.FAILED, attempts=F("attempts") + 1, last_error=reason[:2000],
            claimed_by=None, claimed_until=None)
        report.failed += 1
        self.metrics.gave_up(row.message_id, why)
        log.error("gave up on %s to %s: %s", row.message_id, one_line(", ".join(row.recipients)), reason)

    def _ours(self, row: Due) -> QuerySet[OutboundMessage]:
        """The row, where it is still this instance's (outbox_due.claimed: rows on SQLite are nobody's)."""
        found = OutboundMessage.filter(id=row.id)
        return found.filter(claimed_by=self.instance) if claimed() else found

    async def _defer(self, row: Due, error: str, report: DeliveryReport, quiet: bool = False,
                     why: str = "deferred") -> None:
        """Try the row again later; ``why`` is the metrics' reason (deferred: a 4xx, or unreachable)."""
        now = self.clock()
        if now - row.created_at > timedelta(seconds=self.config.give_up_after):
            await self._fail(row, f"gave up after {self.config.give_up_after:.0f} s: {error}", report, why="expired")
            return
        delay = min(self.config.retry_max, self.config.retry_base * 2 ** min(row.attempts, 30))
        delay *= random.uniform(0.8, 1.2)  # jitter: many deferred rows must not retry in lockstep
        # Only while the row is ours: an instance that took it after our claim lapsed (a database
        # that refused us for longer) decides its fate now. A lapsed claim nobody took is still ours.
        await self._ours(row).update(
            attempts=F("attempts") + 1, next_try_at=now + timedelta(seconds=delay), last_error=error[:2000],
            claimed_by=None, claimed_until=None)
        report.deferred += 1
        self.metrics.send_failures[why] += 1
        # Quiet for a session problem: deliver_due says it once for the whole pass.
        log.log(logging.DEBUG if quiet else logging.WARNING, "deferred %s for %.1f s: %s",
                row.message_id, delay, error)

    async def close_idle(self) -> None:
        """QUIT every lane unused for ``idle_after`` seconds, before the server drops it."""
        await self.lanes.close_idle()

    async def next_due_in(self, cap: float) -> float:
        row = await next_due().first()
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
                # Rows written by another process (ingest) are found within 5 s; rows notified
                # during the pass are due now, no need to ask.
                wait = 0.0 if self.wake.is_set() else await self.next_due_in(5.0)
                await self.close_idle()
            except Exception:  # a database hiccup must not end delivery for good
                log.exception("outbox pass failed")
                wait = 5.0
            await _wait_any(self.wake, stop, self.lanes.idle_in(wait))
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
            try:
                report = await self.deliver_due(ignore_schedule, deadline)
            except Exception as exc:  # the claim is a write: SQLite's lock may be held past busy_timeout
                if not is_temporary(exc):
                    raise
                now = None if ignore_schedule else self.clock()
                total.deferred += await waiting(now)  # a read: no lock to wait for; they all still wait
                log.warning("outbox: cannot claim rows to send now (%s); %d wait for the next run",
                            describe(exc), total.deferred)
                break
            total.add(report)
            # `run --once` (every pending row now) also sends what a killed run had claimed, if the claim
            # ends within the drain; a daemon's stop does not wait for other instances' rows.
            if report.sent == 0 and not (ignore_schedule and await self._claims_lapse_before(deadline)):
                break
        await self.close()
        return total

    async def _claims_lapse_before(self, deadline: float) -> bool:
        """Wait for the first claim of another instance on a pending row to lapse, if it does before
        ``deadline`` (time.monotonic()); False if none does."""
        wait = await lapse_in(None, self.instance)
        if wait is None or time.monotonic() + wait >= deadline:
            return False
        log.info("outbox: waiting %.1f s for another instance's claim on due rows to end", wait)
        await asyncio.sleep(wait + 0.05)
        return True

    async def close(self) -> None:
        """Record what the server accepted (a last try), give back our claims, then QUIT every lane."""
        await self.ledger.close()
        try:  # rows of a pass cut short (cancelled): the next instance need not wait out the claim
            await release(self.instance)
        except Exception as exc:  # the database is away: the claims lapse by themselves
            log.warning("cannot give back the outbox rows claimed by %s (%s); others take them when the "
                        "claim ends", self.instance, one_line(str(exc)))
        await self.lanes.close_all()


async def _wait_any(wake: asyncio.Event, stop: asyncio.Event, timeout: float) -> None:
    waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())}
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
