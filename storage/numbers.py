"""Ticket numbers: a sequence on PostgreSQL, the ``counter`` row on SQLite.

SQLite has one writer at a time (BEGIN IMMEDIATE), so reading the counter once per transaction
and writing it back once is safe and costs two statements per group. On PostgreSQL the counter
row, read FOR UPDATE, held every ticket-creating transaction of every instance behind the one
before it until its commit; ``nextval`` hands out a number at once, to any number of instances.
A transaction that rolls back has used its numbers: the next ticket skips them. A gap in the
numbers is harmless (nothing counts on them being dense) where a number given twice is not.

A database made before the sequence (schema version 2 or earlier), and an import, carry numbers
already given: the sequence is moved past them (``advance``), never back.
"""

from __future__ import annotations

from typing import Any

from tortoise.transactions import in_transaction

from ticketd.storage import bulk

SEQUENCE = "ticket_number"


class TicketNumbers:
    """The numbers for the new tickets of one transaction (call ``save`` before its commit)."""

    def __init__(self) -> None:
        self.value: int | None = None  # SQLite: the last number handed out
        self.start: int | None = None  # SQLite: the counter as read

    async def next(self) -> int:
        if bulk.is_postgres(bulk.client()):
            # One statement per new ticket, not per group: numbers taken ahead would be lost at
            # every commit and leave a gap after each group.
            [(number,)] = await bulk.fetch(f"SELECT nextval('{SEQUENCE}')")
            return int(number)
        if self.value is None:  # BEGIN IMMEDIATE holds every other writer off until our commit
            rows = await bulk.fetch("SELECT value FROM counter WHERE name = 'ticket'")
            if not rows:
                await bulk.execute("INSERT INTO counter (name, value) VALUES ('ticket', 0)")
            self.value = self.start = int(rows[0][0]) if rows else 0
        self.value += 1
        return self.value

    async def save(self) -> None:
        if self.value is not None and self.value != self.start:
            await bulk.execute("UPDATE counter SET value = value + ? WHERE name = 'ticket'",
                               [self.value - (self.start or 0)])


async def highest_given() -> int:
    """The highest ticket number the database holds or its counter row has handed out."""
    [(number, counted)] = await bulk.fetch(
        "SELECT (SELECT coalesce(max(number), 0) FROM ticket), "
        "(SELECT coalesce(max(value), 0) FROM counter WHERE name = 'ticket')")
    return max(int(number), int(counted))


async def ensure_sequence() -> None:
    """PostgreSQL: the sequence, made past every number given if it is missing (once, at creation
    or upgrade: the first look takes no lock, so opening a current database waits for nobody)."""
    if not bulk.is_postgres(bulk.client()):
        return
    [(found,)] = await bulk.fetch("SELECT to_regclass(?) IS NOT NULL", [SEQUENCE])
    if found:
        return
    # In a transaction of ours: its advisory lock (storage.postgres_backend) queues two processes
    # creating it at once, where CREATE SEQUENCE IF NOT EXISTS alone can fail for the second.
    async with in_transaction():
        await bulk.execute(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE} AS BIGINT MINVALUE 1")
        await advance()


async def advance() -> None:
    """Move the next number past every number given (an import, an upgrade); never backwards.

    PostgreSQL: ``setval`` of the sequence. SQLite: the counter row, which an export made on
    PostgreSQL carries as it stood when that database stopped using it.
    """
    highest = await highest_given()
    if bulk.is_postgres(bulk.client()):
        [(last, called)] = await bulk.fetch(f"SELECT last_value, is_called FROM {SEQUENCE}")
        if highest > (int(last) if called else int(last) - 1):
            await bulk.fetch(f"SELECT setval('{SEQUENCE}', ?)", [highest])
        return
    if not await bulk.fetch("SELECT 1 FROM counter WHERE name = 'ticket'"):
        await bulk.execute("INSERT INTO counter (name, value) VALUES ('ticket', 0)")
    await bulk.execute("UPDATE counter SET value = ? WHERE name = 'ticket' AND value < ?", [highest, highest])


async def counters_with_ticket(select: str, columns: list[str]) -> list[Any]:
    """PostgreSQL, for `ticketd export`: the counter rows, the ``ticket`` one as the sequence stands.

    An export moves between backends: SQLite takes the next number from that row, and an import
    into PostgreSQL moves the sequence past it (``advance``). Absent, as on SQLite, until a
    number was given. ``select`` reads the table's ``columns`` (name, value) in that order.
    """
    rows = [list(r) for r in await bulk.fetch(f"{select} WHERE name <> 'ticket'")]
    [(used,)] = await bulk.fetch(f"SELECT coalesce(pg_sequence_last_value('{SEQUENCE}'), 0)")
    given = max(int(used), await highest_given())
    if given:
        rows.append([{"name": "ticket", "value": given}[c] for c in columns])
    return sorted(rows, key=lambda r: r[columns.index("name")])
