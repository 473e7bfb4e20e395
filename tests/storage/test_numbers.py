"""Ticket numbers: unique from concurrent commits, above the imported ones after an import, and a
version 2 database upgraded to the claims and the sequence (storage.numbers, storage.schema)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from ticketd.daemon.pipeline import Processor
from ticketd.storage import bulk, intake, numbers, schema
from ticketd.storage.db import DatabaseError, database
from ticketd.storage.load import load
from ticketd.storage.models import Ticket
from tests.support import backend
from tests.support.data import exported
from tests.support.desk import Desk, config
from tests.support.mail import simple


async def new_ticket(processor: Processor, n: str) -> int:
    """A mail that opens a ticket (a subject and Message-ID of its own); its number."""
    raw = simple(f"c{n}@example.org", f"Problem {n}", f"<n{n}@example.org>")
    row = await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), processor.config.max_message_bytes)
    [outcome] = await processor.process([row], processor.config.mailboxes[0])
    assert outcome.new_ticket, outcome
    return int(outcome.ticket_number)


async def test_tickets_committed_at_once_by_two_processes_get_numbers_once_each(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with database(cfg.database_url):
        if backend.POSTGRES:  # two connections in the pool: the commits really overlap
            await asyncio.gather(*(bulk.fetch("SELECT pg_sleep(0.05)") for _ in range(2)))

        async def commits(processor: Processor, who: str) -> list[int]:
            return [await new_ticket(processor, f"{who}{i}") for i in range(10)]

        # No shared write turn: as two daemons, each its own transactions.
        first, second = await asyncio.gather(commits(Processor(cfg), "a"), commits(Processor(cfg), "b"))
        assert first == sorted(first) and second == sorted(second)  # each one's numbers increase
        assert sorted(first + second) == list(range(1, 21))  # none given twice, none skipped (nothing rolled back)
        assert sorted(await Ticket.all().values_list("number", flat=True)) == list(range(1, 21))
        if backend.POSTGRES:  # from the sequence; the counter row that serialised them is not used
            assert await bulk.fetch("SELECT value FROM counter WHERE name = 'ticket'") == []
            [(last,)] = await bulk.fetch(f"SELECT last_value FROM {numbers.SEQUENCE}")
            assert last == 20


async def test_after_an_import_new_tickets_are_numbered_past_the_imported_ones(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    cfg = config(tmp_path / "a")
    async with database(cfg.database_url):
        desk = Desk(cfg)
        for _ in range(3):
            await desk.customer("Help.")
        data = await exported(desk)
    # Where the old database had given higher numbers than it holds (a deleted ticket, a
    # rolled-back one on PostgreSQL), its counter says so: the import takes the higher. A counter
    # behind the tickets (an export edited, or from a build that kept no counter) cannot lower it.
    assert b'{"table":"counter","row":{"name":"ticket","value":3}}' in data
    for name, counter, expected in (("as-is", 3, 4), ("ahead", 7, 8), ("behind", 1, 4)):
        (tmp_path / name).mkdir()
        target = config(tmp_path / name)
        async with database(target.database_url):
            await load(io.BytesIO(data.replace(b'"value":3}', b'"value":%d}' % counter)), name)
            assert await new_ticket(Processor(target), name) == expected, name


async def test_a_version_2_database_is_upgraded_to_claims_and_its_numbers_go_on(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    async with database(cfg.database_url):
        desk = Desk(cfg)
        for _ in range(3):
            await desk.customer("Help.")
        await _as_version_2()
    with pytest.raises(DatabaseError, match="version 2 .* older than this ticketd's version 3"):
        async with database(cfg.database_url):
            pass
    async with database(cfg.database_url, upgrade=True) as versions:  # `ticketd db upgrade`
        assert versions == (2, 3)
        assert await _claim_columns() == {"claimed_by", "claimed_until"}
        assert await new_ticket(Processor(cfg), "next") == 4
    async with database(cfg.database_url) as versions:
        assert versions == (3, 3)
        assert await new_ticket(Processor(cfg), "later") == 5


async def _as_version_2() -> None:
    """What version 2 had: no claim columns, no sequence (its counter row gave the numbers)."""
    if bulk.is_postgres(bulk.client()):
        [(given,)] = await bulk.fetch(f"SELECT last_value FROM {numbers.SEQUENCE}")
        await bulk.execute(f"DROP SEQUENCE {numbers.SEQUENCE}")
        await bulk.execute("INSERT INTO counter (name, value) VALUES ('ticket', ?)", [given])
    for column in ("claimed_by", "claimed_until"):
        await bulk.execute(f'ALTER TABLE outbound_message DROP COLUMN "{column}"')
    await bulk.execute(f"UPDATE {schema.TABLE} SET version = 2 WHERE version = 3")  # a new database has one row
    assert await _claim_columns() == set()


async def _claim_columns() -> set[str]:
    if bulk.is_postgres(bulk.client()):
        rows = await bulk.fetch("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                "current_schema() AND table_name = 'outbound_message'")
    else:
        rows = [(r[1],) for r in await bulk.fetch("PRAGMA table_info(outbound_message)")]
    return {str(r[0]) for r in rows} & {"claimed_by", "claimed_until"}
