"""Commit LMTP messages' raw bytes; sessions that arrive together share one transaction."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable

from tortoise.transactions import in_transaction

from ticketd.daemon.pipeline import Processor
from ticketd.storage import intake
from ticketd.storage.errors import describe, is_temporary
from ticketd.storage.models import InboundMessage, Mailbox

log = logging.getLogger("ticketd.lmtp")

# Messages per shared transaction: enough for every session an MTA runs at once.
MAX_GROUP = 100

Stored = Callable[[list[tuple[str, InboundMessage]]], None]


@dataclass
class _Waiting:
    raw: bytes  # as the MTA sent it
    copies: list[tuple[str, bytes]]  # (mailbox name, trace lines to put on top): a row each
    done: asyncio.Future[list[InboundMessage]]


class GroupCommit:
    """The one writer of LMTP intake: what queued up while it waited for its turn commits together.

    A lone client pays one transaction (one fsync) per message; twenty sessions of a busy
    MTA, or a burst that meets the pipeline's commit, pay one between them. Each session
    hears of its own rows only after the transaction holding them has committed.
    """

    def __init__(self, processor: Processor, on_stored: Stored, max_group: int = MAX_GROUP) -> None:
        self.processor = processor
        self.on_stored = on_stored  # told of every committed (mailbox name, row), in commit order
        self.max_group = max_group
        self._waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._states: dict[str, Mailbox] = {}  # only mailboxes whose row is known to be committed
        self.commits = 0  # transactions begun, for the log at stop and for tests
        self.messages = 0  # messages committed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lmtp-commit")

    async def close(self) -> None:
        """Commit what is waiting, then stop; safe to call twice."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task

    def abort(self) -> None:
        """Stop at once (the stop deadline passed): sessions still waiting hear 451."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def store(self, raw: bytes, copies: list[tuple[str, bytes]]) -> list[InboundMessage]:
        """Commit one message, a row per (mailbox name, trace lines); return the rows once durable."""
        if self._closing or self._task is None:
            raise ConnectionAbortedError("the daemon is stopping")  # a temporary failure: 451
        waiting = _Waiting(raw, copies, asyncio.get_running_loop().create_future())
        # A session whose client went away must not leave an exception nobody reads.
        waiting.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._waiting.append(waiting)
        self._wake.set()
        # Shielded: a lost connection cancels its session, never a commit others share; the
        # rows are still handed on for processing (the MTA, told nothing, sends it again:
        # a duplicate row, never a second ticket).
        return await asyncio.shield(waiting.done)

    async def _run(self) -> None:
        group: list[_Waiting] = []
        try:
            while not (self._closing and not self._waiting):
                await self._wake.wait()
                self._wake.clear()
                while self._waiting:
                    # The group is taken once the turn is ours: whoever came while we waited joins.
                    async with self.processor.write_turn.exclusive():
                        group, self._waiting = self._waiting[:self.max_group], self._waiting[self.max_group:]
                        await self._commit(group)
        finally:  # cancelled (the stop deadline): no session may wait for ever; they answer 451
            for waiting in (*group, *self._waiting):
                if not waiting.done.done():
                    waiting.done.set_exception(ConnectionAbortedError("the daemon is stopping"))

    async def _commit(self, group: list[_Waiting]) -> None:
        try:
            results = await self._write(group)
        except Exception as exc:
            if len(group) > 1 and not is_temporary(exc):  # one odd message must not fail the others
                log.warning("a group of %d LMTP messages did not commit (%s); one at a time",
                            len(group), describe(exc))
                for waiting in group:
                    await self._commit([waiting])
                return
            for waiting in group:
                if not waiting.done.done():
                    waiting.done.set_exception(exc)
            return
        self.messages += len(group)
        for waiting, rows in zip(group, results):
            if not waiting.done.done():
                waiting.done.set_result(rows)
        self.on_stored([(name, row) for waiting, rows in zip(group, results)
                        for (name, _), row in zip(waiting.copies, rows)])

    async def _write(self, group: list[_Waiting]) -> list[list[InboundMessage]]:
        """One transaction; the caller holds the daemon's write turn (as the IMAP fetcher stores)."""
        names = {name for waiting in group for name, _ in waiting.copies}
        if len(group) == 1 and len(group[0].copies) == 1 and names <= self._states.keys():
            # A lone row needs no transaction of ours: ``store_one`` alone commits atomically,
            # as `ticketd ingest` relies on. BEGIN and COMMIT around it would cost 0.3-1 ms
            # (three more hand-offs to the database thread), a quarter of a message's time.
            [(name, lines)] = group[0].copies
            self.commits += 1
            return [[await self._one(group[0].raw, lines, self._states[name])]]
        self.commits += 1
        async with in_transaction():
            states = {name: self._states.get(name) or await intake.mailbox_state(name) for name in names}
            results = [[await self._one(w.raw, lines, states[name]) for name, lines in w.copies] for w in group]
        self._states.update(states)  # after the commit: a rolled-back new mailbox is not remembered
        return results

    async def _one(self, raw: bytes, lines: bytes, mailbox: Mailbox) -> InboundMessage:
        # The size limit is the MTA's message (LMTP checked it); our trace lines do not count.
        item = intake.Incoming(raw=lines + raw, size=len(lines) + len(raw))
        return await intake.store_one(item, self.processor.config.max_message_bytes + len(lines), mailbox)
