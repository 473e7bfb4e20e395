"""What LMTP stored, processed promptly in arrival order while the listener goes on accepting."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from ticketd.daemon.pipeline import Processor
from ticketd.storage.errors import describe, is_temporary
from ticketd.storage.models import InboundMessage

log = logging.getLogger("ticketd.lmtp")

# Rows per call to the pipeline (it commits them in groups of its own): big enough that the
# parse pool gets work to spread, small enough that the first tickets of a burst come soon.
BATCH = 100
# Raw bytes kept in memory for rows waiting; past this the rows are read back from the database.
MEMORY_BUDGET = 64 << 20
RETRY_MAX = 30.0
# Intake first: a message is ours (and the MTA free) at its 250, so a burst is stored at full
# speed and processed once it pauses for QUIET seconds. Processing meanwhile cut the rate of
# one client to a quarter (measured): each of its commits holds the write turn, for a group of
# 25 messages, while the next 250 waits. QUIET is longer than the stalls of a busy machine. A
# row never waits longer than MAX_WAIT, so a stream that never pauses still becomes tickets.
QUIET = 0.25
MAX_WAIT = 10.0


@dataclass(frozen=True)
class Entry:
    row_id: int
    mailbox: str  # the [[addresses]] / [[mailboxes]] name its recipient chose
    row: InboundMessage | None  # None: read it back (over the budget, or its state may have moved)
    held: int = 0  # bytes of ``row`` counted against the budget
    stored_at: float = 0.0  # loop time of its commit


class Backlog:
    """Committed LMTP rows not processed yet, oldest first."""

    def __init__(self, budget: int = MEMORY_BUDGET, quiet: float = QUIET, max_wait: float = MAX_WAIT) -> None:
        self._entries: deque[Entry] = deque()
        self._held = 0
        self.budget = budget
        self.quiet, self.max_wait = quiet, max_wait
        self._last_stored = 0.0
        self._ready = asyncio.Event()
        self._closed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, stored: list[tuple[str, InboundMessage]]) -> None:
        now = self._last_stored = asyncio.get_running_loop().time()
        for name, row in stored:
            if self._held + row.size <= self.budget or not self._entries:
                self._entries.append(Entry(row.id, name, row, row.size, now))
                self._held += row.size
            else:
                self._entries.append(Entry(row.id, name, None, stored_at=now))
        self._ready.set()

    def take(self, limit: int) -> list[Entry]:
        """The oldest entries of one mailbox, up to ``limit``: one call of the pipeline serves one mailbox."""
        batch: list[Entry] = []
        while self._entries and len(batch) < limit and (not batch or self._entries[0].mailbox == batch[0].mailbox):
            entry = self._entries.popleft()
            self._held -= entry.held
            batch.append(entry)
        return batch

    def put_back(self, batch: list[Entry]) -> None:
        """Ahead of the rest, by id only: a failed commit may have changed the rows in memory."""
        self._entries.extendleft(Entry(e.row_id, e.mailbox, None, stored_at=e.stored_at) for e in reversed(batch))
        self._ready.set()

    def close(self) -> None:
        """No more rows will come: the drain ends once the backlog is empty."""
        self._closed.set()
        self._ready.set()

    async def ready(self) -> bool:
        """Wait for entries and for intake to pause (see QUIET); False once closed and empty."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._entries:
                if self._closed.is_set():
                    return False
                self._ready.clear()
                await self._ready.wait()
                continue
            now = loop.time()
            wait = min(self._last_stored + self.quiet, self._entries[0].stored_at + self.max_wait) - now
            if wait <= 0 or self._closed.is_set():
                return True
            await asyncio.sleep(wait)

    async def pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` or until closed; False if closed."""
        try:
            await asyncio.wait_for(self._closed.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        return not self._closed.is_set()


async def drain(processor: Processor, backlog: Backlog, batch: int = BATCH) -> None:
    """Process the backlog until it is closed and empty; a condition of the system waits, then retries.

    Rows still waiting when the daemon dies are "received" with no UID: the sweep of
    stranded rows at the next start (daemon.sweeper) finishes them.
    """
    delay = 0.0
    while await backlog.ready():
        entries = backlog.take(batch)
        try:
            rows = await _rows(entries)
            if rows:
                await processor.process(rows, processor.config.intake(entries[0].mailbox))
            delay = 0.0
        except Exception as exc:
            if not is_temporary(exc):  # a bug: the periodic sweep of stranded rows tries them again
                log.exception("processing %d LMTP message(s) failed; left for the sweep", len(entries))
                continue
            backlog.put_back(entries)
            delay = min(RETRY_MAX, max(0.5, delay * 2))
            log.warning("%d LMTP message(s) stored, processing again in %.1f s: %s", len(backlog), delay,
                        describe(exc))
            if not await backlog.pause(delay):
                return  # stopping: the sweep at the next start finishes them


async def _rows(entries: list[Entry]) -> list[InboundMessage]:
    """The entries' rows in order, reading back in one query those not kept in memory."""
    missing = [e.row_id for e in entries if e.row is None]
    found = {row.id: row for row in await InboundMessage.filter(id__in=missing)} if missing else {}
    rows = [e.row if e.row is not None else found.get(e.row_id) for e in entries]
    return [row for row in rows if row is not None]
