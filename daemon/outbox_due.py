"""The outbox rows due for sending, read with plain SQL: what a send needs, no model objects.

Building an OutboundMessage per row (JSON and two timestamps parsed by the ORM, a model
instance) cost the sender more of the event loop's time than the SMTP client's own work.
The row's creation time is only needed when the row is deferred, so it is parsed then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.queryset import QuerySet

from ticketd.storage import bulk
from ticketd.storage.models import OutboundMessage, OutboundStatus

COLUMNS = ("id", "kind", "message_id", "mail_from", "recipients", "attempts", "created_at", "raw_bytes",
           # The ticket's number, for the row's log lines: a primary-key lookup, not a join to scan.
           "(SELECT number FROM ticket WHERE ticket.id = outbound_message.ticket_id)")


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


def due_sql(now: datetime | None, skip: list[int], limit: int) -> tuple[str, list[Any]]:
    """Pending rows due at ``now`` (all pending rows if None), oldest first, ``skip`` left out.

    Served by the index on status and next_try_at: it reads the pending rows, never the
    history of sent ones (tests/test_outbox_pace.py reads the plan).
    """
    sql = f"SELECT {', '.join(COLUMNS)} FROM outbound_message WHERE status = ?"
    values: list[Any] = [OutboundStatus.PENDING]
    if now is not None:
        sql += " AND next_try_at <= ?"
        values.append(_field("next_try_at").to_db_value(now, None))
    if skip:  # accepted by the server, "sent" not committed yet: never send them twice
        sql += f" AND id NOT IN ({bulk.marks(len(skip))})"
        values += skip
    return sql + " ORDER BY id LIMIT ?", [*values, limit]


async def due_rows(now: datetime | None, skip: list[int], limit: int) -> list[Due]:
    sql, values = due_sql(now, skip, limit)
    recipients = _field("recipients")
    return [Due(int(r[0]), r[1], r[2], r[3], recipients.to_python_value(r[4]), int(r[5]), r[6], bytes(r[7]),
                None if r[8] is None else int(r[8])) for r in await bulk.fetch(sql, values)]


def next_due() -> QuerySet[OutboundMessage]:
    """The pending row due first (same index as due_rows); once a pass, so the ORM's."""
    return OutboundMessage.filter(status=OutboundStatus.PENDING).order_by("next_try_at").only("id", "next_try_at")


def _field(name: str) -> Any:
    return OutboundMessage._meta.fields_map[name]
