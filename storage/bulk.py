"""Plain SQL for the hot path: few statements per group of messages, no ORM objects built.

Tortoise stays for the schema and the queries that are not hot. Here a group of 25 messages
costs a handful of statements (one executemany per table) instead of several per message,
and no model instance or pypika query is built per row: that object building was ~60 % of
the commit's Python time. Values go through each field's ``to_db_value``, so what we write
reads back through the ORM exactly as if the ORM had written it. SQL is written with ``?``
placeholders and numbered for PostgreSQL (``$1``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Iterable, Sequence

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.fields import JSONField
from tortoise.models import Model

from ticketd.storage import clock


def client() -> BaseDBAsyncClient:
    """The connection of the current transaction, if any, else the default one."""
    return connections.get("default")


def is_postgres(db: BaseDBAsyncClient) -> bool:
    return db.capabilities.dialect == "postgres"


def numbered(sql: str, db: BaseDBAsyncClient) -> str:
    """``?`` placeholders as the dialect wants them (our SQL never holds a literal "?")."""
    if not is_postgres(db):
        return sql
    parts = sql.split("?")
    return "".join(part + (f"${i + 1}" if i < len(parts) - 1 else "") for i, part in enumerate(parts))


def unindexed(column: str) -> str:
    """``column`` as a WHERE term that must not choose the index: ``+column`` on SQLite.

    Without statistics SQLite's planner prefers an equality on an indexed column to a short IN
    list on another: ``done_at IS NULL AND ticket_id IN (...)`` walked every undone due step
    (20,000 in the SLA benchmark) instead of a few rows by ticket. A unary plus is SQLite's
    documented way to take a term out of index selection; PostgreSQL plans by statistics.
    """
    return column if is_postgres(client()) else f"+{column}"


def marks(count: int) -> str:
    """``?, ?, ?`` for an IN list of ``count`` values."""
    return ", ".join("?" * count)


async def fetch(sql: str, values: Sequence[Any] = ()) -> list[Any]:
    """Rows as tuples (sqlite3.Row / asyncpg.Record both index by position)."""
    db = client()
    if is_postgres(db):
        # Not Tortoise's execute_query: it sends an UPDATE, INSERT or DELETE without reading
        # rows, so a RETURNING would come back empty. (Imported here: asyncpg's module, which
        # a SQLite start-up need not load.)
        from ticketd.storage.postgres_backend import fetch_rows

        return await fetch_rows(db, numbered(sql, db), without_nul(values))
    _, rows = await db.execute_query(sql, list(values))
    return list(rows)


async def execute(sql: str, values: Sequence[Any] = ()) -> int:
    db = client()
    if is_postgres(db):
        values = without_nul(values)
    changed, _ = await db.execute_query(numbered(sql, db), list(values))
    return changed


async def execute_many(sql: str, rows: Sequence[Sequence[Any]], json: Sequence[bool] = ()) -> None:
    """``json``: which values of a row are JSON text (see without_nul)."""
    if rows:
        db = client()
        postgres = is_postgres(db)
        await db.execute_many(numbered(sql, db), [without_nul(r, json) if postgres else list(r) for r in rows])


# A NUL escaped in JSON text: "\u0000" after an even number of backslashes (an odd number
# would make it the text "\u0000" itself).
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def without_nul(values: Sequence[Any], json: Sequence[bool] = ()) -> list[Any]:
    """``values`` as PostgreSQL takes them: its text and jsonb hold no NUL character.

    SQLite stores one as it comes (hostile or broken mail has them: a body, a header); on
    PostgreSQL the INSERT would fail and the message be held as unprocessable. U+FFFD, the
    replacement character, stands in for it. ``json``: which values are JSON text, where a
    NUL is the escape ``\\u0000`` (only there: in plain text those six characters are text).
    """
    out = list(values)
    for i, value in enumerate(out):
        if isinstance(value, str):
            if "\x00" in value:
                value = out[i] = value.replace("\x00", "\ufffd")
            if i < len(json) and json[i] and "\\u0000" in value:
                out[i] = _JSON_NUL.sub(r"\1\\ufffd", value)
    return out


def now() -> datetime:
    return clock.now()


class Table:
    """Multi-row INSERT for one model: column names and converters worked out once.

    Worked out at first use: a foreign key's ``*_id`` field exists only after Tortoise.init.
    """

    def __init__(self, model: type[Model], fields: Sequence[str], conflict: str = "") -> None:
        self.model = model
        self.fields = list(fields)
        self.conflict = conflict
        self._fields: list[Any] = []
        self._json: list[bool] = []  # which columns hold JSON text (see without_nul)
        self._sql = ""

    @property
    def sql(self) -> str:
        if not self._sql:
            meta = self.model._meta
            self._fields = [meta.fields_map[name] for name in self.fields]
            self._json = [isinstance(field, JSONField) for field in self._fields]
            columns = ", ".join(f'"{meta.fields_db_projection[name]}"' for name in self.fields)
            ignore = f" ON CONFLICT ({self.conflict}) DO NOTHING" if self.conflict else ""
            self._sql = f'INSERT INTO "{meta.db_table}" ({columns}) VALUES ({marks(len(self.fields))}){ignore}'
        return self._sql

    def values(self, obj: Model) -> list[Any]:
        """One model instance's values, as the database takes them, in ``fields`` order."""
        _ = self.sql  # works out the converters on first use
        return [field.to_db_value(getattr(obj, field.model_field_name), None) for field in self._fields]

    async def insert(self, rows: Iterable[dict[str, Any]]) -> None:
        sql = self.sql
        await execute_many(sql, [[field.to_db_value(row[field.model_field_name], None) for field in self._fields]
                                 for row in rows], self._json)

    async def insert_objects(self, objects: Iterable[Model]) -> None:
        """Model instances built in memory (not saved), their fields read by attribute."""
        await execute_many(self.sql, [self.values(obj) for obj in objects], self._json)


class Ids:
    """Ids for rows of one transaction, picked by us so that rows can refer to each other
    (tickets, their articles, their attachments) and go in by one INSERT each, no read-back.

    SQLite: the next free id of each table, read once per table; safe because the write
    transaction began IMMEDIATE (no other writer until we commit), and sqlite_sequence keeps
    an AUTOINCREMENT table from reusing a deleted last row's id. PostgreSQL: the table's
    sequence, in chunks (a gap is normal there).
    """

    CHUNK = 32

    def __init__(self) -> None:
        self._next: dict[str, list[int]] = {}

    async def take(self, table: str) -> int:
        free = self._next.get(table)
        if not free:
            free = self._next[table] = await self._more(table)
        value = free[0]
        if len(free) == 1 and not is_postgres(client()):
            free[0] += 1  # SQLite: we own the whole range past it until commit
        else:
            free.pop(0)
        return value

    async def _more(self, table: str) -> list[int]:
        if is_postgres(client()):
            rows = await fetch(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                               f"FROM generate_series(1, {self.CHUNK})")
            return [int(r[0]) for r in rows]
        [row] = await fetch(f"""SELECT max(coalesce((SELECT max(id) FROM "{table}"), 0),
                                   coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0))""")
        return [int(row[0]) + 1]


async def update_rows(rows: Sequence[Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of every row by primary key, in the current transaction if any.

    Tortoise's bulk_update builds a CASE expression in Python at ~0.25 ms a row; on the hot
    path (every inbound message) that cost more than the database work itself.
    """
    if not rows:
        return
    model = type(rows[0])
    meta = model._meta
    columns = [meta.fields_db_projection[name] for name in fields]
    assignments = ", ".join(f'"{col}" = ?' for col in columns)
    pk = meta.fields_db_projection[meta.pk_attr]
    sql = f'UPDATE "{meta.db_table}" SET {assignments} WHERE "{pk}" = ?'
    values = [[meta.fields_map[name].to_db_value(getattr(row, name), row) for name in fields] + [row.pk]
              for row in rows]
    await execute_many(sql, values, [isinstance(meta.fields_map[name], JSONField) for name in fields])
