"""PostgreSQL itself: writers queue as on SQLite, a lock held too long is a temporary failure,
opening waits for nobody, old databases get new columns. On the session's real cluster, in
both runs of the suite (these are about PostgreSQL, whatever TICKETD_TEST_DB says)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from tortoise.transactions import in_transaction

from ticketd.daemon.config import Config
from ticketd.daemon.pipeline import Processor
from devtools.postgres import Postgres, SyncConnection
from ticketd.storage import bulk, columns, intake, schema
from ticketd.storage.db import DatabaseError, database
from ticketd.storage.errors import is_temporary
from ticketd.storage.models import InboundStatus, Ticket
from ticketd.storage.postgres_backend import WRITE_LOCK
from ticketd.storage.writes import GroupWrites
from tests.support import backend
from tests.support.daemon import PROJECT
from tests.support.desk import config
from tests.support.mail import simple

NOW = datetime(2030, 5, 6, 7, 8, tzinfo=timezone.utc)


@pytest.fixture
def pg(postgres_databases: backend.Databases, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database of this test's own on the cluster."""
    yield postgres_databases.url(str(tmp_path / "pg"))
    postgres_databases.drop_all()


async def test_two_processes_given_the_same_received_row_make_one_ticket(tmp_path: Path, pg: str) -> None:
    cfg = config(tmp_path)
    first, second = Processor(cfg), Processor(cfg)  # no shared turn: two connections, two transactions
    async with database(pg):
        await _ticket_from(first, cfg, simple("bo@example.org", "Earlier", "<e@example.org>"))  # the counter row
        await asyncio.gather(_idle(), _idle())  # two connections in the pool: the commits really overlap
        raw = simple("ann@example.org", "Printer", "<p@example.org>")
        row = await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), cfg.max_message_bytes)
        twin = await intake.InboundMessage.get(id=row.id)
        ready = [await first.prepare([row]), await second.prepare([twin])]  # parsed: both go straight to commit
        outcomes = await asyncio.gather(first.process([row], cfg.mailboxes[0], ready[0]),
                                        second.process([twin], cfg.mailboxes[0], ready[1]))
        assert sorted(o.status for [o] in outcomes) == [InboundStatus.PROCESSED, InboundStatus.PROCESSED]
        assert sum("meanwhile" in o.reason for [o] in outcomes) == 1  # the second found it claimed
        assert await Ticket.all().count() == 2


async def test_a_database_restart_is_a_temporary_failure_and_then_the_work_goes_on(
        tmp_path: Path, postgres_factory: Callable[..., Postgres]) -> None:
    server = postgres_factory()  # a cluster of its own: this one is stopped under the daemon's feet
    cfg = config(tmp_path)
    processor = Processor(cfg)
    async with database(server.create_database("restarted")):
        await _ticket_from(processor, cfg, simple("bo@example.org", "Before", "<b@example.org>"))
        raw = simple("ann@example.org", "During", "<d@example.org>")
        row = await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), cfg.max_message_bytes)
        server.stop()
        with pytest.raises(Exception) as failed:
            await processor.process([row], cfg.mailboxes[0])
        assert is_temporary(failed.value), failed.value  # what every caller asks: try again later
        server.start()
        assert (await intake.InboundMessage.get(id=row.id)).status == InboundStatus.RECEIVED  # never held
        [outcome] = await processor.process([row], cfg.mailboxes[0])  # the pool connects again
        assert outcome.new_ticket and await Ticket.all().count() == 2


async def _ticket_from(processor: Processor, cfg: Config, raw: bytes) -> None:
    row = await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), cfg.max_message_bytes)
    [outcome] = await processor.process([row], cfg.mailboxes[0])
    assert outcome.new_ticket


async def _idle() -> None:
    async with in_transaction():
        await asyncio.sleep(0.05)


async def test_a_nul_in_the_mail_is_stored_as_a_replacement_character_not_held(tmp_path: Path, pg: str) -> None:
    cfg = config(tmp_path)  # PostgreSQL's text and jsonb hold no NUL; SQLite's TEXT does
    raw = simple("ann@example.org", "Printer", "<nul@example.org>", body="before\x00after")
    async with database(pg):
        row = await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), cfg.max_message_bytes)
        [outcome] = await Processor(cfg).process([row], cfg.mailboxes[0])
        assert outcome.status == InboundStatus.PROCESSED, outcome.reason
        ticket = await Ticket.get(number=outcome.ticket_number)
        [article] = await ticket.articles.all()
        assert "before\ufffdafter" in article.text
        assert bulk.without_nul(['["a\\u0000", "\\\\u0000"]'], [True]) == ['["a\\ufffd", "\\\\u0000"]']


async def test_a_writer_waits_for_another_then_goes_on(pg: str) -> None:
    async with database(pg, busy_timeout=5):
        order: list[str] = []

        async def hold() -> None:
            async with in_transaction():
                order.append("first in")
                await asyncio.sleep(0.3)
                await bulk.execute("INSERT INTO counter (name, value) VALUES ('x', 1)")
                order.append("first out")

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0.05)
        async with in_transaction():
            order.append("second in")
            assert [r[0] for r in await bulk.fetch("SELECT value FROM counter WHERE name = 'x'")] == [1]
        await holder
        assert order == ["first in", "first out", "second in"]


async def test_a_lock_held_past_busy_timeout_is_temporary_and_leaks_no_connection(pg: str) -> None:
    other = SyncConnection(pg)
    try:
        other.execute("BEGIN")
        other.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)  # another instance mid-commit
        async with database(pg, busy_timeout=0.1):
            for _ in range(8):  # more than the pool's five connections
                started = time.monotonic()
                with pytest.raises(Exception) as failed:
                    async with in_transaction():
                        raise AssertionError("the transaction must not begin")
                assert is_temporary(failed.value), failed.value
                assert time.monotonic() - started < 2
            other.execute("ROLLBACK")
            async with in_transaction():  # the pool still has its connections, the task no dead transaction
                await bulk.execute("INSERT INTO counter (name, value) VALUES ('y', 2)")
            assert [r[0] for r in await bulk.fetch("SELECT value FROM counter")] == [2]
    finally:
        other.close()


async def test_opening_waits_for_no_transaction_of_a_running_daemon(pg: str) -> None:
    async with database(pg):
        pass  # the daemon created the tables
    daemon = SyncConnection(pg)
    try:
        tables = [name for (name,) in daemon.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
        daemon.execute("BEGIN")
        daemon.execute(f"LOCK TABLE {', '.join(tables)} IN ROW EXCLUSIVE MODE")  # what its INSERTs and UPDATEs hold
        started = time.monotonic()
        async with database(pg, busy_timeout=2):  # the CLI beside it
            assert await Ticket.all().count() == 0
        assert time.monotonic() - started < 1.5
    finally:
        daemon.execute("ROLLBACK")
        daemon.close()


async def test_ids_picked_for_a_group_come_from_the_sequences_the_orm_uses(pg: str) -> None:
    async with database(pg):
        async with in_transaction():
            writes = GroupWrites(NOW)
            grouped = await writes.ticket(1, subject="s", priority="P3", category="", queue="", mailbox="",
                                          requester="a@example.org", requester_name="", fired_rules=[], tags=[])
            await writes.flush()
        orm = await Ticket.create(number=2, subject="t", requester="b@example.org")
        assert orm.id != grouped.id
        later = GroupWrites(NOW)
        async with in_transaction():
            third = await later.ticket(3, subject="u", priority="P3", category="", queue="", mailbox="",
                                       requester="c@example.org", requester_name="", fired_rules=[], tags=[])
            await later.flush()
        assert len({grouped.id, orm.id, third.id}) == 3 and await Ticket.all().count() == 3


async def test_an_old_database_gets_the_new_columns_as_a_new_one_has_them(
        pg: str, postgres_databases: backend.Databases, tmp_path: Path) -> None:
    fresh = postgres_databases.url(str(tmp_path / "fresh"))
    old = SyncConnection(pg)
    try:
        for table, column, *_ in columns.ADDED:  # the release before them
            old.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        old.execute(f'DROP TABLE "{schema.TABLE}"')  # 0.1.0 recorded no schema version
        old.execute("INSERT INTO ticket (id, number, subject, status, priority, category, queue, mailbox, "
                    "requester, requester_name, fired_rules, tags, created_at, updated_at) VALUES (1, 1, 's', "
                    "'new', 'P3', '', '', '', 'a@example.org', '', '[]', '[]', now(), now())")
        old.execute("INSERT INTO article (ticket_id, direction, sender, \"to\", cc, subject, message_id, in_reply_to, "
                    "\"references\", text, html, internal, created_at) VALUES (1, 'out', '', '', '', '', '<o@x>', '', "
                    "'', '', '', false, now())")
    finally:
        old.close()
    async with database(pg, upgrade=True):  # `ticketd db upgrade`
        assert await columns.add_missing() == []  # the upgrade added them
        assert [r[0] for r in await bulk.fetch("SELECT author FROM article")] == ["system"]  # our own mail
    assert _definitions(pg) == _definitions(fresh)


def _definitions(url: str) -> dict[tuple[str, str], tuple[object, ...]]:
    tables = sorted({table for table, *_ in columns.ADDED})
    other = SyncConnection(url)
    try:
        rows = other.fetch("SELECT table_name, column_name, data_type, is_nullable, column_default "
                           "FROM information_schema.columns WHERE table_schema = current_schema() "
                           "AND table_name = ANY($1::text[])", tables)
    finally:
        other.close()
    return {(str(t), str(c)): tuple(rest) for t, c, *rest in rows}


async def test_a_wrong_password_is_refused_without_showing_it(pg: str) -> None:
    wrong = pg.replace(pg.split("//", 1)[1].split("@", 1)[0], "ticketd:not-the-password-42")
    with pytest.raises(DatabaseError) as refused:
        async with database(wrong):
            pass
    assert "password authentication failed" in str(refused.value)
    assert "not-the-password-42" not in str(refused.value) and "***" in str(refused.value)


# A fresh process: the ORM's statements must first be built for SQLite.
_SQLITE_THEN_POSTGRES = """
import asyncio, sys
from ticketd.storage.db import database
from ticketd.storage.models import Ticket

async def main():
    for url, subject in zip(sys.argv[1:], ("s", "p")):
        async with database(url):
            await Ticket.create(number=1, subject=subject, requester="a@example.org")
            print(*[t.subject for t in await Ticket.all()])

asyncio.run(main())
"""


def test_sqlite_then_postgres_in_one_process_sends_each_its_own_sql(tmp_path: Path, pg: str) -> None:
    done = subprocess.run([sys.executable, "-c", _SQLITE_THEN_POSTGRES, f"sqlite://{tmp_path}/first.db", pg],
                          cwd=PROJECT, env=dict(os.environ, PYTHONPATH=str(PROJECT)), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["s", "p"]
