"""Columns added to existing tables since a release: added at open, so old databases keep working.

``generate_schemas(safe=True)`` creates missing tables but never adds a column to a table that
exists, and the hot path's INSERTs name every column (storage.writes): without this, a database
made by an earlier release would refuse the first new message. Each column here is also a model
field with ``db_default``, so a new database and an upgraded one end with the same definition
(tests/storage/test_columns.py compares them). Only additions with defaults: a change that
rewrites data belongs to a real migration tool (the operations issue's).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tortoise.transactions import in_transaction

from ticketd.storage import bulk

log = logging.getLogger("ticketd.storage")

# (table, column, SQLite definition, PostgreSQL definition), in the order they are added. The
# types are what Tortoise's schema generator writes for the field on each backend
# (DatetimeField: TIMESTAMP / TIMESTAMPTZ; BooleanField: INT / BOOL). SQLite can add a NOT NULL
# column only with a DEFAULT; PostgreSQL (11+) fills the default into existing rows without a
# table rewrite.
ADDED: tuple[tuple[str, str, str, str], ...] = (
    ("ticket", "closed_at", "TIMESTAMP", "TIMESTAMPTZ"),
    ("ticket", "reopen_count", "INT NOT NULL DEFAULT 0", "INT NOT NULL DEFAULT 0"),
    ("ticket", "csat", "INT", "INT"),
    ("ticket", "linked_to", "BIGINT", "BIGINT"),
    ("ticket", "agent_replies", "INT NOT NULL DEFAULT 0", "INT NOT NULL DEFAULT 0"),
    ("participant", "following", "INT NOT NULL DEFAULT 1", "BOOL NOT NULL DEFAULT TRUE"),
    ("article", "author", "VARCHAR(10) NOT NULL DEFAULT 'customer'", "VARCHAR(10) NOT NULL DEFAULT 'customer'"),
    ("article", "new_text", "TEXT NOT NULL DEFAULT ''", "TEXT NOT NULL DEFAULT ''"),
    ("event", "who", "VARCHAR(320) NOT NULL DEFAULT ''", "VARCHAR(320) NOT NULL DEFAULT ''"),
)

# Schema version 3 (storage.schema): an outbox row's claim by the instance sending it.
CLAIMS: tuple[tuple[str, str, str, str], ...] = (
    ("outbound_message", "claimed_by", "VARCHAR(200)", "VARCHAR(200)"),
    ("outbound_message", "claimed_until", "TIMESTAMP", "TIMESTAMPTZ"),
)

# Run in the transaction that adds the column, never again: what the rows were before it existed.
BACKFILL = {
    ("article", "author"): "UPDATE article SET author = 'system' WHERE direction = 'out'",  # our own mail
}


async def _present(added: Sequence[tuple[str, str, str, str]]) -> set[tuple[str, str]]:
    """(table, column) of every column of the tables in ``added``, in one query."""
    tables = sorted({table for table, *_ in added})
    if bulk.is_postgres(bulk.client()):
        rows = await bulk.fetch("SELECT table_name, column_name FROM information_schema.columns "
                                f"WHERE table_schema = current_schema() AND table_name IN ({bulk.marks(len(tables))})",
                                tables)
    else:  # the table-valued form of PRAGMA table_info: all tables in one statement
        rows = await bulk.fetch(" UNION ALL ".join("SELECT ?, name FROM pragma_table_info(?)" for _ in tables),
                                [value for table in tables for value in (table, table)])
    return {(str(table), str(column)) for table, column in rows}


def _missing(added: Sequence[tuple[str, str, str, str]],
             present: set[tuple[str, str]]) -> list[tuple[str, str, str, str]]:
    return [one for one in added if (one[0], one[1]) not in present]


async def add_missing(added: Sequence[tuple[str, str, str, str]] = ADDED) -> list[str]:
    """Add the columns of ``added`` that the database lacks, all in one transaction; "table.column" of each.

    The first look is outside any transaction, so opening a current database takes no write
    lock (the CLI beside a running daemon). When something is missing we look again inside the
    transaction: on SQLite it began IMMEDIATE, so a second process opening at the same moment
    waits, then finds the columns there. PostgreSQL gets ``IF NOT EXISTS`` for the same race.
    """
    if not _missing(added, await _present(added)):
        return []
    done = []
    async with in_transaction():
        postgres = bulk.is_postgres(bulk.client())
        for table, column, sqlite_sql, postgres_sql in _missing(added, await _present(added)):
            if postgres:
                await bulk.execute(f'ALTER TABLE "{table}" ADD COLUMN IF NOT EXISTS "{column}" {postgres_sql}')
            else:
                await bulk.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {sqlite_sql}')
            if (table, column) in BACKFILL:
                await bulk.execute(BACKFILL[table, column])
            done.append(f"{table}.{column}")
    log.warning("database upgraded: column(s) added: %s", ", ".join(done))
    return done
