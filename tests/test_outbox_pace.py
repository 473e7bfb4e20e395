"""The outbox beside inbound transactions: sends in slots between them, queries that ignore history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from tortoise import connections

from ticketd.daemon.outbox_due import due_rows, due_sql, next_due, release
from ticketd.daemon.turn import WriteTurn
from devtools.smtpsink import SmtpSink
from ticketd.storage.db import database
from ticketd.storage.models import OutboundMessage, OutboundStatus
from tests.support import backend
from tests.support.outbox import START, outbox, row


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[None]:
    async with database(backend.url(tmp_path / "outbox.db")):
        yield


async def statuses() -> list[str]:
    return [m.status for m in await OutboundMessage.all().order_by("id")]


async def test_sends_wait_out_an_inbound_transaction_then_go_row_after_row_recorded_before_the_next_one(
        db: None, fresh_sink: SmtpSink) -> None:
    await asyncio.gather(*(row(f"c{i}@example.test") for i in range(6)))
    turn = WriteTurn(hold_for=60)  # however slow the machine, a send in flight holds tx2 back
    sender = outbox(fresh_sink.port, lanes=2, write_turn=turn)
    seen_by_tx2: list[object] = []

    async def tx2() -> None:
        async with turn.exclusive():
            seen_by_tx2.extend([len(fresh_sink.messages), await statuses()])

    async with turn.exclusive():  # tx1: an inbound group in progress
        passing = asyncio.create_task(sender.deliver_due())
        waiting = asyncio.create_task(tx2())
        await asyncio.sleep(0.3)  # long enough for the lanes to reach the turn, and a long slot
        # MAIL and RCPT go ahead, DATA waits: no 250 can land inside an inbound transaction.
        assert sorted(fresh_sink.commands) == ["MAIL", "MAIL", "RCPT", "RCPT"]
    report = await passing
    await waiting
    await sender.close()

    assert report.sent == 6
    # The lanes went send after send in the slot tx1 earned: tx2 came after all six, and
    # their "sent" was committed before it began.
    assert seen_by_tx2 == [6, [OutboundStatus.SENT] * 6]


async def _plan(sql: str, values: list[object] | None = None) -> str:
    rows = await connections.get("default").execute_query_dict(f"EXPLAIN QUERY PLAN {sql}", values)
    return " | ".join(str(r["detail"]) for r in rows)


@pytest.mark.parametrize("query", [
    lambda: due_sql(START, [], 100, "me", 300.0),
    lambda: due_sql(None, [1, 2], 100, "me", 300.0),
    lambda: (next_due().limit(1).sql(params_inline=True), None),
], ids=["due", "all-pending-but-unrecorded", "next-due"])
@backend.sqlite_only("SQLite's planner (EXPLAIN QUERY PLAN) chooses without statistics; PostgreSQL's by them")
async def test_the_outbox_queries_read_pending_rows_through_an_index_not_the_history(db: None, query) -> None:
    plan = await _plan(*query())
    # A SCAN of the table would read every row ever sent; an index search on status reads
    # only the pending ones (the backlog), however long the history.
    assert "SCAN outbound_message" not in plan and "(status=?" in plan, plan


async def test_due_rows_are_what_the_orm_stored_and_only_the_pending_due_ones_oldest_first(db: None) -> None:
    later = await row("later@example.test", created=START + timedelta(hours=1))
    first, second = await row("a@example.test"), await row("b@example.test")
    await OutboundMessage.filter(id=second.id).update(status=OutboundStatus.SENT)
    due = (await due_rows(START, [], 100, "me", 5.0)).rows
    assert [d.id for d in due] == [first.id]
    assert (due[0].recipients, due[0].raw_bytes, due[0].created_at) == (["a@example.test"], first.raw_bytes, START)
    await release("me")  # the skip list alone keeps it out now
    assert [d.id for d in (await due_rows(None, [first.id], 100, "me", 5.0)).rows] == [later.id]
