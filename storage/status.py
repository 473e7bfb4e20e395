"""The daemon's state as the database holds it: mailbox health, backlog, outbox depth, due steps.

Read by `ticketd status` (any shell, while the daemon runs) and every few seconds by the
daemon for its metrics; every query is served by an index and reads only what is waiting
(pending rows, received rows, undone steps), never the history. Plain SQL with ``?``
placeholders (storage.bulk numbers them for PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ticketd.storage import bulk
from ticketd.storage.models import DueStep, InboundStatus, MailboxHealth, OutboundMessage, OutboundStatus

_HEALTH = ("name", "connected", "since", "last_check_at", "last_fetch_at", "last_error", "last_error_at",
           "server_messages", "server_unfetched", "updated_at")


@dataclass(frozen=True)
class MailboxRow:
    """One row of mailbox_health (daemon.health.MailboxHealth says what each field means)."""

    name: str
    connected: bool
    since: datetime | None
    last_check_at: datetime | None
    last_fetch_at: datetime | None
    last_error: str
    last_error_at: datetime | None
    server_messages: int | None
    server_unfetched: int | None
    updated_at: datetime | None = None  # set by write_mailboxes


@dataclass(frozen=True)
class Outbox:
    pending: int
    oldest_pending: datetime | None  # created_at of the oldest pending row
    next_try: datetime | None  # when the sender tries the pending row due first


@dataclass(frozen=True)
class Timers:
    due: int  # steps whose due time has come, not run yet
    next_due: datetime | None  # the earliest undone step's due time (may be past: then due > 0)
    next_kind: str | None


async def write_mailboxes(rows: list[MailboxRow], now: datetime, holder: str | None = None) -> None:
    """Insert or replace the rows, in one statement (one commit).

    With ``holder`` (an instance id), a row whose mailbox another instance's lease holds is left
    as that instance wrote it: the one that just lost the mailbox must not report it down.
    """
    if not rows:
        return
    fields = MailboxHealth._meta.fields_map
    columns = ", ".join(f'"{c}"' for c in _HEALTH)
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in _HEALTH[1:])
    values = [fields[name].to_db_value(value, None)
              for row in rows for name, value in zip(_HEALTH, (*_values(row), now))]
    groups = ", ".join(f"({bulk.marks(len(_HEALTH))})" for _ in rows)
    guard = ""
    if holder is not None:
        guard = (' WHERE NOT EXISTS (SELECT 1 FROM "mailbox_lease" l WHERE l."mailbox" = excluded."name" '
                 'AND l."holder" <> ?)')
        values.append(holder)
    await bulk.execute(f'INSERT INTO "mailbox_health" ({columns}) VALUES {groups} '
                       f'ON CONFLICT ("name") DO UPDATE SET {updates}{guard}', values)


def _values(row: MailboxRow) -> tuple[Any, ...]:
    return (row.name, row.connected, row.since, row.last_check_at, row.last_fetch_at, row.last_error,
            row.last_error_at, row.server_messages, row.server_unfetched)


async def mailboxes() -> dict[str, MailboxRow]:
    fields = MailboxHealth._meta.fields_map
    found = await bulk.fetch(f'SELECT {", ".join(_HEALTH)} FROM "mailbox_health"')
    rows = [MailboxRow(*(fields[name].to_python_value(value) for name, value in zip(_HEALTH, r))) for r in found]
    return {row.name: row for row in rows}


async def backlog() -> dict[str, int]:
    """Mailbox name -> rows stored but not processed yet ("" for rows of no mailbox)."""
    rows = await bulk.fetch('SELECT m.name, count(*) FROM "inbound_message" i LEFT JOIN "mailbox" m '
                            'ON m.id = i.mailbox_id WHERE i.status = ? GROUP BY m.name', [InboundStatus.RECEIVED])
    return {str(name or ""): int(count) for name, count in rows}


async def outbox() -> Outbox:
    """Pending rows, found through the (status, next_try_at) index."""
    created, next_try = (OutboundMessage._meta.fields_map[f] for f in ("created_at", "next_try_at"))
    # +created_at (SQLite): its own index would otherwise be walked from the oldest row ever sent.
    [(count, oldest, soonest)] = await bulk.fetch(
        f'SELECT count(*), min({bulk.unindexed("created_at")}), min(next_try_at) FROM "outbound_message" '
        'WHERE status = ?', [OutboundStatus.PENDING])
    return Outbox(int(count), created.to_python_value(oldest) if oldest is not None else None,
                  next_try.to_python_value(soonest) if soonest is not None else None)


async def timers(now: datetime) -> Timers:
    """Undone due steps, through the (done_at, due_at) index: the due ones and the first to come."""
    due_at = DueStep._meta.fields_map["due_at"]
    [(count,)] = await bulk.fetch('SELECT count(*) FROM "due_step" WHERE done_at IS NULL AND due_at <= ?',
                                  [due_at.to_db_value(now, None)])
    first = await bulk.fetch('SELECT due_at, kind FROM "due_step" WHERE done_at IS NULL ORDER BY due_at LIMIT 1')
    if not first:
        return Timers(int(count), None, None)
    return Timers(int(count), due_at.to_python_value(first[0][0]), str(first[0][1]))
