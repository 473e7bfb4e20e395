"""The schema's version: a new database gets the current one, an older one is upgraded only when asked.

Every database records the version of its schema in ``ticketd_schema`` (one row per upgrade:
version, when, by which release). A database with tickets but without that table was made by
0.1.0 or earlier: version 1. Opening an older schema fails with a message that says what to do
(`ticketd db backup FILE`, then `ticketd db upgrade`), so a new release never writes rows its
old tables cannot hold, and an upgrade happens when the admin chose it, after a backup. A newer
schema (an older ticketd started on a newer database) fails too.

Each step of ``STEPS`` is safe to repeat: a crash in the middle of an upgrade leaves a database
that the next `db upgrade` finishes. Steps are plain SQL and schema generation, written for
SQLite and PostgreSQL both (storage.bulk).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version

from tortoise import Tortoise
from tortoise.transactions import in_transaction

from ticketd.storage import bulk, columns, legacy, numbers

log = logging.getLogger("ticketd.storage")

VERSION = 3  # the schema this code reads and writes
TABLE = "ticketd_schema"
RELEASES = {1: "0.1.0", 2: "0.2.0", 3: "0.3.0"}  # the release that introduced each version, for messages


class SchemaError(Exception):
    """The database's schema is not this code's; the text says what to do."""


async def _missing_tables() -> None:
    """Tables of the models that the database lacks (none is ever changed: ``safe``)."""
    if bulk.is_postgres(bulk.client()):
        # Imported only there: it imports asyncpg. It looks in the catalog first, as
        # generate_schemas' CREATE INDEX IF NOT EXISTS would wait on a running writer's locks.
        from ticketd.storage import postgres_backend

        await postgres_backend.create_missing_schema(bulk.client())
    else:
        await Tortoise.generate_schemas(safe=True)


async def _to_2() -> None:
    """0.1.0 -> 0.2.0: the new tables, then what earlier releases did at every open, now once."""
    await _missing_tables()  # first: the raw bytes move into tables it creates
    await legacy.move_raw_columns()
    await legacy.drop_redundant_indexes()
    await columns.add_missing()


async def _to_3_tables() -> None:
    """0.2.0 -> 0.3.0: the new tables: webhook_delivery (webhooks), mailbox_lease and instance (several
    instances on one PostgreSQL), oauth_token (the grants of XOAUTH2 / OAUTHBEARER logins); nothing
    existing changes."""
    await _missing_tables()


async def _to_3_claims() -> None:
    """0.2.0 -> 0.3.0: several instances on one database: outbox rows get their claim columns
    (daemon.outbox_due), and PostgreSQL the ticket number sequence, started past every number given."""
    await columns.add_missing(columns.CLAIMS)
    await numbers.ensure_sequence()


async def _to_3() -> None:
    """0.2.0 -> 0.3.0: each part's step."""
    await _to_3_tables()
    await _to_3_claims()


STEPS: dict[int, Callable[[], Awaitable[None]]] = {2: _to_2, 3: _to_3}  # version reached -> the step that reaches it


async def stored_version() -> int | None:
    """The database's schema version; None for an empty database (none of our tables)."""
    tables = await _tables()
    if TABLE not in tables:
        return 1 if tables & _ours() else None
    rows = await bulk.fetch(f"SELECT max(version) FROM {TABLE}")
    return int(rows[0][0]) if rows and rows[0][0] is not None else 1


async def prepare(upgrade: bool = False) -> tuple[int | None, int]:
    """Make the database this code's: (version found, version now). SchemaError if it cannot be.

    An empty database gets every table and the current version. An older one is upgraded only
    with ``upgrade`` (`ticketd db upgrade`). At the current version, tables a model gained
    since are created (only creation: nothing existing is changed).
    """
    found = await stored_version()
    if found is None:
        # The version first: a process opening the database meanwhile sees it and no table of
        # ours without it (which would read as 0.1.0's schema); it creates what is missing too.
        await _stamp(VERSION)
        await _missing_tables()
        await numbers.ensure_sequence()
        return None, VERSION
    if found > VERSION:
        raise SchemaError(f"the database's schema is version {found} (ticketd {_release(found)} or later), newer than "
                          f"this ticketd {_current()} knows (version {VERSION}): run the ticketd that upgraded it")
    if found < VERSION and not upgrade:
        raise SchemaError(f"the database's schema is version {found} (ticketd {_release(found)}), older than this "
                          f"ticketd's version {VERSION}: back it up (`ticketd db backup FILE` for SQLite, pg_dump for "
                          "PostgreSQL), then run `ticketd db upgrade`")
    for target in range(found + 1, VERSION + 1):
        await STEPS[target]()
        await _stamp(target)
        log.warning("database schema upgraded to version %d (ticketd %s)", target, _release(target))
    if found == VERSION:
        await _missing_tables()
        await numbers.ensure_sequence()  # a look in the catalog; made only by a crash mid-creation
    return found, VERSION


async def _tables() -> set[str]:
    """The names of the database's tables (a few dozen at most)."""
    if bulk.is_postgres(bulk.client()):
        rows = await bulk.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")
    else:
        rows = await bulk.fetch("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {str(r[0]) for r in rows}


def _ours() -> set[str]:
    """The tables of the models: any of them makes a database one of ours, however old."""
    return {model._meta.db_table for model in Tortoise.apps["models"].values()}


async def _stamp(reached: int) -> None:
    """Record ``reached``; two processes creating one database at once both get here.

    The table and its row in one transaction: nobody sees the table without the version.
    """
    async with in_transaction():
        await bulk.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (version INTEGER PRIMARY KEY, applied_at "
                           "VARCHAR(40) NOT NULL, by_release VARCHAR(40) NOT NULL)")
        await bulk.execute(f"INSERT INTO {TABLE} (version, applied_at, by_release) VALUES (?, ?, ?) "
                           "ON CONFLICT (version) DO NOTHING", [reached, bulk.now().isoformat(), _current()])


def _release(schema: int) -> str:
    return RELEASES.get(schema, "?")


def installed_version(fallback: str) -> str:
    """This distribution's version as installed; ``fallback`` in a checkout that was never installed."""
    try:
        return version("ticketd")
    except PackageNotFoundError:
        return fallback


def _current() -> str:
    return installed_version(RELEASES[VERSION])
