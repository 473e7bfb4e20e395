"""Record "sent" for the rows the SMTP server accepted: every lane's rows in one commit."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from ticketd.daemon import logcontext
from ticketd.daemon.pause import pause
from ticketd.storage import bulk
from ticketd.storage.errors import describe, is_temporary
from ticketd.storage.models import OutboundMessage, OutboundStatus

log = logging.getLogger("ticketd.smtp")

# A commit refused by a condition of the system (a locked database) is tried again after
# this long, doubling up to RETRY_MAX: the lanes wait, nothing is sent meanwhile.
RETRY_FIRST = 0.05
RETRY_MAX = 2.0


@dataclass(eq=False)
class Accepted:
    """One row the server answered 250 for, waiting for its "sent" to be committed."""

    row_id: int
    message_id: str
    sent_at: datetime
    accepted: float = field(default_factory=time.monotonic)
    tried: asyncio.Event = field(default_factory=asyncio.Event)  # the first commit attempt is over
    # The 250-to-commit window in seconds; None if the row was given up (it will be sent again).
    done: asyncio.Future[float | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SentLedger:
    """Commits "sent" for the accepted rows of all lanes together: one transaction, one fsync.

    Group commit without a timer: a row accepted while no commit runs is committed at once,
    and the rows accepted during a commit go together in the next one. A lane waits for its
    row's commit before its next DATA, so at most one accepted row per lane is unrecorded at
    any moment: that is all a crash can make us send twice.
    """

    def __init__(self, retry_first: float = RETRY_FIRST, retry_max: float = RETRY_MAX) -> None:
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.commits = 0  # successful commits since start: several rows each under load
        self._refused = 0  # tries refused since the last commit
        self._queue: dict[int, Accepted] = {}
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def unrecorded(self) -> list[int]:
        """Rows accepted by the server whose "sent" is not committed yet: not to be sent again."""
        return list(self._queue)

    def add(self, row_id: int, message_id: str, sent_at: datetime) -> Accepted:
        """Queue a row the server just accepted (call it with no await since the 250)."""
        entry = Accepted(row_id, message_id, sent_at)
        self._queue[row_id] = entry
        if self._task is None or self._task.done():
            # Started from a row's send, it would name that row in every line it writes.
            self._task = asyncio.create_task(self._run(), name="outbox-sent", context=logcontext.detached())
        self._wake.set()
        return entry

    async def recorded(self, entry: Accepted, deadline: float | None = None) -> float | None:
        """The row's window once its "sent" is committed; None if ``deadline`` passes first."""
        if not entry.done.done():
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(asyncio.shield(entry.done), timeout)
            except TimeoutError:  # the database still refuses: the row stays queued here
                return None
        return entry.done.result()

    async def close(self) -> None:
        """One last commit of what is queued, then stop; what still fails will be sent again."""
        if self._task is None:
            return
        self._closing.set()
        self._wake.set()
        try:  # a flusher cancelled with its process's tasks has nothing more to say
            await asyncio.gather(self._task, return_exceptions=True)
        finally:
            self._task = None
            self._closing = asyncio.Event()

    async def _run(self) -> None:
        while not self._closing.is_set() or self._queue:
            await self._wake.wait()
            self._wake.clear()
            delay = self.retry_first
            while self._queue:
                if await self._flush():
                    delay = self.retry_first
                elif self._closing.is_set():
                    self._give_up()
                else:
                    await pause(self._closing, delay)
                    delay = min(self.retry_max, delay * 2)

    async def _flush(self) -> bool:
        """Commit the queued rows; False if a condition of the system refused (they stay queued)."""
        batch = list(self._queue.values())  # rows accepted during this commit go in the next
        try:
            await _mark_sent(batch)
        except Exception as exc:
            if not is_temporary(exc):  # not a passing condition: the lanes raise it, the rows stay pending
                self._settle(list(self._queue.values()), exc)
                return True
            for entry in self._queue.values():
                entry.tried.set()
            # One warning an outage, not one a retry; debug for the rest.
            log.log(logging.DEBUG if self._refused else logging.WARNING,
                    "cannot record %d sent message(s) yet, retrying: %s", len(self._queue), describe(exc))
            self._refused += 1
            return False
        if self._refused:
            log.info("recorded %d sent message(s) after %d refused tries", len(batch), self._refused)
            self._refused = 0
        self.commits += 1
        now = time.monotonic()
        for entry in batch:
            self._settle([entry], now - entry.accepted)
        return True

    def _settle(self, batch: list[Accepted], outcome: float | BaseException | None) -> None:
        for entry in batch:
            if self._queue.get(entry.row_id) is entry:
                del self._queue[entry.row_id]
            entry.tried.set()
            if isinstance(outcome, BaseException):
                entry.done.set_exception(outcome)
                entry.done.exception()  # retrieved here too: a lane that gave up is not there to see it
            else:
                entry.done.set_result(outcome)

    def _give_up(self) -> None:
        lost = list(self._queue.values())
        log.error("%d message(s) were accepted by the SMTP server but cannot be recorded as sent; "
                  "they will be sent again: %s", len(lost), ", ".join(e.message_id for e in lost))
        self._settle(lost, None)


async def _mark_sent(batch: list[Accepted]) -> None:
    """Mark the batch sent, all or nothing, with one fsync.

    Whoever claimed them (daemon.outbox_due), the server took them: the claim goes with "sent".
    One plain statement: a transaction of its own and one hand-off to the database thread
    (an explicit transaction costs four, each a turn of a busy event loop while lanes wait),
    and no ORM query to build (that cost ~1 ms a flush, more than the statement itself).
    """
    at = OutboundMessage._meta.fields_map["sent_at"]
    ids = [e.row_id for e in batch]
    cases = " ".join("WHEN ? THEN ?" for _ in batch)
    # CAST: PostgreSQL would type a CASE of untyped parameters as text, not as a timestamp.
    when = "CAST(? AS TIMESTAMPTZ)" if bulk.is_postgres(bulk.client()) else "?"
    await bulk.execute(
        f"UPDATE outbound_message SET status = ?, attempts = attempts + 1, last_error = '', claimed_by = NULL, "
        f"claimed_until = NULL, "
        f"sent_at = CASE id {cases.replace('THEN ?', 'THEN ' + when)} END WHERE id IN ({bulk.marks(len(ids))})",
        [OutboundStatus.SENT, *[v for e in batch for v in (e.row_id, at.to_db_value(e.sent_at, None))], *ids])
