"""``ticketd ingest``: one message from standard input, stored and processed like a fetched one."""

from __future__ import annotations

from daemon.config import Config
from daemon.pipeline import Processor
from daemon.responders import build_responders
from storage import intake
from storage.db import database


async def ingest(config: Config, raw: bytes) -> dict[str, object]:
    """Store first (durable), then process; the running daemon's sender delivers any reply."""
    async with database(config.database_url):
        row = await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), config.max_message_bytes)
        outcomes = await Processor(config, build_responders(config)).process([row], None)
    outcome = outcomes[0] if outcomes else None
    return {"inbound": row.id, "status": outcome.status if outcome else row.status,
            "ticket": outcome.ticket_number if outcome else None,
            "reason": outcome.reason if outcome else row.reason}
