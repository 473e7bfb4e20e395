"""daemon.leases: work stops when its lease goes (a mailbox worker lets go of the server); keepers take
over a silent holder's mailboxes within the lease, a long write does not hold up a renewal, a database
outage stops the fetching in time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from tortoise.transactions import in_transaction

from devtools.dovecot import Dovecot, MailUser
from devtools.postgres import Postgres
from devtools.smtpsink import SmtpSink
from ticketd.daemon.config import MailboxConfig, load_config
from ticketd.daemon.fetcher import MailboxWorker
from ticketd.daemon.imap import ImapSession
from ticketd.daemon.instance import Instance
from ticketd.daemon.leases import TRUST, Lease, LeaseKeeper, LeaseLost
from ticketd.daemon.pipeline import Processor
from ticketd.daemon.responders import build_responders
from ticketd.storage import bulk, leases, queries
from ticketd.storage.db import database
from tests.support.backend import POSTGRES, sqlite_only, url
from tests.support.daemon import run_once, write_config
from tests.support.mail import simple

postgres_only = pytest.mark.skipif(not POSTGRES, reason="PostgreSQL only: several instances share a server's database")
BOXES = ["support", "sales"]


def instance(n: int) -> Instance:
    return Instance(f"host{n}:{n}:abc{n}", f"mail{n}", f"host{n}", n)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[None]:
    async with database(url(tmp_path / "t.db")):
        yield


async def wait_for(check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check()`` held; fails after ``timeout``."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, "not within the time"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_work_under_a_lease_is_cancelled_the_moment_the_lease_runs_out() -> None:
    lease = Lease("support")
    lease.renewed(asyncio.get_running_loop().time() + 0.2)
    cleaned = []

    async def fetching() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append(True)  # e.g. _drain's pending fetch cancelled

    start = time.monotonic()
    with pytest.raises(LeaseLost, match="not renewed before it could have run out"):
        await lease.holding(fetching())
    assert 0.15 < time.monotonic() - start < 1.0 and cleaned == [True]
    assert not lease.held.is_set()
    with pytest.raises(LeaseLost):  # not ours: the work does not even start
        await lease.holding(fetching())
    lease.renewed(None)  # SQLite: ours until told otherwise
    assert await lease.holding(asyncio.sleep(0.01, "done")) == "done"


@sqlite_only("one instance per SQLite file: the lease of a dead predecessor is taken at once")
async def test_on_sqlite_the_leases_are_taken_whoever_held_them_and_released_at_the_stop(db: None) -> None:
    run, clock = leases.tortoise_run()
    await leases.claim(run, clock, "dead:1:aaa", BOXES, 3600)  # a kill -9 left it with an hour to go
    keeper = LeaseKeeper(instance(1), BOXES, 30)
    await keeper.start()
    assert all(lease.held.is_set() for lease in keeper.leases.values())
    assert {h.holder for h in (await leases.holdings(run, clock)).values()} == {instance(1).id}
    assert [i.id for i in await leases.instances(run, clock)] == [instance(1).id]
    await keeper.stop()
    assert all(h.seconds_left <= 0 for h in (await leases.holdings(run, clock)).values())
    assert await leases.instances(run, clock) == []


def held(keeper: LeaseKeeper) -> set[str]:
    return {name for name, lease in keeper.leases.items() if lease.held.is_set()}


@postgres_only
async def test_a_silent_holders_mailboxes_are_taken_over_within_the_lease(db: None) -> None:
    first, second = LeaseKeeper(instance(1), BOXES, 1.5), LeaseKeeper(instance(2), BOXES, 1.5)
    await first.start()
    await second.start()
    try:
        assert held(first) == set(BOXES) and not held(second)  # the first to start took both
        assert second.leases["support"].other == instance(1).id
        # With two alive, the first hands one over at its next round: a fair share each.
        await wait_for(lambda: len(held(second)) == 1, 1.5)
        await asyncio.sleep(1.0)  # renewed meanwhile: one each, never both
        assert len(held(first)) == len(held(second)) == 1 and not held(first) & held(second)
        assert first._task is not None
        first._task.cancel()  # as a SIGKILL does: no more renewals, no release
        silent = time.monotonic()
        [mine] = held(first)
        lost = await wait_for(lambda: not first.leases[mine].held.is_set(), 1.5)
        taken = await wait_for(lambda: held(second) == set(BOXES), 2.0)
        assert lost <= TRUST * 1.5 + 0.1  # the silent one stopped trusting its lease before ...
        assert time.monotonic() - silent <= 1.5 + 0.3  # ... the other took it, within the lease
        assert taken > 0
    finally:
        await second.stop()
    third = LeaseKeeper(instance(3), BOXES, 30)
    start = time.monotonic()
    await third.start()  # released by the clean stop: taken at once, not after 30 s
    assert all(lease.held.is_set() for lease in third.leases.values()) and time.monotonic() - start < 5  # not 30
    await third.stop()
    await first.stop()


@postgres_only
async def test_instances_alive_share_the_mailboxes_and_the_rest_take_a_stopped_ones(db: None) -> None:
    boxes = ["a", "b", "c", "d"]
    keepers = [LeaseKeeper(instance(n), boxes, 1.5) for n in (1, 2, 3)]
    for keeper in keepers:
        await keeper.start()
    try:
        def shared() -> bool:  # each mailbox held once, by one of them; nobody over its share of 2
            holdings = [held(k) for k in keepers]
            return sorted(b for h in holdings for b in h) == boxes and all(1 <= len(h) <= 2 for h in holdings)

        await wait_for(shared, 3.0)
        await keepers[0].stop()  # a clean stop: its mailboxes lapse at once, the two others take them
        await wait_for(lambda: sorted(held(keepers[1]) | held(keepers[2])) == boxes
                       and len(held(keepers[1])) == len(held(keepers[2])) == 2, 3.0)
        assert not held(keepers[1]) & held(keepers[2])
    finally:
        for keeper in keepers[1:]:
            await keeper.stop()


@postgres_only
async def test_a_renewal_does_not_queue_behind_a_long_write_transaction(db: None) -> None:
    keeper = LeaseKeeper(instance(1), ["support"], 1.2)
    await keeper.start()
    run, clock = leases.tortoise_run()
    before = (await leases.holdings(run, clock))["support"].expires_at
    try:
        async with in_transaction():  # takes the advisory write lock, and keeps it for two leases
            await bulk.execute('UPDATE "mailbox" SET "last_uid" = 0')
            for _ in range(25):
                await asyncio.sleep(0.1)
                assert keeper.leases["support"].held.is_set()
        after = (await leases.holdings(run, clock))["support"]
        assert after.holder == instance(1).id and after.expires_at > before
    finally:
        await keeper.stop()


@postgres_only
async def test_a_database_outage_stops_the_fetching_before_the_lease_could_run_out(
        tmp_path: Path, postgres_factory: Callable[..., Postgres]) -> None:
    server = postgres_factory()  # a cluster of its own: stopped under the keeper's feet
    async with database(server.create_database("outage")):
        keeper = LeaseKeeper(instance(1), ["support"], 1.5)
        await keeper.start()
        lease = keeper.leases["support"]
        working = asyncio.ensure_future(lease.holding(asyncio.sleep(30)))
        server.stop()
        stopped = time.monotonic()
        with pytest.raises(LeaseLost):
            await asyncio.wait_for(working, 3)
        assert time.monotonic() - stopped <= TRUST * 1.5 + 0.2
        server.start()
        await wait_for(lease.held.is_set, 5)  # the database back: renewed (still ours) and trusted again
        await keeper.stop()


async def test_a_worker_fetches_only_while_its_lease_is_held_and_lets_go_of_the_server_when_it_goes(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = load_config(write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)]))
    sessions: list[ImapSession] = []

    def session(box: MailboxConfig) -> ImapSession:
        sessions.append(ImapSession(box.imap))
        return sessions[-1]

    async def subjects() -> list[str]:
        return sorted(t["subject"] for t in await queries.ticket_list())

    async with database(config.database_url):
        lease = Lease("support")
        worker = MailboxWorker(config.mailboxes[0], Processor(config, build_responders(config)),
                               config.max_message_bytes, session_factory=session, lease=lease)
        running = asyncio.create_task(worker.run())
        try:
            dovecot.deliver(fresh_user.address, simple("ann@example.org", "Before", "<l1@example.org>"))
            await asyncio.sleep(0.3)
            assert sessions == [] and worker.tried.is_set()  # held elsewhere: not even a login
            lease.renewed(None)
            await wait_for(lambda: worker.connected, 10)
            while await subjects() != ["Before"]:
                await asyncio.sleep(0.05)

            lease.lose("now held by other:1:x")  # what the keeper does when a renewal finds another holder
            await wait_for(lambda: not worker.connected, 2)
            dovecot.deliver(fresh_user.address, simple("bo@example.org", "While away", "<l2@example.org>"))
            await asyncio.sleep(0.5)
            assert await subjects() == ["Before"] and len(sessions) == 1
            assert [sorted(flags) for _, flags, _ in dovecot.messages(fresh_user.address)] == [["\\Seen"], []]

            lease.renewed(None)  # ours again: a new session, and the mail that waited
            while await subjects() != ["Before", "While away"]:
                await asyncio.sleep(0.05)
            assert len(sessions) == 2
        finally:
            worker.stop.set()
            await asyncio.wait_for(running, 10)


@postgres_only
async def test_run_once_leaves_a_live_holders_mailbox_and_takes_a_dead_ones_within_the_lease(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    path = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)],
                        extra="[instance]\nlease_seconds = 1.5\n")
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Waiting", "<o1@example.org>"))
    async with database(load_config(path).database_url):
        live = LeaseKeeper(instance(1), ["support"], 1.5)
        await live.start()
        try:
            start = time.monotonic()
            assert await run_once(path) == 0  # its holder renews: left to it
            assert time.monotonic() - start < 1.5 and await queries.ticket_list() == []
        finally:
            assert live._task is not None
            live._task.cancel()  # killed: it renews no more, and releases nothing
        start = time.monotonic()
        assert await run_once(path) == 0
        assert time.monotonic() - start < 1.5 + 1.5  # the lease ran out, and the run took the mailbox
        assert [t["subject"] for t in await queries.ticket_list()] == ["Waiting"]
        await live.stop()
