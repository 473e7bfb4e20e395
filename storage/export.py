"""`ticketd export`: every table as JSON lines, read from one snapshot, a page at a time.

The format (version 1), one JSON object per line, ASCII only (``\\u`` escapes), UTF-8 safe:

- line 1, the header::

    {"format": "ticketd-export", "version": 1, "app_version": "0.1.0",
     "exported_at": "2026-12-01T09:00:00+00:00",
     "tables": {"ticket": {"key": "id", "columns": {"id": "int", "assignee": "text?", ...}}, ...}}

  ``tables`` lists every table in the order its rows follow, with its primary key and each
  column's kind: ``int``, ``text``, ``bool``, ``datetime``, ``bytes`` or ``json``; a ``?``
  means the column may be null.
- one line per row, parents before children (storage.export_schema.ORDER), each table's rows
  in the order of its key::

    {"table": "ticket", "row": {"id": 1, "number": 1, "subject": "Help", ...}}

  Columns are the database's (a foreign key is ``ticket_id``). ``datetime``: ISO 8601 with its
  offset (UTC); ``bytes``: base64 (the raw messages, attachment contents, outbound mail);
  ``json``: the value itself, its objects' keys sorted; null where the column is empty.
- the last line, without which an import refuses the file as cut off::

    {"end": {"rows": {"ticket": 3, ...}, "last_ids": {"ticket": 3, ...}}}

  ``rows`` counts each table's lines; ``last_ids`` is the highest id each table has handed out
  (deleted rows included), so that the importing database never hands one out twice.

No table is left out: every model's rows go, mailbox positions and counters included (on
PostgreSQL the ``ticket`` counter is where its sequence stands: storage.numbers). The
database's own bookkeeping (sqlite_sequence, PostgreSQL sequences) is not a table of ours;
``last_ids`` carries what it knows. The export reads inside one read transaction (SQLite: a
deferred BEGIN, so the daemon keeps writing in WAL mode; PostgreSQL: REPEATABLE READ), so the
file is one consistent moment even while mail comes in. Rows are read by key a page at a time,
pages with message bytes by size, so memory stays flat however large the database.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, AsyncIterator, BinaryIO, Iterator

from tortoise.transactions import in_transaction

from ticketd.storage import bulk, numbers
from ticketd.storage.export_schema import BLOB_PAGE_BYTES, FORMAT, VERSION, Table, encode, schema, tables

PAGE = 1000  # rows per query (and per write) for tables without bytes
# An article holds a message's text and html, which can run to megabytes: fewer at a time.
# (Sizing them as the bytes are would read each text twice: SQLite's length() of TEXT counts
# characters, so it reads the value; of a BLOB it reads only the record header.)
TEXT_PAGE = 100
TEXT_TABLES = ("article",)


def line(value: Any) -> bytes:
    """One line of the file: compact, ASCII, keys in the order given (so two exports compare)."""
    return (json.dumps(value, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


@asynccontextmanager
async def snapshot() -> AsyncIterator[None]:
    """One read transaction around the whole export: every table as of one moment."""
    if bulk.is_postgres(bulk.client()):
        from ticketd.storage.postgres_backend import read_snapshot  # imports asyncpg: PostgreSQL sites only

        with read_snapshot():
            async with in_transaction():
                yield
        return
    # Not in_transaction(): ours begins IMMEDIATE, taking the write lock from the daemon for
    # the whole export. A deferred BEGIN takes a snapshot at its first read and blocks nobody.
    await bulk.execute("BEGIN")
    try:
        yield
    finally:
        await bulk.execute("COMMIT")


async def export(out: BinaryIO, exported_at: datetime, app_version: str) -> dict[str, int]:
    """Write the whole database to ``out``; the rows written, by table."""
    all_tables = tables()
    counts: dict[str, int] = {}
    async with snapshot():
        out.write(line({"format": FORMAT, "version": VERSION, "app_version": app_version,
                        "exported_at": exported_at.isoformat(), "tables": schema(all_tables)}))
        for table in all_tables:
            counts[table.name] = 0
            async for page in _pages(table):
                out.write(b"".join(line({"table": table.name, "row": _row(table, r)}) for r in page))
                counts[table.name] += len(page)
        last = await last_ids(all_tables)
    out.write(line({"end": {"rows": counts, "last_ids": last}}))
    return counts


def _row(table: Table, values: Any) -> dict[str, Any]:
    return {column.name: encode(column, values[i]) for i, column in enumerate(table.columns)}


def _select(table: Table) -> str:
    return "SELECT " + ", ".join(f'"{c.name}"' for c in table.columns) + f' FROM "{table.name}"'


async def _pages(table: Table) -> AsyncIterator[list[Any]]:
    """The table's rows in key order, a page at a time (keyset paging: each page is an index seek).

    A table with bytes is paged by its keys and their sizes first: length() of a blob reads its
    record header, not its pages (PostgreSQL likewise reads the TOAST header), so that costs
    little, and the rows then come in groups of about BLOB_PAGE_BYTES.
    """
    if table.name == "counter" and bulk.is_postgres(bulk.client()):
        yield await numbers.counters_with_ticket(_select(table), [c.name for c in table.columns])
        return
    key = [c.name for c in table.columns].index(table.key)
    size = min(PAGE, TEXT_PAGE) if table.name in TEXT_TABLES else PAGE
    after: Any = None
    while True:
        where, values = (f' WHERE "{table.key}" > ?', [after]) if after is not None else ("", [])
        if table.blob is None:
            page = await bulk.fetch(f'{_select(table)}{where} ORDER BY "{table.key}" LIMIT {size}', values)
            if page:
                yield page
            keys = [r[key] for r in page]
        else:
            sizes = await bulk.fetch(f'SELECT "{table.key}", length("{table.blob}") FROM "{table.name}"{where} '
                                     f'ORDER BY "{table.key}" LIMIT {size}', values)
            for group in _groups(sizes):
                yield await _by_keys(table, group)
            keys = [r[0] for r in sizes]
        if len(keys) < size:
            return
        after = keys[-1]


def _groups(sizes: list[Any]) -> Iterator[list[Any]]:
    """Keys in runs of about BLOB_PAGE_BYTES of bytes (at least one key each)."""
    group: list[Any] = []
    total = 0
    for key, size in sizes:
        if group and total + int(size or 0) > BLOB_PAGE_BYTES:
            yield group
            group, total = [], 0
        group.append(key)
        total += int(size or 0)
    if group:
        yield group


async def _by_keys(table: Table, keys: list[Any]) -> list[Any]:
    return await bulk.fetch(f'{_select(table)} WHERE "{table.key}" IN ({bulk.marks(len(keys))}) '
                            f'ORDER BY "{table.key}"', keys)


async def last_ids(all_tables: list[Table]) -> dict[str, int]:
    """The highest id each table with a sequence has handed out: its rows' or its sequence's."""
    result = {}
    postgres = bulk.is_postgres(bulk.client())
    for table in (t for t in all_tables if t.generated):
        name, key = table.name, table.key
        if postgres:
            used = f"pg_sequence_last_value(pg_get_serial_sequence('{name}', '{key}')::regclass)"
        else:
            used = f"(SELECT seq FROM sqlite_sequence WHERE name = '{name}')"
        [row] = await bulk.fetch(f'SELECT coalesce((SELECT max("{key}") FROM "{name}"), 0), coalesce({used}, 0)')
        result[name] = max(int(row[0]), int(row[1]))
    return result
