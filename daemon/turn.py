"""Who may write to the database when: inbound transactions alone, outbox sends together."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator


class WriteTurn:
    """A phase-fair readers-writer lock: the pipeline is the writer, SMTP sends are the readers.

    A send holds a shared turn from SMTP DATA until "sent" is committed, so the server's 250
    and our commit are never separated by an inbound transaction (that gap is the window in
    which a crash sends a message twice); sends overlap each other freely. Phases alternate:
    a waiting inbound transaction stops new sends from starting, and the sends that were
    waiting when a transaction ends go before the next one, so neither side starves.
    """

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._sharing = 0
        self._exclusive = False
        self._writers_waiting = 0
        self._sharers_waiting = 0
        self._quota = 0  # sends admitted ahead of the next transaction

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._changed:
            self._writers_waiting += 1
            try:
                await self._changed.wait_for(
                    lambda: not self._exclusive and self._sharing == 0 and self._quota == 0)
            finally:
                self._writers_waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            async with self._changed:
                self._exclusive = False
                self._quota = self._sharers_waiting
                self._changed.notify_all()

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._changed:
            self._sharers_waiting += 1
            try:
                await self._changed.wait_for(
                    lambda: not self._exclusive and (self._writers_waiting == 0 or self._quota > 0))
            except BaseException:
                self._quota = min(self._quota, self._sharers_waiting - 1)  # a cancelled send frees its place
                self._changed.notify_all()
                raise
            finally:
                self._sharers_waiting -= 1
            self._quota = max(0, self._quota - 1)
            self._sharing += 1
        try:
            yield
        finally:
            async with self._changed:
                self._sharing -= 1
                self._changed.notify_all()
