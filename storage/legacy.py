"""Databases written before raw bytes had their own tables: move the bytes, keep every row.

Until then the raw message sat in ``inbound_message.raw_bytes`` and an attachment's bytes in
``attachment.content``. The new code never writes those columns, and they are NOT NULL, so
an old database would refuse every new message. Once, at open, in one transaction: copy
the bytes into ``inbound_raw`` / ``attachment_content`` and drop the old columns. (A general
migration tool is the operations issue's; this keeps the mail of those who run ticketd now.)
"""

from __future__ import annotations

import logging

from tortoise.transactions import in_transaction

from storage import bulk

log = logging.getLogger("ticketd.storage")

# (table, old column, new table, its key column)
MOVES = (("inbound_message", "raw_bytes", "inbound_raw", "inbound_id"),
         ("attachment", "content", "attachment_content", "attachment_id"))


async def _columns(table: str) -> set[str]:
    db = bulk.client()
    if bulk.is_postgres(db):
        rows = await bulk.fetch("SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table])
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
