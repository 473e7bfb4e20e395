"""Another process's connection to the database, for tests of waiting and temporary failures."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from devtools.postgres import SyncConnection
from tests.support import backend


class OtherConnection:
    """A second connection to the database at ``db`` (see backend.url), as another process has one.

    ``lock()`` takes the write lock and keeps it until ``rollback()``. SQLite: BEGIN IMMEDIATE.
    PostgreSQL has no lock on a whole database; every table of ticketd's locked IN EXCLUSIVE
    MODE has the same effect: others still read, but no INSERT, UPDATE, DELETE or
    SELECT ... FOR UPDATE gets through. Any thread may call it.
    """

    def __init__(self, db: Path, wait: float = 5.0) -> None:
        """``wait``: how long ``lock()`` waits for a lock someone else holds (SQLite's timeout)."""
        self._postgres = SyncConnection(backend.url(db)) if backend.POSTGRES else None
        self._sqlite = None if backend.POSTGRES else sqlite3.connect(db, timeout=wait, isolation_level=None,
                                                                      check_same_thread=False)
        self._lock_sql = ""
        if self._postgres is not None:  # worked out now: lock() is one round trip, as quick as SQLite's BEGIN
            tables = ", ".join(f'"{name}"' for (name,) in self._postgres.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))
            self._lock_sql = f"BEGIN; LOCK TABLE {tables} IN EXCLUSIVE MODE"

    def lock(self) -> None:
        if self._postgres is not None:
            self._postgres.execute(self._lock_sql)
        else:
            assert self._sqlite is not None
            self._sqlite.execute("BEGIN IMMEDIATE")

    def rollback(self) -> None:
        if self._postgres is not None:
            self._postgres.execute("ROLLBACK")
        else:
            assert self._sqlite is not None
            self._sqlite.execute("ROLLBACK")

    def execute(self, sql: str) -> None:
        """One statement outside any transaction (schema changes of a test's own making)."""
        if self._postgres is not None:
            self._postgres.execute(sql)
        else:
            assert self._sqlite is not None
            self._sqlite.execute(sql)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self._postgres is not None:
            return self._postgres.fetch(sql)
        assert self._sqlite is not None
        return [tuple(row) for row in self._sqlite.execute(sql)]

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.close()
        elif self._sqlite is not None:
            self._sqlite.close()


def hold_write_lock(db: Path, seconds: float) -> threading.Thread:
    """Another process's long write transaction on the database at ``db``; join the thread to wait it out."""
    other = OtherConnection(db)
    other.lock()

    def hold() -> None:
        time.sleep(seconds)
        other.rollback()
        other.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread
