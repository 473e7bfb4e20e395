"""What `ticketd status` reads from another shell: each mailbox's connection, written by the daemon.

The workers only set fields of their ``MailboxHealth`` in memory (no await, no I/O); the
``HealthWriter`` task writes the rows that changed (table mailbox_health), at once after a
connect, a disconnect or an error and otherwise at most every ``INTERVAL`` seconds, and
rewrites every row each ``HEARTBEAT`` seconds, so a reader can tell a daemon that stopped
answering (a stale ``updated_at``) from a quiet mailbox. The hot path never writes here.

With [metrics] the same task reads the figures only the database knows (outbox depth, the
oldest pending row, steps due, each mailbox's backlog) every ``INTERVAL`` seconds, for the
scrape thread: that thread must never use the event loop's database connection, and a
connection of its own would be SQLite's alone (PostgreSQL is coming). So a scrape sees them
at most INTERVAL seconds old, while the oldest row's age is worked out at scrape time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from ticketd.daemon.metrics import DatabaseFigures, Metrics
from ticketd.daemon.outgoing import one_line
from ticketd.daemon.pause import pause
from ticketd.daemon.turn import WriteTurn
from ticketd.storage import clock, status
from ticketd.storage.errors import describe

log = logging.getLogger("ticketd.status")

INTERVAL = 5.0  # seconds between writes of changed rows, and between reads for the metrics
HEARTBEAT = 30.0  # every row is rewritten this often: `status` calls older rows stale
QUICK = 0.5  # a connect, disconnect or error is written this soon (errors of a flapping server coalesce)


@dataclass
class MailboxHealth:
    """One IMAP mailbox as its worker last saw it."""

    name: str
    secrets: tuple[str, ...] = ()  # never shown: a server echoing a password has it replaced
    connected: bool = False
    since: datetime | None = None  # when ``connected`` last changed
    last_check: datetime | None = None  # the last UID SEARCH the server answered
    last_fetch: datetime | None = None  # the last time messages were fetched
    last_error: str = ""
    last_error_at: datetime | None = None
    server_messages: int | None = None  # the folder's message count (EXISTS), as last told
    server_unfetched: int | None = None  # UIDs above the last stored one, at the last search, less those fetched since
    # This instance holds the mailbox's lease (daemon.leases): else the heartbeat leaves its row to the holder.
    held: bool = True
    version: int = 0  # bumped by every change; the writer remembers the one it wrote
    urgent: asyncio.Event = field(default_factory=asyncio.Event)  # set by changes that cannot wait

    def up(self) -> None:
        self.connected, self.since = True, clock.now()
        self._changed(urgent=True)

    def down(self, error: str) -> None:
        if self.connected or self.since is None:
            self.since = clock.now()
        self.connected = False
        self.last_error, self.last_error_at = self.redact(one_line(error, 500)), clock.now()
        self._changed(urgent=True)

    def stopped(self) -> None:
        """The daemon let go of the connection on purpose (a last error stays shown)."""
        if self.connected:
            self.connected, self.since = False, clock.now()
            self._changed(urgent=True)

    def checked(self, exists: int, new: int) -> None:
        self.last_check, self.server_messages, self.server_unfetched = clock.now(), exists, new
        self._changed()

    def fetched(self, count: int) -> None:
        self.last_fetch = clock.now()
        if self.server_unfetched is not None:
            self.server_unfetched = max(0, self.server_unfetched - count)
        self._changed()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _changed(self, urgent: bool = False) -> None:
        self.version += 1
        if urgent:
            self.urgent.set()


class HealthWriter:
    """The task that writes ``MailboxHealth`` rows and, with [metrics], reads the database's figures."""

    def __init__(self, boxes: list[MailboxHealth], write_turn: WriteTurn, metrics: Metrics | None = None,
                 interval: float = INTERVAL, heartbeat: float = HEARTBEAT, holder: str | None = None) -> None:
        self.boxes = boxes
        # This instance's id: a row is not overwritten while another instance holds its mailbox's lease.
        self.holder = holder
        self.write_turn = write_turn
        self.metrics = metrics  # None: no endpoint, nobody to read the figures for
        self.interval, self.heartbeat = interval, heartbeat
        self._written: dict[str, int] = {}  # mailbox -> version written
        self._beat = 0.0  # time.monotonic() of the last full write

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``; then one last write, so a clean stop reads as "not connected".

        The first write waits for the first change (a login, QUICK later) or INTERVAL: at the
        start there is nothing to tell yet, and the first fetch should not wait for it.
        """
        await self._wait(stop)
        while not stop.is_set():
            await self.turn()
            await self._wait(stop)
        for box in self.boxes:
            box.stopped()
        await self.turn()

    async def turn(self) -> None:
        """One write of what changed and one read of the figures; a failure waits for the next."""
        try:
            await self.write()
            if self.metrics is not None:
                self.metrics.database = await read_figures()
        except Exception as exc:  # a locked database must not end the reports for good
            log.warning("mailbox status not written: %s", describe(exc))

    async def write(self) -> None:
        beat = time.monotonic() - self._beat >= self.heartbeat
        due = [box for box in self.boxes if (beat and box.held) or self._written.get(box.name) != box.version]
        for box in due:
            box.urgent.clear()
        if not due:
            return
        versions = {box.name: box.version for box in due}
        async with self.write_turn.exclusive():  # SQLite's one writer: see daemon.turn
            await status.write_mailboxes([_row(box) for box in due], clock.now(), self.holder)
        self._written.update(versions)
        if beat:
            self._beat = time.monotonic()

    async def _wait(self, stop: asyncio.Event) -> None:
        """``interval`` seconds, or QUICK after an urgent change."""
        waits = [asyncio.ensure_future(stop.wait()), *(asyncio.ensure_future(b.urgent.wait()) for b in self.boxes)]
        try:
            await asyncio.wait(waits, timeout=self.interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if not stop.is_set() and any(b.urgent.is_set() for b in self.boxes):
            # Coalesce a flapping server's errors, but never hold up a stop: run --once ends
            # with its mailboxes going down, an urgent change, and waited here half a second.
            await pause(stop, QUICK)


def _row(box: MailboxHealth) -> status.MailboxRow:
    return status.MailboxRow(box.name, box.connected, box.since, box.last_check, box.last_fetch,
                             box.last_error, box.last_error_at, box.server_messages, box.server_unfetched)


async def read_figures() -> DatabaseFigures:
    now = clock.now().timestamp()  # the clock the rows' times come from (`--now` moves it)
    outbox = await status.outbox()
    timers = await status.timers(clock.now())
    oldest = outbox.oldest_pending.timestamp() if outbox.oldest_pending is not None else None
    return DatabaseFigures(now, outbox.pending, oldest, timers.due, await status.backlog())
