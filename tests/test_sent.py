"""The grouped "sent" commit: one transaction for every lane's rows, retried, never lost (real sink, real database)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ticketd.daemon.outbox import OutboxSender
from devtools.smtpsink import SinkMessage, SmtpSink
from ticketd.storage.db import database
from ticketd.storage.models import OutboundMessage, OutboundStatus
from tests.support import backend
from tests.support.daemon import eventually
from tests.support.outbox import OtherWriter, outbox, row


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"



@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[None]:
    async with database(backend.url(db_path)):
        yield


@pytest.fixture
async def impatient_db(db_path: Path) -> AsyncIterator[None]:
    """A busy timeout of 0.1 s: another process's write lock makes our commits fail quickly."""
    async with database(backend.url(db_path), busy_timeout=0.1):
        yield


@pytest.fixture
def other(db_path: Path) -> Iterator[OtherWriter]:
    writer = OtherWriter(db_path)
    yield writer
    writer.close()


@pytest.fixture(params=[True, False], ids=["pipelining", "command-by-command"])
def locking_sink(request: pytest.FixtureRequest, other: OtherWriter) -> Iterator[SmtpSink]:
    """A sink that lets another process take the write lock just before its first 250.

    The later messages' 250s come a moment after, so the first row's commit has begun (and
    waits for the lock) when they are accepted: without the pause all three 250s can reach
    the sender in one turn of its loop, and go in one commit.
    """
    def on_message(message: SinkMessage) -> None:
        if other.held:
            time.sleep(0.05)
        other.hold(once=True)

    with SmtpSink(on_message=on_message, pipelining=request.param) as sink:
        yield sink


async def _accepted(sender: OutboxSender, rows: int = 1) -> bool:
    """The 250s have reached us (the sink records a message before it answers)."""
    return len(sender.ledger.unrecorded) >= rows


async def statuses() -> list[str]:
    return [m.status for m in await OutboundMessage.all().order_by("id")]


async def test_rows_accepted_while_another_process_holds_the_database_go_out_and_are_recorded_together(
        db: None, other: OtherWriter, locking_sink: SmtpSink) -> None:
    await asyncio.gather(*(row(f"c{i}@example.test") for i in range(3)))
    sender = outbox(locking_sink.port, lanes=3)

    passing = asyncio.create_task(sender.deliver_due())
    # The first 250 finds the database locked and its commit waits; the other lanes do not
    # wait for it to send, and their rows queue behind it.
    assert await eventually(lambda: _accepted(sender, 3), timeout=10, interval=0.01)
    assert other.statuses() == ["pending"] * 3 and not passing.done()
    other.release()
    report = await passing
    await sender.close()

    assert (report.sent, len(report.windows)) == (3, 3)
    assert sender.ledger.commits == 2  # the first row, then the two that waited behind it: one commit
    assert await statuses() == ["sent"] * 3
    assert len(locking_sink.messages) == 3


async def test_a_commit_refused_by_a_locked_database_is_retried_and_nothing_is_sent_twice(
        impatient_db: None, other: OtherWriter, locking_sink: SmtpSink, caplog: pytest.LogCaptureFixture) -> None:
    rows = [await row("ann@example.test"), await row("bob@example.test")]
    sender = outbox(locking_sink.port, lanes=2)

    with caplog.at_level(logging.DEBUG, logger="ticketd.smtp"):
        passing = asyncio.create_task(sender.deliver_due())
        assert await eventually(lambda: _refused(caplog, 3), timeout=20, interval=0.02)
        assert other.statuses() == ["pending", "pending"] and not passing.done()
        other.release()
        report = await passing
    await sender.close()

    assert (report.sent, report.failed, report.deferred) == (2, 0, 0)
    for stored in [await OutboundMessage.get(id=r.id) for r in rows]:
        assert stored.status == OutboundStatus.SENT and stored.attempts == 1 and stored.last_error == ""
    assert len(locking_sink.messages) == 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot record" in warnings[0].getMessage()  # one line an outage
    assert any("recorded 2 sent message(s) after" in r.getMessage() for r in caplog.records)


async def _refused(caplog: pytest.LogCaptureFixture, times: int) -> bool:
    return sum("cannot record" in r.getMessage() for r in caplog.records) >= times



async def test_a_lane_cancelled_after_the_250_still_has_its_row_recorded(
        db: None, other: OtherWriter, locking_sink: SmtpSink) -> None:
    await row("ann@example.test")
    sender = outbox(locking_sink.port, lanes=1)

    passing = asyncio.create_task(sender.deliver_due())
    assert await eventually(lambda: _accepted(sender), timeout=10, interval=0.01)
    passing.cancel()  # a stop whose grace ran out, say: the process itself lives on
    await asyncio.gather(passing, return_exceptions=True)
    other.release()
    await sender.close()  # waits for the queued commit

    assert await statuses() == ["sent"]
    assert (await sender.deliver_due()).sent == 0
    assert len(locking_sink.messages) == 1


async def test_a_crash_between_the_250_and_the_commit_leaves_the_row_pending_and_it_is_sent_again(
        db_path: Path, other: OtherWriter, locking_sink: SmtpSink) -> None:
    async with database(backend.url(db_path), busy_timeout=0.1):
        await row("ann@example.test")
        sender = outbox(locking_sink.port, lanes=1)
        passing = asyncio.create_task(sender.deliver_due())
        assert await eventually(lambda: _accepted(sender), timeout=10, interval=0.01)
        # The process dies: every task ends where it is, nothing more is committed.
        for task in (passing, *(t for t in asyncio.all_tasks() if t.get_name() == "outbox-sent")):
            task.cancel()
        await asyncio.gather(passing, return_exceptions=True)
        await asyncio.sleep(0.2)  # the commit attempt in aiosqlite's thread fails on its busy timeout
    other.release()
    assert other.statuses() == ["pending"]  # never lost: the known window, not a gap

    async with database(backend.url(db_path)):  # the restart
        # The dead process's claim on the row (daemon.outbox_due) lapses first: here at once.
        await OutboundMessage.all().update(claimed_until=datetime(2000, 1, 1, tzinfo=timezone.utc))
        restarted = outbox(locking_sink.port, lanes=1)
        assert (await restarted.deliver_due()).sent == 1
        await restarted.close()
        assert await statuses() == ["sent"]
    assert len(locking_sink.messages) == 2  # sent twice: the crash fell inside the window


async def test_drain_keeps_its_deadline_while_the_database_stays_locked(
        impatient_db: None, other: OtherWriter, locking_sink: SmtpSink, caplog: pytest.LogCaptureFixture) -> None:
    await row("ann@example.test")
    sender = outbox(locking_sink.port, lanes=1)

    with caplog.at_level(logging.INFO, logger="ticketd.smtp"):
        report = await sender.drain(0.5, ignore_schedule=True)

    assert (report.sent, report.deferred, report.failed) == (0, 1, 0)  # still pending, not failed
    assert other.statuses() == ["pending"]
    assert any("will be sent again" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
