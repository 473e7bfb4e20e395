"""Databases written before raw bytes had their own tables: move the bytes, keep every row.

Until then the raw message sat in ``inbound_message.raw_bytes`` and an attachment's bytes in
``attachment.content``. The new code never writes those columns, and they are NOT NULL, so
an old database would refuse every new message. Once, at open, in one transaction: copy
the bytes into ``inbound_raw`` / ``attachment_content`` and drop the old columns. (A general
migration tool is the operations issue's; this keeps the mail of those who run ticketd now.)
"""

from __future__ import annotations

import logging
import re

from tortoise.transactions import in_transaction

from ticketd.storage import bulk

log = logging.getLogger("ticketd.storage")

# (table, old column, new table, its key column)
MOVES = (("inbound_message", "raw_bytes", "inbound_raw", "inbound_id"),
         ("attachment", "content", "attachment_content", "attachment_id"))


# Single-column indexes that a composite index beginning with the same column made redundant:
# they only cost a page write per row (measured: ~10 % of an intake commit).
REDUNDANT = (("inbound_message", ("sha256", "message_id", "status")), ("outbound_message", ("recipient", "status")))


async def _columns(table: str) -> set[str]:
    db = bulk.client()
    if bulk.is_postgres(db):  # to_regclass: the table of that name in the search path, not another schema's
        rows = await bulk.fetch("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(?) AND attnum > 0 "
                                "AND NOT attisdropped", [f'"{table}"'])
    else:
        rows = [(r[1],) for r in await bulk.fetch(f'PRAGMA table_info("{table}")')]
    return {r[0] for r in rows}


async def move_raw_columns() -> int:
    """Move bytes out of old columns; the number of rows moved (0 on a current database)."""
    moved = 0
    for table, column, target, key in MOVES:
        if column not in await _columns(table):
            continue
        async with in_transaction():
            moved += await bulk.execute(
                f'INSERT INTO "{target}" ("{key}", "content") SELECT id, "{column}" FROM "{table}" '
                f'WHERE id NOT IN (SELECT "{key}" FROM "{target}")')
            await bulk.execute(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        log.warning("database upgraded: %s.%s moved to table %s", table, column, target)
    return moved


async def drop_redundant_indexes() -> int:
    """Drop the indexes listed in REDUNDANT where an older schema made them; how many."""
    dropped = 0
    db = bulk.client()
    for table, columns in REDUNDANT:
        if bulk.is_postgres(db):
            found = await bulk.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                                     "AND tablename = ?", [table])
        else:
            found = await bulk.fetch("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                                     "AND sql IS NOT NULL", [table])
        for name, sql in found:
            single = re.search(r'\(\s*"?(\w+)"?\s*\)\s*$', sql)
            if single and single.group(1) in columns:
                await bulk.execute(f'DROP INDEX IF EXISTS "{name}"')
                dropped += 1
    if dropped:
        log.info("database upgraded: %d redundant index(es) dropped", dropped)
    return dropped
