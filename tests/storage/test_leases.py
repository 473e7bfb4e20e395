"""storage.leases against the real database: take, renew, take over after the expiry, release; instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ticketd.storage import leases, status
from ticketd.storage.db import database
from ticketd.storage.models import MailboxLease
from tests.support.backend import url

A, B = "mail1:100:aaaaaa", "mail2:200:bbbbbb"


@pytest.fixture
async def sql(tmp_path: Path) -> AsyncIterator[tuple[leases.Run, leases.Clock]]:
    async with database(url(tmp_path / "t.db")):
        yield leases.tortoise_run()


async def test_a_lease_is_one_holders_until_it_runs_out_then_the_next_takes_it(
        sql: tuple[leases.Run, leases.Clock]) -> None:
    run, clock = sql
    assert await leases.claim(run, clock, A, ["support", "sales"], 0.6) == {"support", "sales"}
    taken = await MailboxLease.get(mailbox="support")
    assert await leases.claim(run, clock, B, ["support", "sales"], 0.6) == set()  # unexpired: not B's
    assert await leases.claim(run, clock, A, ["support"], 0.6) == {"support"}  # renewed: still A's
    renewed = await MailboxLease.get(mailbox="support")
    assert renewed.acquired_at == taken.acquired_at and renewed.expires_at > taken.expires_at
    held = await leases.holdings(run, clock, ["support", "sales"])
    assert held["support"].holder == A and 0.3 < held["support"].seconds_left <= 0.6
    assert abs((held["support"].expires_at - renewed.expires_at).total_seconds()) < 0.002

    await asyncio.sleep(0.7)  # A renewed nothing since: both ran out
    assert (await leases.holdings(run, clock, ["sales"]))["sales"].seconds_left < 0
    assert await leases.claim(run, clock, B, ["support", "sales"], 0.6) == {"support", "sales"}
    assert await leases.claim(run, clock, A, ["support", "sales"], 0.6) == set()  # A's renewal finds B there
    over = await MailboxLease.get(mailbox="support")
    assert over.holder == B and over.acquired_at > renewed.expires_at


async def test_a_released_lease_is_taken_at_once_and_force_takes_any(sql: tuple[leases.Run, leases.Clock]) -> None:
    run, clock = sql
    assert await leases.claim(run, clock, A, ["support", "sales"], 30) == {"support", "sales"}
    await leases.release(run, clock, A)
    assert await leases.claim(run, clock, B, ["support"], 30) == {"support"}
    # SQLite's instance lock proves the recorded holder dead: the lease is taken however long it had.
    assert await leases.claim(run, clock, A, ["support", "sales"], 30, force=True) == {"support", "sales"}
    assert {h.holder for h in (await leases.holdings(run, clock)).values()} == {A}


async def test_instances_are_recorded_refreshed_and_removed(sql: tuple[leases.Run, leases.Clock]) -> None:
    run, clock = sql
    await leases.seen(run, clock, A, "mail1", "mail1.example", 100)
    await leases.seen(run, clock, B, "mail2", "mail2.example", 200)
    first = {i.id: i for i in await leases.instances(run, clock)}
    await asyncio.sleep(0.05)
    await leases.seen(run, clock, A, "mail1", "mail1.example", 100)
    again = {i.id: i for i in await leases.instances(run, clock)}
    assert (again[A].name, again[A].host, again[A].pid) == ("mail1", "mail1.example", 100)
    assert again[A].started_at == first[A].started_at and again[A].last_seen > first[A].last_seen
    assert 0 <= again[A].seconds_since_seen < 1 and again[B].seconds_since_seen >= 0.05
    assert abs((again[A].last_seen - datetime.now(timezone.utc)).total_seconds()) < 5  # the database's clock
    await leases.gone(run, clock, A)
    assert [i.id for i in await leases.instances(run, clock)] == [B]


async def test_a_health_row_is_not_overwritten_while_another_instance_holds_the_mailbox(
        sql: tuple[leases.Run, leases.Clock]) -> None:
    run, clock = sql
    now = datetime.now(timezone.utc)
    up = status.MailboxRow("support", True, now, now, now, "", None, 5, 0)
    down = status.MailboxRow("support", False, now, now, now, "lease lost", now, 5, 0)
    await leases.claim(run, clock, B, ["support"], 30)
    await status.write_mailboxes([up], now, B)
    await status.write_mailboxes([down], now + timedelta(seconds=1), A)  # A lost it to B: B's row stands
    assert (await status.mailboxes())["support"].connected is True
    await status.write_mailboxes([down], now + timedelta(seconds=2), B)
    assert (await status.mailboxes())["support"].connected is False
