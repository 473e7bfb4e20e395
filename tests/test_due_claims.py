"""Due steps with several instances: two runners at the same moment fire each step once.

Tickets on the 24x7 P1 policy (first response 1 h, warned at 45 min), their steps run by
daemon.due through the real database; the PostgreSQL tests hold real locks from another
connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.postgres import SyncConnection
from ticketd.daemon import due
from ticketd.daemon.pipeline import Processor
from ticketd.storage.db import database
from ticketd.storage.errors import TemporaryFailure
from ticketd.storage.models import DueStep
from ticketd.storage.postgres_backend import WRITE_LOCK
from tests.support import backend
from tests.support.desk import Desk, config
from tests.test_due_batch import MIN, SLA, warned  # the same SLA desk as one runner's tests


async def test_two_runners_at_the_same_moment_fire_each_step_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(due, "BATCH", 3)  # many batches: the two runners interleave all along
    async with database((cfg := config(tmp_path, SLA)).database_url):
        desk = Desk(cfg)
        for _ in range(12):
            await desk.customer("The site is down.")
        desk.clock.now += 50 * MIN
        # Two daemons: processors of their own, no shared write turn (on PostgreSQL, two connections).
        runs = await asyncio.gather(due.run_due(desk.processor), due.run_due(Processor(cfg, clock=desk.clock)))
        assert sum(runs) == 12
        assert await warned() == list(range(1, 13))
        assert await desk.sent("sla_warning") == 12
        assert await due.run_due(desk.processor) == 0


@pytest.fixture
def pg(postgres_databases: backend.Databases, tmp_path: Path) -> Iterator[str]:
    yield postgres_databases.url(str(tmp_path / "pg"))
    postgres_databases.drop_all()


async def test_postgresql_a_step_another_transaction_holds_is_skipped_not_waited_for(tmp_path: Path, pg: str) -> None:
    cfg = config(tmp_path, SLA)
    async with database(pg, busy_timeout=0.2):  # waiting for a lock fails after 0.2 s
        desk = Desk(cfg)
        for _ in range(3):
            await desk.customer("The site is down.")
        desk.clock.now += 50 * MIN
        [held] = await DueStep.filter(ticket__number=2, kind="sla_warn:first_response").values_list("id", flat=True)
        other = SyncConnection(pg)
        try:
            other.execute("BEGIN")  # another instance, in the middle of running that step
            other.execute("SELECT id FROM due_step WHERE id = $1 FOR UPDATE", held)
            started = time.monotonic()
            assert await due.run_due(desk.processor) == 2
            assert time.monotonic() - started < 5.0  # a wait for the lock would have failed at the 0.2 s above
            assert await warned() == [1, 3]
            other.execute("ROLLBACK")  # it gave up: the step is still due, and runs now
        finally:
            other.close()
        assert await due.run_due(desk.processor) == 1 and await warned() == [1, 2, 3]


async def test_postgresql_the_advisory_write_lock_queues_due_batches_behind_other_transactions(
        tmp_path: Path, pg: str) -> None:
    """What serialises the batches today: each transaction of ours takes the write lock at BEGIN."""
    cfg = config(tmp_path, SLA)
    async with database(pg, busy_timeout=0.2):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        desk.clock.now += 50 * MIN
        other = SyncConnection(pg)
        try:
            other.execute("BEGIN")
            other.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
            with pytest.raises(TemporaryFailure, match="lock timeout"):
                await due.run_due(desk.processor)
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert await warned() == []
        assert await due.run_due(desk.processor) == 1 and await warned() == [1]
