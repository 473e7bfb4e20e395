"""The outbox rows due for sending, claimed for this instance and read with plain SQL: what a send needs.

Several instances may share one database (PostgreSQL). A sender claims its batch before sending
it: ``claimed_by`` names the instance (daemon.instance), ``claimed_until`` says until when no
other may take the rows. Marking a row sent, deferred or failed clears its claim; a claim whose
instance died lapses, and the row is anybody's again. The claim is one UPDATE ... RETURNING,
which also reads the rows: the same one statement the sender needed before claims.

Building an OutboundMessage per row (JSON and two timestamps parsed by the ORM, a model
instance) cost the sender more of the event loop's time than the SMTP client's own work.
The row's creation time is only needed when the row is deferred, so it is parsed then.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from ticketd.storage import bulk
from ticketd.storage.models import OutboundMessage, OutboundStatus

COLUMNS = ("id", "kind", "message_id", "mail_from", "recipients", "attempts", "created_at", "raw_bytes",
           # The ticket's number, for the row's log lines: a primary-key lookup, not a join to scan.
           "(SELECT number FROM ticket WHERE ticket.id = outbound_message.ticket_id)")

# A claim lasts HOLD_TIMEOUTS times the [smtp] timeout (the bound on each SMTP command): 3 min with
# the default 60 s. Rows of an instance that died (SIGKILL, a power cut) wait that long before
# another instance, or the same one restarted, sends them; a stop gives its claims back at once.
HOLD_TIMEOUTS = 3.0
# A lane starts a row of the batch only while this many timeouts of the claim are left (connecting,
# EHLO, STARTTLS, AUTH and the MAIL/RCPT/DATA flight each take up to one); the rest are given back
# and claimed again by the next pass.
START_TIMEOUTS = 2.0
# The content goes only while this much of the claim is left: the server's answer to it (Claim).
CONTENT_TIMEOUTS = 1.25


def hold_seconds(timeout: float) -> float:
    """How long a claim lasts, for an SMTP timeout of ``timeout`` seconds."""
    return HOLD_TIMEOUTS * timeout


@dataclass(frozen=True)
class Due:
    """One pending outbox row, as the sender reads it."""

    id: int
    kind: str
    message_id: str
    mail_from: str
    recipients: list[str]
    attempts: int
    stored_created_at: Any  # as the database gave it: see created_at
    raw_bytes: bytes
    ticket: int | None = None  # the ticket's number (not its id); None for mail about no ticket

    @property
    def created_at(self) -> datetime:
        return _field("created_at").to_python_value(self.stored_created_at)


@dataclass
class Claim:
    """The rows one pass claimed, and until when (this process's monotonic clock) they are ours."""

    by: str
    timeout: float  # the SMTP timeout the hold was made from
    ends: float  # time.monotonic(): taken before the claim was asked for, so never later than the database's
    rows: list[Due] = field(default_factory=list)

    def may_start(self) -> bool:
        """Time enough left to begin a row (START_TIMEOUTS), or give it back for the next pass."""
        return time.monotonic() < self.ends - START_TIMEOUTS * self.timeout

    def may_send_content(self) -> bool:
        """The server's answer to the content (one timeout at most, and a quarter more to spare)
        still comes inside the claim.

        Only the content makes a message delivered; up to here nothing was. A row past this point
        is given back unsent, so no other instance can be sending it while we do.
        """
        return time.monotonic() < self.ends - CONTENT_TIMEOUTS * self.timeout


def wall_now() -> datetime:
    """Real time, whatever ``--now`` says (storage.clock): a claim is about processes, not tickets."""
    return datetime.now(timezone.utc)


def claimed() -> bool:
    """Whether rows are claimed: on PostgreSQL, which several instances may share. A SQLite file
    has one instance (daemon.instance's lock), so there a claim would only cost a write a pass,
    and keep the rows a killed run had in hand from its restart for the claim's time."""
    return bulk.is_postgres(bulk.client())


def due_sql(now: datetime | None, skip: list[int], limit: int, by: str, hold: float) -> tuple[str, list[Any]]:
    """Claim pending rows due at ``now`` (all pending rows if None), oldest first, ``skip`` left out.

    The rows are those no live claim holds. One statement, outside any transaction of ours: it
    takes no advisory write lock (storage.postgres_backend), so it never waits behind another
    instance's ticket writes, and FOR UPDATE SKIP LOCKED passes over rows another instance's
    claim (or "sent") is writing this instant instead of waiting for them. The database's clock
    is the one all instances share, whatever their hosts' clocks say. On SQLite (see claimed)
    the same rows are only read. Served by the index on status and next_try_at: it reads the
    pending rows, never the history of sent ones (tests/test_outbox_pace.py reads the plan).
    """
    where = " WHERE status = ?"
    values: list[Any] = [OutboundStatus.PENDING]
    if now is not None:
        where += " AND next_try_at <= ?"
        values.append(_field("next_try_at").to_db_value(now, None))
    if skip:  # accepted by the server, "sent" not committed yet: never send them twice
        where += f" AND id NOT IN ({bulk.marks(len(skip))})"
        values += skip
    if not claimed():
        return f"SELECT {', '.join(COLUMNS)} FROM outbound_message{where} ORDER BY id LIMIT ?", [*values, limit]
    sql = ("UPDATE outbound_message SET claimed_by = ?, claimed_until = now() + make_interval(secs => CAST(? AS "
           f"DOUBLE PRECISION)) WHERE id IN (SELECT id FROM outbound_message{where}"
           " AND (claimed_until IS NULL OR claimed_until < now()) ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)"
           f" RETURNING {', '.join(COLUMNS)}")
    return sql, [by, hold, *values, limit]


async def due_rows(now: datetime | None, skip: list[int], limit: int, by: str, timeout: float) -> Claim:
    """Claim (see due_sql) and read the rows due, oldest first, for ``hold_seconds(timeout)``."""
    hold = hold_seconds(timeout)
    claim = Claim(by, timeout, time.monotonic() + hold if claimed() else math.inf)
    sql, values = due_sql(now, skip, limit, by, hold)
    recipients = _field("recipients")
    claim.rows = sorted((Due(int(r[0]), r[1], r[2], r[3], recipients.to_python_value(r[4]), int(r[5]), r[6],
                             bytes(r[7]), None if r[8] is None else int(r[8])) for r in await bulk.fetch(sql, values)),
                        key=lambda due: due.id)  # RETURNING keeps no order
    return claim


async def release(by: str, ids: list[int] | None = None) -> None:
    """Give back rows ``by`` claimed and did not send (all its pending rows if ``ids`` is None)."""
    if not claimed():
        return
    sql = "UPDATE outbound_message SET claimed_by = NULL, claimed_until = NULL WHERE status = ? AND claimed_by = ?"
    values: list[Any] = [OutboundStatus.PENDING, by]
    if ids is not None:
        if not ids:
            return
        sql += f" AND id IN ({bulk.marks(len(ids))})"
        values += ids
    await bulk.execute(sql, values)


async def waiting(now: datetime | None) -> int:
    """Pending rows due at ``now`` (all if None), claimed or not: what is still to be sent."""
    sql, values = "SELECT count(*) FROM outbound_message WHERE status = ?", [OutboundStatus.PENDING]
    if now is not None:
        sql += " AND next_try_at <= ?"
        values.append(_field("next_try_at").to_db_value(now, None))
    [(count,)] = await bulk.fetch(sql, values)
    return int(count)


async def lapse_in(now: datetime | None, by: str) -> float | None:
    """Seconds until the first claim of another instance on a row due at ``now`` (any pending row
    if None) lapses; None if no such claim. For `run --once`: a claim that a killed run left."""
    if not claimed():
        return None
    sql = "SELECT min(claimed_until) FROM outbound_message WHERE status = ? AND claimed_by <> ?"
    values: list[Any] = [OutboundStatus.PENDING, by]
    if now is not None:
        sql += " AND next_try_at <= ?"
        values.append(_field("next_try_at").to_db_value(now, None))
    [(until,)] = await bulk.fetch(sql, values)
    if until is None:
        return None
    return max(0.0, (_field("claimed_until").to_python_value(until) - wall_now()).total_seconds())


def next_due() -> QuerySet[OutboundMessage]:
    """The pending row due first that no live claim holds (same index as due_rows); once a pass, so the ORM's.

    A row another instance holds is left out: else the sender would find it due, claim nothing,
    and ask again at once until that instance is done with it.
    """
    pending = OutboundMessage.filter(status=OutboundStatus.PENDING)
    if claimed():
        pending = pending.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=wall_now()))
    return pending.order_by("next_try_at").only("id", "next_try_at")


def _field(name: str) -> Any:
    return OutboundMessage._meta.fields_map[name]
