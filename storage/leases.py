"""The lease rows in SQL: take or renew, release, and read them, always by the database's clock.

Several instances on one PostgreSQL each read their own clock; only the database's is the same
for all, so every time written or compared here is the database's own (``statement_timestamp()``
on PostgreSQL, ``strftime('...', 'now')`` on SQLite, stored in the one text form that sorts as
time does). Nothing here uses storage.clock: ``--now`` moves what a run records, not how long a
lease lasts.

Every function takes ``run`` (SQL with ``?`` marks, values -> rows), so the same statements go
through Tortoise's connection (SQLite, `ticketd status`) or the lease keeper's own connection
(PostgreSQL: daemon.leases says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable, Sequence

from ticketd.storage import bulk
from ticketd.storage.models import Instance, MailboxLease

Run = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]
PRUNE_AFTER = 86400.0  # seconds without a word before a dead instance's row is removed


@dataclass(frozen=True)
class Clock:
    """The database's time in SQL, as the lease columns store it."""

    postgres: bool

    @property
    def now(self) -> str:
        # SQLite's 'now' stays the same within one statement, as statement_timestamp() does.
        return "statement_timestamp()" if self.postgres else "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')"

    def later(self) -> str:
        """Now plus the seconds of the value ``shift()`` makes (one ``?``)."""
        if self.postgres:
            return "(statement_timestamp() + make_interval(secs => ?))"
        return "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', ?)"

    def shift(self, seconds: float) -> Any:
        return float(seconds) if self.postgres else f"{seconds:+.3f} seconds"

    def seconds_until(self, column: str) -> str:
        if self.postgres:
            return f"extract(epoch from {column} - statement_timestamp())"
        return f"(julianday({column}) - julianday('now')) * 86400.0"


@dataclass(frozen=True)
class Holding:
    """One mailbox's lease row: who holds it, and for how many more seconds (negative: lapsed)."""

    mailbox: str
    holder: str
    expires_at: datetime
    seconds_left: float
    renewed_at: datetime | None = None  # a live holder moves it on every renewal


@dataclass(frozen=True)
class InstanceRow:
    id: str
    name: str
    host: str
    pid: int
    started_at: datetime
    last_seen: datetime
    seconds_since_seen: float


async def claim(run: Run, clock: Clock, holder: str, mailboxes: Sequence[str], seconds: float,
                force: bool = False) -> set[str]:
    """Take or renew each mailbox's lease for ``seconds``; the mailboxes this holder has now.

    One statement for all: a row is written only where it is ours already or has lapsed (with
    ``force``, wherever: SQLite's instance lock proves that no other holder lives), so of two
    instances racing for a lapsed lease one updates the row and the other finds it taken.
    """
    if not mailboxes:
        return set()
    table = MailboxLease._meta.db_table
    rows = ", ".join(f"(?, ?, {clock.now}, {clock.now}, {clock.later()})" for _ in mailboxes)
    values: list[Any] = []
    for name in mailboxes:
        values += [name, holder, clock.shift(seconds)]
    may = "" if force else (f' WHERE "{table}"."holder" = excluded."holder" '
                            f'OR "{table}"."expires_at" <= excluded."renewed_at"')
    found = await run(
        f'INSERT INTO "{table}" ("mailbox", "holder", "acquired_at", "renewed_at", "expires_at") VALUES {rows} '
        f'ON CONFLICT ("mailbox") DO UPDATE SET "acquired_at" = CASE WHEN "{table}"."holder" = excluded."holder" '
        f'THEN "{table}"."acquired_at" ELSE excluded."acquired_at" END, "holder" = excluded."holder", '
        f'"renewed_at" = excluded."renewed_at", "expires_at" = excluded."expires_at"{may} RETURNING "mailbox"', values)
    return {str(row[0]) for row in found}


async def release(run: Run, clock: Clock, holder: str) -> None:
    """A clean stop: this holder's leases lapse now, so another instance takes them at once."""
    await run(f'UPDATE "{MailboxLease._meta.db_table}" SET "expires_at" = {clock.now} '
              f'WHERE "holder" = ? AND "expires_at" > {clock.now} RETURNING "mailbox"', [holder])


async def holdings(run: Run, clock: Clock, mailboxes: Sequence[str] | None = None) -> dict[str, Holding]:
    """The lease rows (of ``mailboxes``, or all), with the seconds each has left by the database's clock."""
    if mailboxes is not None and not mailboxes:
        return {}
    where = f' WHERE "mailbox" IN ({bulk.marks(len(mailboxes))})' if mailboxes else ""
    left = clock.seconds_until('"expires_at"')
    rows = await run(f'SELECT "mailbox", "holder", "expires_at", {left}, "renewed_at" '
                     f'FROM "{MailboxLease._meta.db_table}"{where}', list(mailboxes or ()))
    expires, renewed = (MailboxLease._meta.fields_map[f] for f in ("expires_at", "renewed_at"))
    return {str(r[0]): Holding(str(r[0]), str(r[1]), expires.to_python_value(r[2]), float(r[3]),
                               renewed.to_python_value(r[4])) for r in rows}


async def seen(run: Run, clock: Clock, instance_id: str, name: str, host: str, pid: int) -> None:
    """Record (or refresh) a running instance: `ticketd status` lists those seen within a lease."""
    await run(f'INSERT INTO "{Instance._meta.db_table}" ("id", "name", "host", "pid", "started_at", "last_seen") '
              f'VALUES (?, ?, ?, ?, {clock.now}, {clock.now}) ON CONFLICT ("id") DO UPDATE '
              f'SET "last_seen" = excluded."last_seen" RETURNING "id"',
              [instance_id, name, host, pid])


async def gone(run: Run, clock: Clock, instance_id: str) -> None:
    """A clean stop removes the instance; so does a day without a word (a SIGKILLed one's row)."""
    await run(f'DELETE FROM "{Instance._meta.db_table}" WHERE "id" = ? OR "last_seen" < {clock.later()} '
              'RETURNING "id"', [instance_id, clock.shift(-PRUNE_AFTER)])


async def instances(run: Run, clock: Clock) -> list[InstanceRow]:
    fields = Instance._meta.fields_map
    left = clock.seconds_until('"last_seen"')
    rows = await run(f'SELECT "id", "name", "host", "pid", "started_at", "last_seen", {left} '
                     f'FROM "{Instance._meta.db_table}" '
                     'ORDER BY "started_at", "id"', [])
    return [InstanceRow(str(r[0]), str(r[1]), str(r[2]), int(r[3]), fields["started_at"].to_python_value(r[4]),
                        fields["last_seen"].to_python_value(r[5]), -float(r[6])) for r in rows]


def tortoise_run() -> tuple[Run, Clock]:
    """Statements through Tortoise's default connection (outside any transaction of the caller's)."""
    return bulk.fetch, Clock(bulk.is_postgres(bulk.client()))
