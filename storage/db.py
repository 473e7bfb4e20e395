"""Open and close the database (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import AsyncIterator

from tortoise import Tortoise, connections
from tortoise.backends.base.executor import EXECUTOR_CACHE

from ticketd.storage import schema

MODELS = ["ticketd.storage.models"]
# Bytes of WAL kept after a checkpoint (one checkpoint's worth is ~4 MiB: 1000 pages).
WAL_SIZE_LIMIT = 64 << 20


class DatabaseError(Exception):
    """The database cannot be opened; the text says why."""


def tortoise_config(url: str, busy_timeout: float = 30.0) -> dict[str, object]:
    """Translate our URL into Tortoise's config, with durable SQLite settings."""
    if url.startswith("sqlite://"):
        path = url[len("sqlite://"):]
        connection: object = {
            # Our subclass of Tortoise's client: write transactions BEGIN IMMEDIATE, so a
            # writer waits (busy_timeout) for another process instead of failing at once.
            "engine": "ticketd.storage.sqlite_backend",
            # WAL with synchronous=FULL: a commit survives a power cut, not only a crash.
            # busy_timeout first: the pragmas run in order, and switching to WAL must wait for
            # a running daemon's transaction instead of failing with "database is locked".
            # journal_size_limit: Tortoise's default of 16 KiB truncates the WAL at every
            # checkpoint, so the file is regrown (metadata and all) commit after commit; that
            # cost 0.4 of 1.1 ms a commit (measured). The WAL keeps its few MB instead.
            "credentials": {"file_path": path, "busy_timeout": int(busy_timeout * 1000), "journal_mode": "WAL",
                            "synchronous": "FULL", "journal_size_limit": WAL_SIZE_LIMIT},
        }
    else:
        connection = _postgres().connection_config(url, busy_timeout)
    return {"connections": {"default": connection},
            "apps": {"models": {"models": MODELS, "default_connection": "default"}},
            "use_tz": True, "timezone": "UTC"}


def _prepare_sqlite_dir(url: str) -> None:
    if not url.startswith("sqlite://"):
        return
    path = url[len("sqlite://"):]
    if path in ("", ":memory:"):
        return
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatabaseError(f"cannot create database directory {parent}: {exc.strerror}") from None


async def open_database(url: str, busy_timeout: float = 30.0, upgrade: bool = False) -> tuple[int | None, int]:
    """Connect; a new database gets its tables, an older schema is refused unless ``upgrade``.

    Returns (the schema version found, None for a new database; the version now): storage.schema.
    """
    _prepare_sqlite_dir(url)
    try:
        return await _connect_and_create_tables(url, busy_timeout, upgrade)
    except schema.SchemaError as exc:
        await connections.close_all()
        raise DatabaseError(f"{_redacted(url)}: {exc}") from None
    except OSError as exc:
        raise DatabaseError(f"cannot open database {_redacted(url)}: {exc}") from None
    except Exception as exc:  # sqlite3 / asyncpg errors have no common base
        if type(exc).__module__.startswith(("sqlite3", "asyncpg", "tortoise")):
            raise DatabaseError(f"cannot open database {_redacted(url)}: {exc}") from None
        raise


async def _connect_and_create_tables(url: str, busy_timeout: float, upgrade: bool) -> tuple[int | None, int]:
    """Connect (pragmas first), then check the schema's version (and create or upgrade it).

    Another process mid-write (the daemon, while the CLI opens the database) can make the
    WAL switch or the schema check fail with "database is locked" at once instead of waiting;
    then we start over on a fresh connection, so no pragma is ever skipped.
    """
    deadline = time.monotonic() + busy_timeout
    _forget_other_dialect(url)
    while True:
        try:
            await Tortoise.init(config=tortoise_config(url, busy_timeout))
            return await schema.prepare(upgrade)
        except Exception as exc:  # sqlite3.OperationalError has no finer type for this
            await connections.close_all()
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


_dialect = ""  # "sqlite" or "postgres": what the ORM's statements were last built for


def _forget_other_dialect(url: str) -> None:
    """Drop the ORM's cached INSERT/UPDATE/DELETE statements when the dialect changes.

    Tortoise keeps them per (connection name, table), not per dialect: a process that opened
    SQLite and then PostgreSQL (a test run, a copy from one to the other) would send "?"
    placeholders to PostgreSQL. Nothing is dropped while the dialect stays the same.
    """
    global _dialect
    dialect = "sqlite" if url.startswith("sqlite://") else "postgres"
    if dialect != _dialect:
        EXECUTOR_CACHE.clear()
        _dialect = dialect


async def close_database() -> None:
    await connections.close_all()


@asynccontextmanager
async def database(url: str, busy_timeout: float = 30.0,
                   upgrade: bool = False) -> AsyncIterator[tuple[int | None, int]]:
    """Open for the block's duration; a writer waits up to ``busy_timeout`` s for another's lock.

    The block gets open_database's (version found, version now).
    """
    versions = await open_database(url, busy_timeout, upgrade)
    try:
        yield versions
    finally:
        await close_database()


def _postgres() -> ModuleType:
    # Imported only for a postgres:// URL: it imports asyncpg, which a SQLite site need not
    # have, and which would cost every SQLite start-up its import time.
    from ticketd.storage import postgres_backend

    return postgres_backend


def _redacted(url: str) -> str:
    # Imported here, not at the top: storage otherwise needs nothing from daemon.
    from ticketd.daemon.terminal import redact_url

    return redact_url(url)
