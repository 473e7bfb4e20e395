"""storage.status against a real SQLite database: mailbox health rows, backlog, outbox depth, due steps."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from tortoise import connections

from ticketd.storage import intake, status
from ticketd.storage.db import database
from ticketd.storage.models import DueStep, InboundMessage, InboundStatus, OutboundMessage, OutboundStatus, Ticket
from tests.support.outbox import START, row


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[None]:
    async with database(f"sqlite://{tmp_path}/status.db"):
        yield


async def test_mailbox_rows_are_written_over_and_read_back_as_written(db: None) -> None:
    first = status.MailboxRow("support", True, START, START, None, "", None, 10, 3)
    await status.write_mailboxes([first, status.MailboxRow("sales", False, None, None, None, "x", START, None, None)],
                                 START)
    later = START + timedelta(seconds=30)
    again = status.MailboxRow("support", False, later, START, later, "ImapError: connection lost", later, 12, 0)
    await status.write_mailboxes([again], later)
    rows = await status.mailboxes()
    assert rows["support"] == replace(again, updated_at=later)
    assert rows["sales"].updated_at == START and rows["sales"].last_error == "x"
    assert rows["sales"].since is None and rows["sales"].server_messages is None


async def test_the_outbox_counts_pending_rows_only_with_the_oldest_and_the_next_try(db: None) -> None:
    assert await status.outbox() == status.Outbox(0, None, None)
    sent = await row("old@example.test", created=START - timedelta(days=3))
    await OutboundMessage.filter(id=sent.id).update(status=OutboundStatus.SENT)
    failed = await row("gone@example.test", created=START - timedelta(days=2))
    await OutboundMessage.filter(id=failed.id).update(status=OutboundStatus.FAILED)
    await row("a@example.test", created=START - timedelta(minutes=5))
    later = await row("b@example.test", created=START)
    await OutboundMessage.filter(id=later.id).update(next_try_at=START - timedelta(minutes=9))
    assert await status.outbox() == status.Outbox(2, START - timedelta(minutes=5), START - timedelta(minutes=9))


async def test_timers_are_the_undone_steps_due_now_and_the_first_to_come(db: None) -> None:
    ticket = await Ticket.create(number=1, subject="s", requester="c@example.org")
    assert await status.timers(START) == status.Timers(0, None, None)
    for kind, due, done in (("auto_close", START - timedelta(hours=2), START), ("pending_reminder",
                            START - timedelta(hours=1), None), ("auto_solve", START - timedelta(minutes=1), None),
                            ("sla_warn:resolution", START + timedelta(hours=1), None)):
        await DueStep.create(ticket=ticket, kind=kind, due_at=due, done_at=done, created_at=START)
    assert await status.timers(START) == status.Timers(2, START - timedelta(hours=1), "pending_reminder")
    assert (await status.timers(START - timedelta(hours=1, minutes=30))).due == 0


async def test_the_backlog_is_each_mailbox_rows_stored_but_not_processed(db: None) -> None:
    support, sales = await intake.mailbox_state("support"), await intake.mailbox_state("sales")
    for n, (box, state) in enumerate([(support, "received"), (support, "received"), (support, "processed"),
                                      (sales, "quarantined"), (sales, "received"), (None, "received")]):
        await InboundMessage.create(mailbox=box, uid=n, size=1, sha256="0" * 64, status=state)
    assert await status.backlog() == {"support": 2, "sales": 1, "": 1}
    assert await InboundMessage.filter(status=InboundStatus.RECEIVED).count() == 4


async def test_every_status_query_finds_its_rows_through_an_index_not_the_history(db: None) -> None:
    traced: list[str] = []
    connection = connections.get("default")._connection  # aiosqlite: the callback runs in its thread
    await connection.set_trace_callback(traced.append)
    try:
        await status.backlog()
        await status.outbox()
        await status.timers(START)
    finally:
        await connection.set_trace_callback(None)
    plans = []
    for statement in traced:  # the trace has the values inlined: the plan is the one that ran
        rows = await connections.get("default").execute_query_dict(f"EXPLAIN QUERY PLAN {statement}")
        plans.append(" | ".join(str(r["detail"]) for r in rows))
    assert len(plans) == 4
    for plan in plans:
        assert "SCAN" not in plan and "USING" in plan and "INDEX" in plan, plan
