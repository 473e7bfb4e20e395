"""Tortoise's asyncpg client, with write transactions that queue as SQLite's do, and its settings.

ticketd's transactions were written against SQLite's BEGIN IMMEDIATE: one writer at a time,
so that a check and the writes after it are one step (an inbound row still "received" is
claimed by one process only: daemon.commit; a duplicate is found by the group that comes
second: daemon.dedup). PostgreSQL's READ COMMITTED gives no such order. Each transaction
therefore takes one transaction-level advisory lock first: writers of the same database
queue, readers outside transactions never wait, and ``busy_timeout`` bounds the wait as it
does on SQLite (it is the session's ``lock_timeout``), after which the error is a temporary
failure (storage.errors) and the work is tried again.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterator
from typing import Any

from tortoise.backends.asyncpg.client import AsyncpgDBClient, TransactionWrapper
from tortoise.backends.base.client import BaseDBAsyncClient, TransactionalDBClient, TransactionContextPooled
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.backends.base_postgres.client import translate_exceptions
from tortoise.connection import get_connections
from tortoise.utils import generate_schema_for_client, get_schema_sql

# The advisory lock every transaction of ours takes first: any constant, the same in every
# process (advisory locks are per database, so another database's ticketd never waits on it).
WRITE_LOCK = int.from_bytes(b"ticketd", "big")
_CREATED = re.compile(r'(?:TABLE|INDEX) IF NOT EXISTS "([^"]+)"')


def connection_config(url: str, busy_timeout: float) -> dict[str, Any]:
    """Tortoise's connection entry for a postgres:// URL, with our engine and session settings."""
    config = expand_db_url(url.replace("postgresql://", "postgres://", 1))
    config["engine"] = "ticketd.storage.postgres_backend"
    settings = dict(config["credentials"].get("server_settings") or {})
    # lock_timeout 0 would mean "wait for ever": busy_timeout is > 0 (config), keep it so.
    settings["lock_timeout"] = f"{max(1, round(busy_timeout * 1000))}ms"
    config["credentials"]["server_settings"] = settings
    return config


# Set by read_snapshot(): the next transaction reads one moment and writes nothing.
_SNAPSHOT: contextvars.ContextVar[bool] = contextvars.ContextVar("ticketd_pg_snapshot", default=False)


@contextlib.contextmanager
def read_snapshot() -> Iterator[None]:
    """Transactions begun inside are REPEATABLE READ and READ ONLY, and take no write lock.

    For `ticketd export`: every table as of one moment, while the daemon goes on writing. The
    isolation level must be the transaction's first statement, before the advisory lock would be.
    """
    token = _SNAPSHOT.set(True)
    try:
        yield
    finally:
        _SNAPSHOT.reset(token)


class _QueuedTransaction(TransactionWrapper):
    async def begin(self) -> None:
        await super().begin()
        try:
            if _SNAPSHOT.get():
                await self._connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return
            await self._connection.execute("SELECT pg_advisory_xact_lock($1)", WRITE_LOCK)
        except BaseException:
            with contextlib.suppress(Exception):  # a dead connection cannot roll back: the first error says why
                await self.rollback()
            raise


class _Transaction(TransactionContextPooled):
    """Undo the entry when BEGIN fails (the lock not had within lock_timeout, the server gone).

    Tortoise's own context sets the connection variable and takes a pooled connection before
    BEGIN and gives back neither when BEGIN raises: later queries of the task would run on a
    dead transaction, and a few such failures would empty the pool for good.
    """

    async def __aenter__(self) -> TransactionalDBClient:
        await self.ensure_connection()
        pool = self.client._parent._pool
        self.client._connection = await pool.acquire()
        self.token = get_connections().set(self.connection_name, self.client)
        try:
            await self.client.begin()
        except BaseException:
            get_connections().reset(self.token)
            await pool.release(self.client._connection)
            raise
        return self.client


class QueuedAsyncpgClient(AsyncpgDBClient):
    def _in_transaction(self) -> TransactionContextPooled:
        return _Transaction(_QueuedTransaction(self), self._pool_init_lock)


@translate_exceptions
async def fetch_rows(db: BaseDBAsyncClient, sql: str, values: list[Any]) -> list[Any]:
    """The rows of any statement, a RETURNING included; errors translated as Tortoise's own are."""
    async with db.acquire_connection() as connection:
        return list(await connection.fetch(sql, *values))


async def own_connection(db: BaseDBAsyncClient) -> Any:
    """A connection of its own to ``db``'s database, with the pool's settings, outside the pool.

    For the lease keeper (daemon.leases): its renewals must neither wait for a pooled connection
    (each held by a transaction queued on the write lock) nor share one's fate. The parameters
    are those the pool was made with (Tortoise's ``_template``: host, user, TLS, server settings).
    """
    import asyncpg

    template = {k: v for k, v in db._template.items()  # type: ignore[attr-defined]
                if k not in ("min_size", "max_size", "connection_class", "loop")}
    return await asyncpg.connect(password=db.password, **template)  # type: ignore[attr-defined]


async def create_missing_schema(client: BaseDBAsyncClient) -> None:
    """Tortoise's ``generate_schemas(safe=True)``, but only when a table or index is missing.

    Its CREATE INDEX IF NOT EXISTS takes a SHARE lock on the table before it finds the index
    there, so every open (each CLI command beside a running daemon) would wait for the
    daemon's open transaction, or deadlock with it. One catalog query instead.
    """
    wanted = set(_CREATED.findall(get_schema_sql(client, safe=True)))
    _, rows = await client.execute_query(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relname = ANY($1::text[])", [sorted(wanted)])
    if wanted - {row[0] for row in rows}:
        await generate_schema_for_client(client, safe=True)


client_class = QueuedAsyncpgClient
