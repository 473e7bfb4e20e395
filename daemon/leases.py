"""Each IMAP mailbox is fetched by one instance at a time: the one holding its lease row.

One ``LeaseKeeper`` task per instance renews the leases it holds in one statement, every third
of ``[instance] lease_seconds`` (storage.leases.claim), and takes lapsed ones up to its share:
the instances alive split the mailboxes as evenly as they go (``LeaseKeeper._claim``). One short
of its share tries again for a lapsed lease as soon as the other holder's lease ends. A worker (daemon.fetcher) waits
for its mailbox's ``Lease``, and runs its IMAP session inside ``Lease.holding``: when the lease
is lost the session's work is cancelled at once, before another instance may take the mailbox.

"Lost" is decided on this side, by the local monotonic clock: a lease renewed by a statement
sent at t is trusted until t + 0.9 * lease_seconds. The database set its expiry to its own now
(at or after t) plus the lease, so this instance stops before any other may start, whatever
the clocks of the machines say, and a database outage while holding stops the fetching once
the last renewal may have run out: a lease that could not be renewed is not trusted.

Safety does not rest on the lease alone: an inbound row is processed by the one process that
claims it (daemon.commit), a UID stored twice is one row, and the after-actions are safe to
repeat. The lease keeps two instances from fetching and acting on one folder at once.

PostgreSQL: the keeper has a connection of its own, and its statements run outside any
transaction (autocommit). Every transaction of ours first takes the database's advisory write
lock (storage.postgres_backend) and may wait for it up to busy_timeout, longer than a lease;
a renewal inside one would queue behind a long write and let the lease lapse while the instance
is well. Outside a transaction it takes no such lock, and on its own connection it never waits
for a pooled connection that a queued transaction holds. Only the row lock of the lease row
itself is taken, for the statement's duration.

SQLite: one instance only (daemon.instance's lock file), so the lease rows are records for
`ticketd status`; they are taken whoever held them (a dead predecessor), and a renewal that
waits behind a long write never stops the fetching.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Sequence, TypeVar

from ticketd.daemon.instance import Instance
from ticketd.daemon.turn import WriteTurn
from ticketd.storage import bulk, leases
from ticketd.storage.errors import describe

log = logging.getLogger("ticketd.leases")

T = TypeVar("T")
TRUST = 0.9  # of a lease: how long after a renewal was sent it is trusted here
SOON = 0.05  # seconds after another's lease ends that we try for it (the database's rounding)


class LeaseLost(Exception):
    """The instance no longer holds the mailbox: its work there stopped."""


class Lease:
    """This instance's hold on one mailbox, as the keeper last renewed it."""

    def __init__(self, mailbox: str, patience: float = 0.0) -> None:
        self.mailbox = mailbox
        self.patience = patience  # the longest ``outlived`` waits: a lease and a renewal's time
        self.held = asyncio.Event()
        self._lost = asyncio.Event()
        self._lost.set()  # not ours until the keeper says so
        self._expiry: asyncio.TimerHandle | None = None
        self.why = "not taken yet"  # why it is not ours, for the log
        self.other = ""  # the holder it was last seen with, if not us
        self.other_renewed: object = None  # that holder's renewed_at, when first seen so
        # Set when another instance is seen renewing (or taking) the lease: it lives (run --once's question).
        self.alive_elsewhere = asyncio.Event()

    def renewed(self, trusted_until: float | None) -> None:
        """Ours until ``trusted_until`` (the loop's clock); None: until told otherwise (SQLite)."""
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = None
        if trusted_until is not None:
            self._expiry = asyncio.get_running_loop().call_at(trusted_until, self.lose,
                                                              "not renewed before it could have run out")
        self.other = ""
        self._lost.clear()
        self.held.set()

    def lose(self, why: str) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.held.is_set():
            self.why = why
        self.held.clear()
        self._lost.set()

    async def wait(self, stop: asyncio.Event) -> bool:
        """Until the lease is ours (True) or ``stop`` is set (False)."""
        if not self.held.is_set():
            await _first(self.held.wait(), stop.wait())
        return self.held.is_set() and not stop.is_set()

    async def outlived(self) -> bool:
        """For run --once, with the lease another's: True once ours because its holder stopped renewing.

        A live holder renews within a third of the lease (``alive_elsewhere``): False, the folder
        is its. One killed just before (the previous run --once, say) does not, and its lease runs
        out within one lease time: the mail would otherwise wait for the next run.
        """
        try:
            async with asyncio.timeout(self.patience):
                await _first(self.held.wait(), self.alive_elsewhere.wait())
        except TimeoutError:
            pass
        return self.held.is_set()

    async def holding(self, work: Awaitable[T]) -> T:
        """``work``'s result; LeaseLost (``work`` cancelled) if the lease goes first."""
        task = asyncio.ensure_future(work)
        if self._lost.is_set():
            task.cancel()
        try:
            await _first(task, self._lost.wait())
        finally:
            if not task.done():  # the lease went, or our caller is being cancelled
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise LeaseLost(self.why)
        return task.result()


async def _first(*waits: Awaitable[Any]) -> None:
    futures = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            if not future.done():
                future.cancel()
        await asyncio.gather(*futures, return_exceptions=True)


class LeaseKeeper:
    """The task that takes and renews this instance's leases, and releases them at a clean stop."""

    def __init__(self, me: Instance, mailboxes: Sequence[str], lease_seconds: float,
                 write_turn: WriteTurn | None = None) -> None:
        self.me = me
        self.lease_seconds = lease_seconds
        self.renew_every = lease_seconds / 3
        self.leases = {name: Lease(name, lease_seconds + self.renew_every) for name in mailboxes}
        self.write_turn = write_turn or WriteTurn()
        self.postgres = bulk.is_postgres(bulk.client())
        self.exclusive = not self.postgres  # SQLite: the instance lock file makes us the only one
        self.clock = leases.Clock(self.postgres)
        self._connection: Any = None  # PostgreSQL: the keeper's own (see the module's docstring)
        self._failing = False
        self._short = True  # fewer mailboxes than our share: take a lapsed lease as soon as it lapses
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """The first round at once (so each worker knows where it stands), then the task."""
        wait = await self.turn()
        self._task = asyncio.create_task(self._run(wait), name="leases")

    async def stop(self) -> None:
        """Once the workers have stopped: release every lease, so another instance takes over at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for lease in self.leases.values():
            lease.lose("released at the stop")
        try:
            async with asyncio.timeout(max(1.0, self.renew_every)):
                await self._in_turn(leases.release(self._run_sql, self.clock, self.me.id))
                await self._in_turn(leases.gone(self._run_sql, self.clock, self.me.id))
        except Exception as exc:  # they lapse by themselves within a lease
            log.warning("leases not released (they run out within %.0f s): %s", self.lease_seconds, describe(exc))
        finally:
            await self._close()

    async def _run(self, wait: float) -> None:
        while True:
            await asyncio.sleep(wait)
            wait = await self.turn()

    async def turn(self) -> float:
        """One round: take or renew what we may; the seconds until the next round."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        names = list(self.leases)
        try:
            async with asyncio.timeout(self.renew_every):  # hung: the trusted time runs out meanwhile
                await self._in_turn(leases.seen(self._run_sql, self.clock, self.me.id, self.me.name, self.me.host,
                                                self.me.pid, self.lease_seconds))
                mine = await self._claim(names)
                others = await self._in_turn(leases.holdings(self._run_sql, self.clock,
                                                             [n for n in names if n not in mine]))
        except Exception as exc:  # the database away: what we hold runs out by itself
            await self._close()
            if not self._failing:
                log.warning("leases not renewed, retrying every %.1f s: %s", self.renew_every / 2, describe(exc))
            self._failing = True
            if self.exclusive:  # SQLite, locked by a long writer: the mailboxes are ours all the same
                self._settle(set(names), {}, None)
            return self.renew_every / 2
        if self._failing:
            log.info("leases renewed again")
        self._failing = False
        self._settle(mine, others, None if self.exclusive else sent + TRUST * self.lease_seconds)
        # Another's lease ending soon is worth waking for only while we are short of our share
        # (a lapsed one of our own was handed over: it is for the others to take).
        ends = [h.seconds_left for h in others.values() if h.holder != self.me.id] if self._short else []
        return max(SOON, min([self.renew_every, *(left + SOON for left in ends)]))

    async def _claim(self, names: list[str]) -> set[str]:
        """Renew what we hold and take what has lapsed, up to our share of the mailboxes.

        Without shares the first instance to start would fetch every mailbox, and a second one
        would only wait for it to die. The instances alive (renewing: storage.leases), in the
        order they started, share the mailboxes as evenly as they go: with 4 and 3 instances,
        2, 1 and 1. One that holds more than its share lets the surplus go (its work there
        stopped first), and one short of it takes what lapses, at once.
        """
        if self.exclusive:
            self._short = False
            return await self._in_turn(leases.claim(self._run_sql, self.clock, self.me.id, names,
                                                    self.lease_seconds, force=True))
        alive = [i.id for i in await leases.instances(self._run_sql, self.clock) if i.renewing or i.id == self.me.id]
        rank = alive.index(self.me.id) if self.me.id in alive else len(alive)
        count = max(len(alive), rank + 1)
        share = len(names) // count + (1 if rank < len(names) % count else 0)
        held = [n for n in names if self.leases[n].held.is_set()]
        mine = await leases.claim(self._run_sql, self.clock, self.me.id, held, self.lease_seconds)
        # Short of the share: one lapsed mailbox at a time, no more than the share wants (taking
        # all would hand the rest over a round later, to one who waits for them), each instance
        # beginning at its own place in the list so that two short ones do not race for one.
        for name in names[rank:] + names[:rank]:
            if len(mine) >= share:
                break
            if name not in mine:
                mine |= await leases.claim(self._run_sql, self.clock, self.me.id, [name], self.lease_seconds)
        keep = [n for n in held if n in mine] + [n for n in names if n in mine and n not in held]
        surplus = keep[share:]
        if surplus:
            for name in surplus:  # our work there ends before another instance may begin it
                if self.leases[name].held.is_set():
                    log.info("mailbox %s: handed over, %d instances share %d mailboxes", name, count, len(names))
                self.leases[name].lose("handed to another instance (a share each)")
            await leases.release(self._run_sql, self.clock, self.me.id, surplus)
        self._short = len(keep) < share
        return set(keep[:share])

    def _settle(self, mine: set[str], others: dict[str, leases.Holding], trusted_until: float | None) -> None:
        for name, lease in self.leases.items():
            if name in mine:
                if not lease.held.is_set():
                    log.info("mailbox %s: lease taken by this instance (%s)", name, self.me.id)
                lease.renewed(trusted_until)
                continue
            found = others.get(name)
            if found is not None and found.holder == self.me.id:  # handed over by _claim: lapsed, ours no more
                lease.lose("handed to another instance (a share each)")
                continue
            holder = found.holder if found is not None else "?"
            renewed = found.renewed_at if found is not None else None
            if lease.held.is_set():
                log.warning("mailbox %s: lease lost to %s", name, holder)
            elif holder != lease.other:
                log.info("mailbox %s: held by instance %s; taking it over when its lease runs out", name, holder)
            elif renewed != lease.other_renewed:
                lease.alive_elsewhere.set()
            if holder != lease.other:
                lease.other_renewed = renewed
            lease.lose(f"now held by {holder}")
            lease.other = holder

    async def _in_turn(self, work: Awaitable[T]) -> T:
        """SQLite's one writer is shared through the write turn (daemon.turn); PostgreSQL needs none."""
        if self.postgres:
            return await work
        async with self.write_turn.exclusive():
            return await work

    async def _run_sql(self, sql: str, values: Sequence[Any]) -> list[Any]:
        if not self.postgres:
            return await bulk.fetch(sql, values)
        from ticketd.storage.postgres_backend import own_connection  # asyncpg: PostgreSQL only

        if self._connection is None or self._connection.is_closed():
            self._connection = await own_connection(bulk.client())
        return list(await self._connection.fetch(bulk.numbered(sql, bulk.client()), *values))

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.terminate()  # not close(): that waits on a server that may not answer
