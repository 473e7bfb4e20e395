"""daemon.health: what the workers note in memory, and what the writer puts in a real database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ticketd.daemon.health import HealthWriter, MailboxHealth
from ticketd.daemon.metrics import Metrics
from ticketd.daemon.turn import WriteTurn
from ticketd.storage import status
from ticketd.storage.db import database
from tests.support.outbox import row


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[None]:
    async with database(f"sqlite://{tmp_path}/health.db"):
        yield


def test_an_error_is_one_line_without_the_password_and_keeps_the_time_the_connection_was_lost() -> None:
    box = MailboxHealth("support", secrets=("hunter2",))
    box.up()
    connected_at = box.since
    box.down("ImapError: LOGIN failed: NO [echo] a LOGIN user hunter2\r\nmore")
    assert box.connected is False and box.since is not None and box.since >= connected_at  # type: ignore[operator]
    assert box.last_error == "ImapError: LOGIN failed: NO [echo] a LOGIN user *** more"
    lost_at = box.since
    box.down("OSError: [Errno 111] Connect call failed")  # still down: since stays when it went down
    assert box.since == lost_at and box.last_error.startswith("OSError")
    box.stopped()  # not connected: nothing changes, the error stays shown
    assert box.since == lost_at and box.last_error


def test_fetching_counts_down_what_the_last_search_found_on_the_server() -> None:
    box = MailboxHealth("support")
    box.checked(exists=120, new=100)
    box.fetched(50)
    assert (box.server_messages, box.server_unfetched) == (120, 50)
    box.fetched(80)
    assert box.server_unfetched == 0 and box.last_fetch is not None


async def test_the_writer_writes_only_what_changed_until_the_heartbeat(db: None) -> None:
    support, sales = MailboxHealth("support"), MailboxHealth("sales")
    writer = HealthWriter([support, sales], WriteTurn(), heartbeat=3600)
    await writer.turn()
    first = await status.mailboxes()
    assert set(first) == {"support", "sales"} and not first["support"].connected
    support.up()
    await writer.turn()
    second = await status.mailboxes()
    assert second["support"].connected
    assert second["support"].updated_at > first["support"].updated_at  # type: ignore[operator]
    assert second["sales"].updated_at == first["sales"].updated_at  # unchanged: not written again
    writer.heartbeat = 0  # each turn is a heartbeat now: every row is rewritten
    await writer.turn()
    third = await status.mailboxes()
    assert third["sales"].updated_at > second["sales"].updated_at  # type: ignore[operator]


async def test_the_writer_reads_the_database_figures_for_the_metrics(db: None) -> None:
    await row("a@example.test")
    metrics = Metrics()
    await HealthWriter([], WriteTurn(), metrics).turn()
    assert metrics.database is not None and metrics.database.outbox_pending == 1
    assert metrics.database.outbox_oldest is not None and metrics.database.backlog == {}


async def test_a_stop_writes_every_mailbox_as_not_connected(db: None) -> None:
    box = MailboxHealth("support")
    box.up()
    stop = asyncio.Event()
    running = asyncio.create_task(HealthWriter([box], WriteTurn(), interval=0.05).run(stop))
    await asyncio.sleep(0.8)  # the connect is urgent: written within QUICK
    assert (await status.mailboxes())["support"].connected
    stop.set()
    await asyncio.wait_for(running, 5)
    assert not (await status.mailboxes())["support"].connected
