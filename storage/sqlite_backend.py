"""Tortoise's SQLite client, with write transactions that wait for the lock at BEGIN."""

from __future__ import annotations

import sqlite3
from typing import Callable, TypeVar

from tortoise.backends.sqlite.client import SqliteClient, SqliteTransactionContext, SqliteTransactionWrapper
from tortoise.backends.base.client import TransactionalDBClient
from tortoise.connection import get_connections
from tortoise.exceptions import OperationalError


class _ImmediateTransaction(SqliteTransactionWrapper):
    """BEGIN IMMEDIATE instead of BEGIN.

    A deferred transaction that reads first and writes later cannot wait for another
    process's write lock: SQLite answers SQLITE_BUSY at once, without calling the busy
    handler, because waiting could deadlock two upgrading readers. With several `ticketd
    ingest` processes beside the daemon that turned into "database is locked" for every
    message. Taking the write lock at BEGIN makes the busy timeout apply: the writers queue.
    """

    async def begin(self) -> None:
        try:
            await self._connection.commit()
            await self._connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:  # still locked after busy_timeout: a temporary failure
            raise OperationalError(exc) from exc


class _Transaction(SqliteTransactionContext):
    """Undo the entry when BEGIN fails (still locked after the busy timeout).

    Tortoise's own context sets the connection variable and takes its lock before BEGIN
    and releases neither when BEGIN raises: every later query of this task would then run
    inside a dead transaction, and the next transaction would wait on the lock for ever.
    """

    async def __aenter__(self) -> TransactionalDBClient:
        await self._trxlock.acquire()
        try:
            await self.ensure_connection()
            self.token = get_connections().set(self.connection_name, self.connection)
        except BaseException:
            self._trxlock.release()
            raise
        try:
            await self.connection.begin()
        except BaseException:
            get_connections().reset(self.token)
            self._trxlock.release()
            raise
        return self.connection


T = TypeVar("T")


class ImmediateSqliteClient(SqliteClient):
    def _in_transaction(self) -> SqliteTransactionContext:
        return _Transaction(_ImmediateTransaction(self), self._lock)

    async def write_in_one_call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` as one IMMEDIATE transaction inside the database thread.

        A statement through aiosqlite is a hand-off to its thread and back, 0.3-0.5 ms on a
        busy machine: a transaction of two INSERTs took six of them (3 ms), five times its
        fsync. Here it takes one. The client's lock is the one every query and transaction
        of Tortoise's takes, so nothing of theirs runs in between.
        """
        async with self.acquire_connection() as connection:
            return await connection._execute(_one_transaction, connection._conn, work)


def _one_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # COMMIT itself can fail (disk full): never leave it open
            conn.execute("ROLLBACK")
        raise
    return result


client_class = ImmediateSqliteClient
