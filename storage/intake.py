"""Durable intake: raw bytes and mailbox sync state, committed before any processing."""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from tortoise.backends.base.client import TransactionalDBClient
from tortoise.transactions import in_transaction

from ticketd.storage import bulk, clock
from ticketd.storage.models import InboundMessage, InboundSource, InboundStatus, Mailbox
from ticketd.storage.sqlite_backend import ImmediateSqliteClient

log = logging.getLogger("ticketd.intake")

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*(?:\r?\n[ \t].*)*)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Incoming:
    """Raw bytes from somewhere (an IMAP UID, a pipe), before they are stored."""

    raw: bytes
    size: int
    uid: int | None = None
    too_large: bool = False


def header_message_id(raw: bytes) -> str:
    """The Message-ID from the raw header block, cheaply, for de-duplication keys."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    match = _MESSAGE_ID.search(head)
    if not match:
        return ""
    value = b" ".join(match.group(1).split()).decode("ascii", "replace")
    start, end = value.find("<"), value.find(">")
    if start != -1 and end > start:
        return value[start:end + 1][:998]
    return value[:998]


async def mailbox_state(name: str) -> Mailbox:
    mailbox, _ = await Mailbox.get_or_create(name=name)
    return mailbox


async def reset_uidvalidity(mailbox: Mailbox, uidvalidity: int) -> None:
    """The server renumbered the folder: start over at UID 0 under the new UIDVALIDITY.

    Messages seen again are caught as duplicates by Message-ID / content hash.
    """
    mailbox.uidvalidity = uidvalidity
    mailbox.last_uid = 0
    await mailbox.save(update_fields=["uidvalidity", "last_uid", "updated_at"])


def new_row(item: Incoming, mailbox: Mailbox | None, uidvalidity: int | None, max_bytes: int) -> InboundMessage:
    """The row for ``item``, in memory (its id is set when it is stored)."""
    row = InboundMessage(
        mailbox=mailbox, uidvalidity=uidvalidity, uid=item.uid, size=item.size,
        sha256=hashlib.sha256(item.raw).hexdigest(), message_id=header_message_id(item.raw),
        status=InboundStatus.RECEIVED, reason="", attempts=0, verdicts=[], server_done=False,
        truncated=False, received_at=clock.now(),
    )
    if item.too_large or item.size > max_bytes:
        row.status, row.truncated = InboundStatus.QUARANTINED, item.too_large
        row.reason = f"too large: {item.size} bytes, the limit is {max_bytes} (limits.max_message_bytes)"
        row.processed_at = clock.now()
        where = f"mailbox {mailbox.name} UID {item.uid}" if mailbox and item.uid is not None else "piped message"
        log.warning("%s %s quarantined: %s; only its header is kept", where, row.message_id or "(no Message-ID)",
                    row.reason)
    return row


_ROW = bulk.Table(InboundMessage, ["id", "mailbox_id", "uidvalidity", "uid", "size", "truncated", "sha256",
                                   "message_id", "status", "reason", "attempts", "verdicts", "server_done",
                                   "received_at", "processed_at"])
_RAW = bulk.Table(InboundSource, ["inbound_id", "content"])
_ROW_BY_DB = bulk.Table(InboundMessage, _ROW.fields[1:])  # the database picks the id


async def _insert(rows: list[InboundMessage], raws: list[bytes]) -> None:
    """Write rows and their bytes: two statements, ids chosen here (no read-back)."""
    ids = bulk.Ids()
    for row in rows:
        row.id = await ids.take("inbound_message")
        row._saved_in_db = True  # later ORM saves of this instance UPDATE it
    await _ROW.insert_objects(rows)
    await _RAW.insert({"inbound_id": row.id, "content": raw} for row, raw in zip(rows, raws))


async def store_batch(mailbox: Mailbox, uidvalidity: int, items: list[Incoming], max_bytes: int) -> list[InboundMessage]:
    """Commit fetched messages and the new last UID together; return the new rows in UID order.

    A UID stored before (a crash between our commit and the next fetch's start) is not
    stored again: its row is still "received" and the recovery at the start of a sync has it.
    """
    uids = [item.uid for item in items if item.uid is not None]
    async with in_transaction():
        known = {r[0] for r in await bulk.fetch(
            f"SELECT uid FROM inbound_message WHERE mailbox_id = ? AND uidvalidity = ? AND uid IN ({bulk.marks(len(uids))})",
            [mailbox.id, uidvalidity, *uids])} if uids else set()
        fresh = [item for item in items if item.uid not in known]
        rows = [new_row(item, mailbox, uidvalidity, max_bytes) for item in fresh]
        await _insert(rows, [item.raw for item in fresh])
        if uids and max(uids) > mailbox.last_uid:
            mailbox.last_uid = max(uids)
            await bulk.execute("UPDATE mailbox SET last_uid = ?, updated_at = ? WHERE id = ?",
                               [mailbox.last_uid, bulk.now(), mailbox.id])
    return sorted(rows, key=lambda r: r.uid or 0)


async def store_one(item: Incoming, max_bytes: int, mailbox: Mailbox | None = None) -> InboundMessage:
    """Commit one message that arrived outside IMAP (``ticketd ingest``, LMTP)."""
    row = new_row(item, mailbox, None, max_bytes)
    db = bulk.client()
    if isinstance(db, TransactionalDBClient):  # part of the caller's transaction (LMTP's group)
        await _insert([row], [item.raw])
    elif isinstance(db, ImmediateSqliteClient):  # SQLite: both rows in one hand-off to its thread
        values = _ROW_BY_DB.values(row)
        row.id = await db.write_in_one_call(lambda conn: _insert_now(conn, values, item.raw))
        row._saved_in_db = True
    else:
        async with in_transaction():
            await _insert([row], [item.raw])
    return row


def _insert_now(conn: sqlite3.Connection, values: list[Any], raw: bytes) -> int:
    """In the database thread: the row, then its bytes under the id SQLite gave it."""
    inbound_id = conn.execute(_ROW_BY_DB.sql, values).lastrowid
    assert inbound_id is not None
    conn.execute(_RAW.sql, [inbound_id, raw])
    return inbound_id


async def raw_of(rows: list[InboundMessage]) -> dict[int, bytes]:
    """The stored bytes of ``rows`` by inbound id, in one query."""
    ids = [row.id for row in rows]
    if not ids:
        return {}
    found = await bulk.fetch(f"SELECT inbound_id, content FROM inbound_raw WHERE inbound_id IN ({bulk.marks(len(ids))})",
                             ids)
    return {int(r[0]): bytes(r[1]) for r in found}


async def unprocessed(mailbox: Mailbox) -> list[InboundMessage]:
    """Rows stored by an earlier run that never finished processing (or were deferred), oldest first.

    Sorted here, not by ORDER BY: SQLite would then walk the (mailbox, uidvalidity, uid)
    index to save a sort, i.e. every row the mailbox ever had, instead of the few received.
    """
    rows = await InboundMessage.filter(status=InboundStatus.RECEIVED, mailbox=mailbox)
    return sorted(rows, key=lambda r: (r.uidvalidity or 0, r.uid or 0, r.id))


async def pending_after_actions(mailbox: Mailbox, uidvalidity: int) -> list[InboundMessage]:
    """Finished rows whose server-side seen/delete/move has not been confirmed yet (sorted here,
    for the same reason as ``unprocessed``)."""
    rows = await (InboundMessage.filter(mailbox=mailbox, uidvalidity=uidvalidity, server_done=False,
                                        status__in=InboundStatus.FINAL).only("id", "uid", "truncated"))
    return sorted(rows, key=lambda r: r.uid or 0)


async def mark_server_done(ids: list[int]) -> None:
    if ids:
        await InboundMessage.filter(id__in=ids).update(server_done=True)
