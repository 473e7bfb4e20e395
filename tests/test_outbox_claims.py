"""Outbox rows claimed by the instance that sends them: two senders on one database send each row once.

Each OutboxSender here is an instance of its own (as each `ticketd run` process is), with the
real SMTP sink and a PostgreSQL database; the tests at the end hold real row locks from another
connection. A SQLite file has one instance (daemon.instance's lock) and no claims: its last test
sees that a row a killed run left claimed is sent at once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from devtools.postgres import SyncConnection
from devtools.smtpsink import SmtpSink
from ticketd.daemon.outbox import OutboxSender
from ticketd.daemon.outbox_due import due_rows, hold_seconds, wall_now
from ticketd.daemon.turn import WriteTurn
from ticketd.storage import bulk
from ticketd.storage.db import database
from ticketd.storage.models import OutboundMessage, OutboundStatus
from tests.support import backend
from tests.support.outbox import START, outbox

LONG_AGO = datetime(2000, 1, 1, tzinfo=timezone.utc)
claims_only = pytest.mark.skipif(not backend.POSTGRES, reason="PostgreSQL only: one instance per SQLite file, no claims")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[None]:
    async with database(backend.url(tmp_path / "claims.db")):
        yield


async def pending(count: int, claimed_by: str | None = None, claimed_until: datetime | None = None) -> list[int]:
    """``count`` due rows, each with a Message-ID of its own in its bytes (the sink tells them apart)."""
    rows = []
    for _ in range(count):
        mid = f"<claim-{time.monotonic_ns()}-{len(rows)}@example.test>"
        raw = f"From: support@example.test\r\nTo: c@example.test\r\nMessage-ID: {mid}\r\nSubject: Hi\r\n\r\nHi.\r\n"
        rows.append(OutboundMessage(
            kind="ack", message_id=mid, mail_from="support@example.test", recipients=["c@example.test"],
            recipient="c@example.test", raw_bytes=raw.encode(), next_try_at=START, created_at=START,
            claimed_by=claimed_by, claimed_until=claimed_until))
    await OutboundMessage.bulk_create(rows)
    return [r.id for r in await OutboundMessage.filter(message_id__in=[r.message_id for r in rows]).order_by("id")]


def delivered(sink: SmtpSink) -> Counter[str]:
    """How often each Message-ID reached the sink."""
    return Counter(str(m.message["Message-ID"]) for m in sink.messages)


async def claims() -> list[tuple[str, str | None, object]]:
    return [(m.status, m.claimed_by, m.claimed_until) for m in await OutboundMessage.all().order_by("id")]


@claims_only
async def test_two_senders_on_one_database_deliver_each_of_200_rows_exactly_once(db: None, fresh_sink: SmtpSink) -> None:
    await pending(200)
    first, second = outbox(fresh_sink.port, lanes=4), outbox(fresh_sink.port, lanes=4)
    for sender in (first, second):
        sender.batch = 10  # many small claims, so the two take turns at the same rows all along

    async def send_all(sender: OutboxSender) -> None:
        while (await sender.deliver_due()).sent:
            pass
        await sender.close()

    await asyncio.gather(send_all(first), send_all(second))

    counts = delivered(fresh_sink)
    assert len(counts) == 200 and set(counts.values()) == {1}, counts.most_common(3)
    assert first.totals.sent + second.totals.sent == 200
    assert first.totals.sent > 0 and second.totals.sent > 0  # both really sent: the claims split the rows
    assert await claims() == [(OutboundStatus.SENT, None, None)] * 200  # "sent" cleared every claim


@claims_only
async def test_a_claim_whose_instance_died_lapses_and_the_row_is_sent(db: None, fresh_sink: SmtpSink) -> None:
    [dead] = await pending(1, claimed_by="gone.example:4242:deadbeef", claimed_until=LONG_AGO)
    report = await outbox(fresh_sink.port).deliver_due()
    assert report.sent == 1 and len(fresh_sink.messages) == 1
    assert await claims() == [(OutboundStatus.SENT, None, None)]
    assert (await OutboundMessage.get(id=dead)).sent_at is not None


@claims_only
async def test_a_live_claim_of_another_instance_is_left_alone(db: None, fresh_sink: SmtpSink) -> None:
    until = wall_now() + timedelta(hours=1)
    [held] = await pending(1, claimed_by="busy.example:7:cafe", claimed_until=until)
    [free] = await pending(1)
    sender = outbox(fresh_sink.port)
    report = await sender.deliver_due()
    assert report.sent == 1 and len(fresh_sink.messages) == 1  # only the free one
    row = await OutboundMessage.get(id=held)
    assert (row.status, row.claimed_by, row.claimed_until) == (OutboundStatus.PENDING, "busy.example:7:cafe", until)
    assert (await OutboundMessage.get(id=free)).status == OutboundStatus.SENT
    # Due, but another's: no reason to look again at once (which would spin until it is done).
    assert await sender.next_due_in(5.0) == 5.0
    await sender.close()
    assert (await OutboundMessage.get(id=held)).claimed_by == "busy.example:7:cafe"  # close gives back only ours


@claims_only
async def test_run_once_waits_for_a_claim_a_killed_run_left_if_it_ends_within_the_drain(
        db: None, fresh_sink: SmtpSink) -> None:
    await pending(1, claimed_by="killed.example:9:dead", claimed_until=wall_now() + timedelta(seconds=1))
    stopping = outbox(fresh_sink.port)
    assert (await stopping.drain(3.0)).sent == 0  # a daemon's stop: other instances' rows are theirs
    started = time.monotonic()
    report = await outbox(fresh_sink.port).drain(3.0, ignore_schedule=True)  # `run --once`
    assert report.sent == 1 and len(fresh_sink.messages) == 1
    assert 0.5 < time.monotonic() - started < 3.0
    [row] = await OutboundMessage.all()
    assert (row.status, row.claimed_by) == (OutboundStatus.SENT, None)


@claims_only
async def test_the_claim_lasts_the_time_a_send_may_take_and_rows_not_reached_are_given_back(
        db: None, fresh_sink: SmtpSink) -> None:
    ids = await pending(3)
    sender = outbox(fresh_sink.port, timeout=5.0)
    claim = await due_rows(START, [], 100, sender.instance, 5.0)
    assert [d.id for d in claim.rows] == ids
    rows = await OutboundMessage.filter(id__in=ids)
    assert {r.claimed_by for r in rows} == {sender.instance}
    left = [(r.claimed_until - wall_now()).total_seconds() for r in rows]
    assert all(hold_seconds(5.0) - 5 < s <= hold_seconds(5.0) for s in left), left
    assert (await due_rows(START, [], 100, "someone-else", 5.0)).rows == []  # held: nobody else gets them

    await OutboundMessage.filter(id__in=ids).update(claimed_by=None, claimed_until=None)
    report = await sender.deliver_due(deadline=time.monotonic())  # no lane may start a row
    assert (report.sent, report.deferred) == (0, 3) and fresh_sink.messages == []
    assert await claims() == [(OutboundStatus.PENDING, None, None)] * 3  # given back: anybody's at once


@claims_only
async def test_no_content_is_sent_once_too_little_of_the_claim_is_left(db: None, fresh_sink: SmtpSink) -> None:
    """With a 0.5 s SMTP timeout the claim lasts 1.5 s, and the content needs 0.625 s of it left. A
    write turn held past that (an inbound transaction) keeps the lane from DATA: the row goes back unsent."""
    [row_id] = await pending(1)
    turn = WriteTurn(hold_for=60)
    sender = outbox(fresh_sink.port, write_turn=turn, timeout=0.5)
    async with turn.exclusive():
        passing = asyncio.create_task(sender.deliver_due())
        await asyncio.sleep(1.0)  # MAIL and RCPT went out; the content waits for the turn
    report = await passing
    await sender.close()
    assert (report.sent, report.deferred, report.failed) == (0, 1, 0)
    assert fresh_sink.messages == []
    row = await OutboundMessage.get(id=row_id)
    assert (row.status, row.claimed_by, row.attempts) == (OutboundStatus.PENDING, None, 0)
    # The same short claim without the wait: sent (the guard is about time, not about the timeout).
    again = outbox(fresh_sink.port, timeout=0.5)
    assert (await again.deliver_due()).sent == 1 and len(fresh_sink.messages) == 1
    await again.close()


@claims_only
async def test_a_deferred_or_failed_row_is_no_longer_claimed(db: None) -> None:
    """A refused connection defers every row of the pass; the deferral clears their claim."""
    from devtools._process import free_port

    await pending(2)
    sender = outbox(free_port())  # nobody listens there
    report = await sender.deliver_due()
    await sender.close()
    assert report.deferred == 2
    assert [(s, c, u) for s, c, u in await claims()] == [(OutboundStatus.PENDING, None, None)] * 2
    assert [m.attempts for m in await OutboundMessage.all()] == [1, 1]


# PostgreSQL itself, in both runs of the suite: a row another transaction holds locked is passed over.

@pytest.fixture
def pg(postgres_databases: backend.Databases, tmp_path: Path) -> Iterator[str]:
    yield postgres_databases.url(str(tmp_path / "pg"))
    postgres_databases.drop_all()


async def test_postgresql_a_row_locked_by_another_connection_is_skipped_not_waited_for(
        pg: str, fresh_sink: SmtpSink) -> None:
    async with database(pg, busy_timeout=0.2):  # waiting for the lock would fail in 0.2 s
        locked, free = await pending(2)
        other = SyncConnection(pg)
        try:
            other.execute("BEGIN")
            other.execute("SELECT id FROM outbound_message WHERE id = $1 FOR UPDATE", locked)
            started = time.monotonic()
            claim = await due_rows(START, [], 100, "me", 5.0)
            assert [d.id for d in claim.rows] == [free]
            assert time.monotonic() - started < 1.0  # waiting would have failed at the lock_timeout above
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert [d.id for d in (await due_rows(START, [], 100, "you", 5.0)).rows] == [locked]


async def test_postgresql_the_claim_takes_no_advisory_write_lock(pg: str, fresh_sink: SmtpSink) -> None:
    """Another instance's long ticket transaction (which holds the write lock) holds no send back."""
    from ticketd.storage.postgres_backend import WRITE_LOCK

    async with database(pg, busy_timeout=0.2):
        await pending(1)
        other = SyncConnection(pg)
        try:
            other.execute("BEGIN")
            other.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
            sender = outbox(fresh_sink.port)
            report = await sender.deliver_due()
            assert report.sent == 1 and len(fresh_sink.messages) == 1
            await sender.close()
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert [r[0] for r in await bulk.fetch("SELECT status FROM outbound_message")] == [OutboundStatus.SENT]


@backend.sqlite_only("one instance per SQLite file: its rows are nobody's claim")
async def test_on_sqlite_a_row_a_killed_run_left_claimed_is_sent_at_once(db: None, fresh_sink: SmtpSink) -> None:
    # As a 0.3.0 run killed mid-send left it (or a file that moved from PostgreSQL): claimed for an hour.
    [row] = await pending(1, claimed_by="gone.example:4242:deadbeef", claimed_until=wall_now() + timedelta(hours=1))
    report = await outbox(fresh_sink.port).deliver_due()
    assert report.sent == 1 and list(delivered(fresh_sink).values()) == [1]
    assert (await OutboundMessage.get(id=row)).status == OutboundStatus.SENT
