"""The webhook_delivery table: claim a webhook's next row, record what became of it, count what waits.

Several instances may share one database (PostgreSQL). A row is claimed by one statement,
outside any write transaction (so without the advisory write lock, storage.postgres_backend):
``UPDATE ... SET claimed_by, claimed_until WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)
RETURNING``. Only a webhook's first pending row can be claimed (the NOT EXISTS), so its
deliveries go one at a time and in order of id, whichever instance holds them: the row after
it becomes claimable only once the first is delivered or failed, and two instances racing
for it get it once (the row lock; on SQLite the one writer). A claim that expires (its
instance died mid-POST) is claimable again: that POST may then be made twice, and the event
id header is what lets the receiver see it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ticketd.storage import bulk
from ticketd.storage.models import WebhookDelivery, WebhookStatus


@dataclass(frozen=True)
class Claimed:
    id: int
    event: str
    event_id: str
    body: str
    attempts: int
    created_at: datetime


def _db(value: datetime) -> Any:
    return WebhookDelivery._meta.fields_map["next_try_at"].to_db_value(value, None)


def _py(value: Any) -> datetime:
    return WebhookDelivery._meta.fields_map["created_at"].to_python_value(value)


async def claim(webhook: str, instance: str, now: datetime, until: datetime) -> Claimed | None:
    """The webhook's first pending row if it is due and unclaimed (or its claim expired), now ours."""
    lock = " FOR UPDATE SKIP LOCKED" if bulk.is_postgres(bulk.client()) else ""
    rows = await bulk.fetch(
        "UPDATE webhook_delivery SET claimed_by = ?, claimed_until = ? WHERE id IN ("
        "SELECT d.id FROM webhook_delivery d WHERE d.webhook = ? AND d.status = ? AND d.next_try_at <= ? "
        "AND (d.claimed_until IS NULL OR d.claimed_until < ?) AND NOT EXISTS (SELECT 1 FROM webhook_delivery e "
        "WHERE e.webhook = d.webhook AND e.status = ? AND e.id < d.id) "
        f"ORDER BY d.id LIMIT 1{lock}) RETURNING id, event, event_id, body, attempts, created_at",
        [instance, _db(until), webhook, WebhookStatus.PENDING, _db(now), _db(now), WebhookStatus.PENDING])
    if not rows:
        return None
    r = rows[0]
    return Claimed(int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), _py(r[5]))


async def next_due(webhook: str) -> datetime | None:
    """When the webhook's first pending row is due (None: nothing pending): how long its sender sleeps."""
    rows = await bulk.fetch("SELECT next_try_at FROM webhook_delivery WHERE webhook = ? AND status = ? "
                            "ORDER BY id LIMIT 1", [webhook, WebhookStatus.PENDING])
    return _py(rows[0][0]) if rows else None


async def delivered(row_id: int, now: datetime) -> bool:
    """Mark the row delivered, whoever holds its claim now: the endpoint has it, which is a fact.

    (Our claim may have run out while the database kept us waiting: another instance then
    POSTs it too, and its record of a failure or a retry finds the row delivered and changes
    nothing.) False if it was delivered already.
    """
    changed = await bulk.execute("UPDATE webhook_delivery SET status = ?, delivered_at = ?, attempts = attempts + 1, "
                                 "last_error = '', claimed_by = NULL, claimed_until = NULL WHERE id = ? AND status = ?",
                                 [WebhookStatus.DELIVERED, _db(now), row_id, WebhookStatus.PENDING])
    return changed == 1


async def failed(row_id: int, instance: str, reason: str) -> bool:
    """Failed for good; False (nothing changed) where our claim was taken over meanwhile."""
    return await _finish(row_id, instance, "status = ?, attempts = attempts + 1, last_error = ?",
                         [WebhookStatus.FAILED, reason[:2000]])


async def retry(row_id: int, instance: str, at: datetime, reason: str) -> bool:
    """Give the claim back, with the time of the next try."""
    return await _finish(row_id, instance, "next_try_at = ?, attempts = attempts + 1, last_error = ?",
                         [_db(at), reason[:2000]])


async def _finish(row_id: int, instance: str, sets: str, values: list[Any]) -> bool:
    changed = await bulk.execute(f"UPDATE webhook_delivery SET {sets}, claimed_by = NULL, claimed_until = NULL "
                                 "WHERE id = ? AND claimed_by = ? AND status = ?",
                                 [*values, row_id, instance, WebhookStatus.PENDING])
    return changed == 1


@dataclass(frozen=True)
class Waiting:
    pending: int
    failed: int
    oldest_pending: datetime | None


async def waiting() -> dict[str, Waiting]:
    """Per webhook: rows pending, rows failed, the oldest pending row's creation ("ticketd status", metrics)."""
    rows = await bulk.fetch("SELECT webhook, status, count(*), min(created_at) FROM webhook_delivery "
                            "WHERE status IN (?, ?) GROUP BY webhook, status",
                            [WebhookStatus.PENDING, WebhookStatus.FAILED])
    counts: dict[str, dict[str, Any]] = {}
    for name, status, count, oldest in rows:
        entry = counts.setdefault(str(name), {"pending": 0, "failed": 0, "oldest": None})
        entry[status] = int(count)
        if status == WebhookStatus.PENDING and oldest is not None:
            entry["oldest"] = _py(oldest)
    return {name: Waiting(e["pending"], e["failed"], e["oldest"]) for name, e in counts.items()}
