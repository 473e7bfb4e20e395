"""Who may write to the database when: inbound transactions alone, outbox sends in slots between them."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

# A slot lasts at least this long, so a slot after a very short transaction (an intake batch)
# still fits one round of every lane: DATA and the grouped "sent" commit.
MIN_SLOT = 0.005
# The sends' slot is ``share`` times the transaction before it. The share doubles, up to this,
# while transactions keep cutting off lanes with rows in hand (the outbox falls behind the
# intake), and halves back to 1 once the outbox goes idle: what an acknowledgement costs next
# to an inbound message depends on the SMTP server and the machine, so no fixed ratio fits.
MAX_SHARE = 4.0
# A send still waiting for the server's answer to DATA after this long (a relay scanning each
# message, a hung server) stops holding transactions back: its own duplicate window then
# widens to one transaction, instead of the intake stalling for the SMTP timeout. A LAN or
# loopback server answers in milliseconds. Once the 250 is in, the send holds transactions
# until its commit was tried, however long that takes: that part is ours, and short.
HOLD_FOR = 0.1


class Send:
    """One send holding the shared turn; ``accepted()`` when the server has said 250."""

    def __init__(self, sends: dict[Send, float | None]) -> None:
        self._sends = sends
        sends[self] = time.monotonic()

    def accepted(self) -> None:
        self._sends[self] = None  # no longer subject to hold_for: only the commit is left


class WriteTurn:
    """SQLite's one writer, shared by time between the pipeline (exclusive) and SMTP sends (shared).

    A send holds a shared turn from DATA until the first commit attempt of its "sent"
    (daemon.sent groups those of all lanes), so the server's 250 and our commit are never
    separated by an inbound transaction: that gap is the window in which a crash sends a
    message twice. Sends overlap each other freely; MAIL and RCPT need no turn at all.

    Neither side starves, and neither goes one step per turn of the other: when a transaction
    ends, the sends waiting get a slot of ``share`` times as long as that transaction held the
    turn (at least ``min_slot``), in which a lane with rows in hand (``lane()``) goes from send
    to send; a transaction waiting meanwhile goes when the slot is over and the sends in flight
    are done. The share grows while the outbox falls behind (see MAX_SHARE), so
    acknowledgements keep pace with the intake that creates them, and the intake keeps at
    least 1 / (1 + MAX_SHARE) of the writer.
    """

    def __init__(self, min_slot: float = MIN_SLOT, hold_for: float = HOLD_FOR, max_share: float = MAX_SHARE) -> None:
        self.min_slot = min_slot
        self.hold_for = hold_for
        self.max_share = max_share
        self.share = 1.0
        self._changed = asyncio.Condition()
        self._exclusive = False
        self._writers_waiting = 0
        self._senders_waiting = 0
        self._lanes = 0  # SMTP lanes with rows in hand, between their sends (MAIL, RCPT) or in one
        # In flight: each send -> time.monotonic() at its start, None once accepted.
        self._sends: dict[Send, float | None] = {}
        self._slot_ends = 0.0  # sends may start past a waiting transaction until then

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._changed:
            self._writers_waiting += 1
            try:
                await self._wait(self._writer_may_go, self._writer_recheck_in)
            except BaseException:
                self._changed.notify_all()  # sends held back by this waiting transaction may go
                raise
            finally:
                self._writers_waiting -= 1
            self._exclusive = True
            self._adapt_share()
        started = time.monotonic()
        try:
            yield
        finally:
            async with self._changed:
                self._exclusive = False
                now = time.monotonic()
                self._slot_ends = now + max(self.min_slot, self.share * (now - started))
                self._changed.notify_all()

    @asynccontextmanager
    async def lane(self) -> AsyncIterator[None]:
        """A lane with rows to send: within a slot, a waiting transaction lets it go on."""
        self._lanes += 1  # no need to wake anyone: this only makes transactions wait longer
        try:
            yield
        finally:
            async with self._changed:
                self._lanes -= 1
                self._changed.notify_all()

    def shared(self) -> _Shared:
        """``async with turn.shared() as send``: one send's turn (entered for every message sent)."""
        return _Shared(self)

    async def _share(self) -> Send:
        async with self._changed:
            self._senders_waiting += 1
            try:
                await self._wait(self._sender_may_go, lambda now: None)
            except BaseException:
                self._changed.notify_all()  # a transaction may have waited for this send's slot
                raise
            finally:
                self._senders_waiting -= 1
            return Send(self._sends)

    async def _unshare(self, send: Send) -> None:
        async with self._changed:
            del self._sends[send]
            self._changed.notify_all()

    def _adapt_share(self) -> None:
        """At each transaction's start: did it cut off lanes that still had rows to send?"""
        if self._senders_waiting or self._lanes:
            self.share = min(self.max_share, self.share * 2)
        else:
            self.share = max(1.0, self.share / 2)

    def _sender_may_go(self, now: float) -> bool:
        return not self._exclusive and (self._writers_waiting == 0 or now < self._slot_ends)

    def _writer_may_go(self, now: float) -> bool:
        if self._exclusive or ((self._senders_waiting or self._lanes) and now < self._slot_ends):
            return False
        return all(started is not None and now - started >= self.hold_for for started in self._sends.values())

    def _writer_recheck_in(self, now: float) -> float | None:
        """Seconds until time alone can let a waiting transaction go (None: only an event can)."""
        moments = [started + self.hold_for for started in self._sends.values() if started is not None]
        if self._senders_waiting or self._lanes:
            moments.append(self._slot_ends)
        later = [moment - now for moment in moments if moment > now]
        return min(later) if later else None

    async def _wait(self, may_go: Callable[[float], bool], recheck_in: Callable[[float], float | None]) -> None:
        """Wait (holding the condition's lock on return) until ``may_go``; woken by every change."""
        while not may_go(time.monotonic()):
            timeout = recheck_in(time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait()
            except TimeoutError:
                pass


class _Shared:
    """WriteTurn.shared's context: a class, as the generator-based one cost 3.9 us a send against 2.6."""

    __slots__ = ("_turn", "_send")

    def __init__(self, turn: WriteTurn) -> None:
        self._turn = turn

    async def __aenter__(self) -> Send:
        self._send = await self._turn._share()
        return self._send

    async def __aexit__(self, *exc: object) -> None:
        await self._turn._unshare(self._send)
