"""Opening the database: durable settings, and waiting politely for a running daemon's writes."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from tortoise import connections

from ticketd.storage.db import database
from tests.support import backend


@backend.sqlite_only("WAL and synchronous=FULL are SQLite's pragmas")
async def test_sqlite_is_opened_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    async with database(f"sqlite://{tmp_path}/t.db"):
        client = connections.get("default")
        assert (await client.execute_query("PRAGMA journal_mode"))[1][0][0] == "wal"
        assert (await client.execute_query("PRAGMA synchronous"))[1][0][0] == 2  # FULL


@backend.sqlite_only("the WAL switch at open waits for SQLite's write lock "
                     "(tests/storage/test_postgres_backend.py: PostgreSQL's open takes no lock)")
async def test_the_cli_can_open_the_database_while_the_daemon_is_writing(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/t.db"
    async with database(url):
        pass  # the daemon created it earlier
    daemon = sqlite3.connect(tmp_path / "t.db", isolation_level=None, check_same_thread=False)
    daemon.execute("BEGIN IMMEDIATE")  # the daemon mid-transaction
    daemon.execute("INSERT INTO counter (name, value) VALUES ('x', 1)")
    release = threading.Timer(0.5, lambda: daemon.execute("COMMIT"))
    release.start()
    try:
        async with database(url):
            assert (await connections.get("default").execute_query("SELECT count(*) FROM ticket"))[1][0][0] == 0
    finally:
        release.join()
        daemon.close()
    await asyncio.sleep(0)
