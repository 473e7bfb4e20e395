"""Fast multi-row writes: one executemany instead of Tortoise's CASE-built bulk_update."""

from __future__ import annotations

from typing import Sequence

from tortoise import connections
from tortoise.models import Model


def _placeholder(dialect: str, index: int) -> str:
    return f"${index}" if dialect == "postgres" else "?"


async def update_rows(rows: Sequence[Model], fields: Sequence[str]) -> None:
    """Write ``fields`` of every row by primary key, in the current transaction if any.

    Tortoise's bulk_update builds a CASE expression in Python at ~0.25 ms a row; on the hot
    path (every inbound message) that cost more than the database work itself.
    """
    if not rows:
        return
    model = type(rows[0])
    meta = model._meta
    client = connections.get(meta.default_connection or "default")
    dialect = client.capabilities.dialect
    columns = [meta.fields_db_projection[name] for name in fields]
    assignments = ", ".join(f'"{col}" = {_placeholder(dialect, i + 1)}' for i, col in enumerate(columns))
    pk = meta.fields_db_projection[meta.pk_attr]
    sql = f'UPDATE "{meta.db_table}" SET {assignments} WHERE "{pk}" = {_placeholder(dialect, len(columns) + 1)}'
    values = [[meta.fields_map[name].to_db_value(getattr(row, name), row) for name in fields] + [row.pk]
              for row in rows]
    await client.execute_many(sql, values)
