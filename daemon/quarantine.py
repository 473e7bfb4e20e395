"""Held messages (quarantined or rejected): show, release into the pipeline, delete."""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Any

from ticketd.daemon.config import Config
from ticketd.daemon.pipeline import Processor
from ticketd.storage import intake, queries
from ticketd.storage.db import database
from ticketd.storage.models import InboundMessage, InboundStatus

SUMMARY_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID")


class QuarantineError(Exception):
    """The held message cannot be shown, released or deleted; the text says why."""


def summary_headers(raw: bytes) -> dict[str, str]:
    try:
        parsed = BytesHeaderParser(policy=default_policy).parsebytes(raw[:256 * 1024])
        return {name: str(parsed[name]) for name in SUMMARY_HEADERS if parsed[name] is not None}
    except Exception:  # a held message is often broken; showing it must still work
        return {}


async def _held(inbound_id: int) -> InboundMessage:
    row = await queries.held_message(inbound_id)
    if row is None:
        raise QuarantineError(f"no quarantined or rejected message {inbound_id}")
    return row


async def show(config: Config, inbound_id: int) -> dict[str, Any]:
    async with database(config.database_url):
        row = await _held(inbound_id)
        return queries.held_detail(row, summary_headers((await intake.raw_of([row])).get(row.id, b"")))


async def release(config: Config, inbound_id: int) -> dict[str, Any]:
    """Run a held message through the rest of the pipeline as if the filters had accepted it."""
    async with database(config.database_url):
        row = await _held(inbound_id)
        if row.truncated:
            raise QuarantineError(f"message {inbound_id} is over limits.max_message_bytes and only its header "
                                  "was fetched; raise the limit and let ticketd fetch it again")
        # Retention never takes a held message's bytes; without them it would only be quarantined again.
        if not await intake.raw_of([row]):
            raise QuarantineError(f"message {inbound_id} has no stored raw bytes any more: nothing to release")
        mailbox = config.intake(row.mailbox.name) if row.mailbox else None
        row.status, row.reason = InboundStatus.RECEIVED, f"released from quarantine ({row.reason})"[:2000]
        await row.save(update_fields=["status", "reason"])
        [outcome] = await Processor(config, filters=[]).process([row], mailbox)
    if outcome.status != InboundStatus.PROCESSED:  # e.g. still unreadable, or a duplicate after all
        raise QuarantineError(f"message {inbound_id} was not released: it is {outcome.status} "
                              f"({outcome.reason or 'no reason given'})")
    return {"id": inbound_id, "status": outcome.status, "ticket": outcome.ticket_number,
            "reason": outcome.reason}


async def delete(config: Config, inbound_id: int) -> None:
    async with database(config.database_url):
        row = await _held(inbound_id)
        await row.delete()
