"""One task per mailbox: fetch new UIDs, store them, process them, then act on the server."""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

from aioimaplib import aioimaplib

from ticketd.daemon import logcontext
from ticketd.daemon.config import MailboxConfig
from ticketd.daemon.health import MailboxHealth
from ticketd.daemon.imap import FetchedMessage, ImapError, ImapSession
from ticketd.daemon.leases import Lease, LeaseLost
from ticketd.daemon.pause import pause
from ticketd.daemon.pipeline import Processor
from ticketd.storage import intake
from ticketd.storage.errors import is_temporary
from ticketd.storage.models import InboundMessage, InboundStatus, Mailbox

log = logging.getLogger("ticketd.intake")

T = TypeVar("T")
IDLE_RENEW = 25 * 60.0  # RFC 2177: servers may drop an IDLE after 30 minutes
NETWORK_ERRORS = (OSError, asyncio.TimeoutError, ImapError, aioimaplib.AioImapException)


@dataclass
class SyncReport:
    fetched: int = 0
    processed: int = 0
    deferred: int = 0  # left for a later pass (a filter said so, e.g. spamd unreachable)
    after_actions: int = 0


class MailboxWorker:
    """Keeps one IMAP folder drained into tickets; its failures stay its own."""

    def __init__(self, config: MailboxConfig, processor: Processor, max_bytes: int,
                 session_factory: Callable[[MailboxConfig], ImapSession] | None = None,
                 backoff_base: float = 1.0, backoff_max: float = 300.0,
                 first_session: ImapSession | None = None, health: MailboxHealth | None = None,
                 lease: Lease | None = None) -> None:
        self.config = config
        self.processor = processor
        self.max_bytes = max_bytes
        self.session_factory = session_factory or (lambda box: ImapSession(box.imap))
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.stop = asyncio.Event()
        # Set once the first login succeeded or failed: the daemon reports READY to systemd after
        # every mailbox's first attempt, so a server that is down delays it by one timeout only.
        self.tried = asyncio.Event()
        # What `ticketd status` and the metrics show of this mailbox (written by daemon.health).
        self.health = health or MailboxHealth(config.name, _secrets(config))
        self._first = first_session  # begun at start-up (daemon.start): the first connection is this one
        # The instance's hold on the folder (daemon.leases): the session is open only while it is
        # ours, and its work is cancelled the moment it is not. None: always ours (tests, tools).
        self.lease = lease
        self._failures = 0  # connection attempts failed in a row

    @property
    def connected(self) -> bool:
        """Logged in now (for the service status)."""
        return self.health.connected

    def _session(self) -> ImapSession:
        first, self._first = self._first, None
        return first or self.session_factory(self.config)

    @logcontext.mailbox_task
    async def run_once(self) -> bool:
        """Drain the folder once; False (logged) if the server could not be reached or failed.

        A folder another instance holds is left to it (True: nothing went wrong).
        """
        if self.lease is not None and not self.lease.held.is_set():
            answer = await self._once_not_ours(self.lease)
            if answer is not None:
                return answer
        self.health.held = True
        session = self._session()
        try:
            return await self._holding(self._drain_once(session))
        except LeaseLost as exc:
            log.error("mailbox %s: lease lost (%s): stopped before the folder was drained", self.config.name, exc)
            return False
        except Exception as exc:
            self._lost(exc)
            if not _passing(exc):
                raise
            _said(exc, log.error)("mailbox %s: %s", self.config.name, _describe(exc))
            return False
        finally:
            self.health.stopped()  # after a failure: not connected already, and its error stays
            await session.close()

    async def _once_not_ours(self, lease: Lease) -> bool | None:
        """run --once with the lease not ours: None once it is (its holder died), else run_once's answer."""
        self.health.held = False
        other = lease.other
        if not other:  # the database did not answer: the mail waits for the next run
            log.error("mailbox %s: its lease could not be taken (see above); left for the next run", self.config.name)
            return False
        log.info("mailbox %s: held by instance %s; waiting up to %.0f s to see it renew its lease (else it died)",
                 self.config.name, other, lease.patience)
        if not await lease.outlived():
            log.info("mailbox %s: held by instance %s; left to it", self.config.name, other)
            return True
        log.info("mailbox %s: taken over from instance %s, which stopped renewing its lease", self.config.name, other)
        return None

    async def _drain_once(self, session: ImapSession) -> bool:
        await session.open()
        self.health.up()
        report = await self.sync(session)
        if report.deferred:
            log.warning("mailbox %s: %d message(s) deferred to a later pass", self.config.name, report.deferred)
        return report.deferred == 0

    @logcontext.mailbox_task
    async def run(self) -> None:
        """Sync, then IDLE (or poll), until ``stop``; reconnect with backoff after any error.

        Only while the instance holds the folder's lease: lost, the session closes at once and
        the worker waits to hold it again.
        """
        while not self.stop.is_set():
            if not await self._wait_for_lease():
                break
            session = self._session()
            try:
                await self._holding(self._serve(session))
            except LeaseLost as exc:
                self.health.stopped()
                log.warning("mailbox %s: lease lost (%s): fetching stopped until it is ours again",
                            self.config.name, exc)
            except Exception as exc:  # a bug in one mailbox must not end it for good, nor touch the others
                self._lost(exc)
                self.tried.set()
                self._failures += 1
                if _passing(exc):  # the server or the database: the messages wait where they are
                    delay = min(self.backoff_max, self.backoff_base * 2 ** min(self._failures - 1, 20))
                    delay *= random.uniform(0.5, 1.5)  # jitter: reconnects of many mailboxes spread out
                    _said(exc, log.warning)("mailbox %s: %s; reconnecting in %.1f s", self.config.name, _describe(exc),
                                            delay)
                else:
                    delay = min(self.backoff_max, 30.0)
                    log.exception("mailbox %s: unexpected error; reconnecting", self.config.name)
                await self._sleep(delay)
            finally:
                await session.close()
        self.health.stopped()

    async def _serve(self, session: ImapSession) -> None:
        await session.open()
        self.health.up()
        self.tried.set()
        if self._failures:
            log.info("mailbox %s: connected again after %d failed attempts", self.config.name, self._failures)
        self._failures = 0
        while not self.stop.is_set():
            await self.sync(session)
            await self._wait_for_mail(session)

    async def _wait_for_lease(self) -> bool:
        """True once the lease is ours; False when stopped first. A folder held elsewhere counts as tried."""
        if self.lease is None or self.lease.held.is_set():
            self.health.held = True
            return not self.stop.is_set()
        self.health.held = False
        self.tried.set()  # READY need not wait for a folder another instance fetches
        if not await self.lease.wait(self.stop):
            return False
        self.health.held = True
        return True

    async def _holding(self, work: Awaitable[T]) -> T:
        return await (self.lease.holding(work) if self.lease is not None else work)

    def _lost(self, exc: BaseException) -> None:
        self.health.down(_describe(exc))
        self.processor.metrics.reconnects[self.config.name] += 1

    async def sync(self, session: ImapSession) -> SyncReport:
        """Bring the database up to the folder: finish earlier work, then fetch what is new."""
        report = SyncReport()
        state = await intake.mailbox_state(self.config.name)
        if state.uidvalidity != session.uidvalidity:
            if state.uidvalidity is not None:
                log.warning("mailbox %s: UIDVALIDITY changed %s -> %s; re-reading the folder "
                            "(known messages are recognised as duplicates)",
                            self.config.name, state.uidvalidity, session.uidvalidity)
            await intake.reset_uidvalidity(state, session.uidvalidity)
        await self._recover(session, state, report)
        while not self.stop.is_set():
            uids = await session.uids_after(state.last_uid)
            self.health.checked(session.exists, len(uids))
            if uids:
                await self._drain(session, state, uids, report)
            elif not session.news.is_set():
                break
            # else: the server announced mail with the search's own response (Dovecot does, for
            # mail that came just before an IDLE's DONE); it would never repeat it to an IDLE.
        return report

    async def _drain(self, session: ImapSession, state: Mailbox, uids: list[int], report: SyncReport) -> None:
        """Keep three batches moving: k is committed while k+1 parses and k+2 is fetched.

        Commits stay in UID order; the IMAP connection runs one command at a time.
        """
        size = self.config.batch_size
        chunks = [uids[i:i + size] for i in range(0, len(uids), size)]
        rows, raws = await self._store(state, session.uidvalidity, chunks[0],
                                       await session.fetch(chunks[0], self.max_bytes), report)
        parsing = asyncio.ensure_future(self.processor.prepare(rows, self.config.name, raws))
        fetching = self._fetch_next(session, chunks, 1)
        done: list[InboundMessage] = []
        try:
            for i in range(len(chunks)):
                next_rows: list[InboundMessage] = []
                next_parsing = None
                if fetching is not None:
                    fetched = await fetching
                    await self._after(session, done, report)
                    done = []
                    next_rows, raws = await self._store(state, session.uidvalidity, chunks[i + 1], fetched, report)
                    # Prepared alongside batch k: spamd (the slow stage) never waits for a batch boundary.
                    next_parsing = asyncio.ensure_future(self.processor.prepare(next_rows, self.config.name, raws))
                    fetching = self._fetch_next(session, chunks, i + 2)
                prepared = await parsing
                outcomes = await self.processor.process(rows, self.config, prepared)
                report.processed += len(outcomes)
                report.deferred += sum(1 for o in outcomes if o.status == "deferred")
                done += [r for r in rows if r.status in InboundStatus.FINAL and not r.server_done]
                rows = next_rows
                if next_parsing is None:
                    break
                parsing = next_parsing
            await self._after(session, done, report)
        finally:
            for task in (fetching, parsing):
                if task is not None and not task.done():
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)

    def _fetch_next(self, session: ImapSession, chunks: list[list[int]],
                    index: int) -> asyncio.Future[list[FetchedMessage]] | None:
        if index >= len(chunks) or self.stop.is_set():
            return None
        return asyncio.ensure_future(session.fetch(chunks[index], self.max_bytes))

    async def _store(self, state: Mailbox, uidvalidity: int, uids: list[int], fetched: list[FetchedMessage],
                     report: SyncReport) -> tuple[list[InboundMessage], dict[int, bytes]]:
        """The new rows, and their bytes by row id: what was just stored need not be read back."""
        missing = sorted(set(uids) - {m.uid for m in fetched})
        if missing:
            log.warning("mailbox %s: UIDs %s vanished before they could be fetched", self.config.name, missing)
        report.fetched += len(fetched)
        async with self.processor.write_turn.exclusive():
            rows = await intake.store_batch(state, uidvalidity, [_incoming(m, self.max_bytes) for m in fetched],
                                            self.max_bytes)
        self._count(fetched, rows)
        by_uid = {m.uid: m.raw for m in fetched}
        return rows, {row.id: by_uid[row.uid] for row in rows if row.uid in by_uid}

    def _count(self, fetched: list[FetchedMessage], rows: list[InboundMessage]) -> None:
        """A committed batch, for the status and the metrics (once a batch, not once a message)."""
        self.health.fetched(len(fetched))
        metrics = self.processor.metrics
        metrics.fetched[self.config.name] += len(fetched)
        too_large = sum(1 for row in rows if row.status == InboundStatus.QUARANTINED)
        if too_large:
            metrics.quarantined["too_large"] += too_large

    async def _recover(self, session: ImapSession, state: Mailbox, report: SyncReport) -> None:
        """Rows a crash left behind: stored but unprocessed, or committed but not yet acted on."""
        leftover = await intake.unprocessed(state)
        stale = sum(1 for row in leftover if row.uidvalidity != session.uidvalidity)
        if stale:  # their UIDs mean nothing now; the content still becomes a ticket
            log.info("mailbox %s: processing %d message(s) from an older UIDVALIDITY", self.config.name, stale)
        if leftover:
            outcomes = await self.processor.process(leftover, self.config)
            report.processed += len(outcomes)
            report.deferred += sum(1 for o in outcomes if o.status == "deferred")
        pending = await intake.pending_after_actions(state, session.uidvalidity)
        if pending:
            await self._after(session, pending, report)

    async def _after(self, session: ImapSession, rows: list[InboundMessage], report: SyncReport) -> None:
        """The server-side step, only for rows whose outcome is committed."""
        if not rows:
            return
        action = self.config.after_processing
        whole = [r.uid for r in rows if not r.truncated and r.uid is not None]
        partial = [r.uid for r in rows if r.truncated and r.uid is not None]
        if whole and action.action == "seen":
            await session.mark_seen(whole)
        elif whole and action.action == "delete":
            await session.delete(whole)
        elif whole and action.action == "move":
            assert action.folder is not None
            await session.move(whole, action.folder)
        if partial:  # we hold only its header: leave it on the server, marked read
            await session.mark_seen(partial)
        await intake.mark_server_done([r.id for r in rows])
        report.after_actions += len(rows)

    async def _wait_for_mail(self, session: ImapSession) -> None:
        if self.stop.is_set():
            return
        if self.config.idle and session.supports_idle:
            # Told of ``stop`` rather than cancelled: IDLE then ends with DONE, and LOGOUT need not wait.
            await session.wait_for_news(min(self.config.poll_interval, IDLE_RENEW), self.stop)
        else:
            await self._sleep(self.config.poll_interval)

    async def _sleep(self, seconds: float) -> None:
        await pause(self.stop, seconds)


def _incoming(message: FetchedMessage, max_bytes: int) -> intake.Incoming:
    return intake.Incoming(raw=message.raw, size=message.size, uid=message.uid, too_large=message.size > max_bytes)


def _secrets(config: MailboxConfig) -> tuple[str, ...]:
    password = config.imap.password
    return (password.reveal(),) if password is not None else ()


def _passing(exc: BaseException) -> bool:
    """A network failure, or a condition of the system such as a locked database."""
    return isinstance(exc, NETWORK_ERRORS) or is_temporary(exc)


def _said(exc: BaseException, level: Callable[..., None]) -> Callable[..., None]:
    """``level``, or debug for an error already logged once (daemon.oauth: one line per incident)."""
    return log.debug if getattr(exc, "reported", False) else level


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
