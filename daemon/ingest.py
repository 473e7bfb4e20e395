"""``ticketd ingest``: one message from standard input, stored and processed like a fetched one."""

from __future__ import annotations

import logging
from typing import BinaryIO

from ticketd.daemon.config import Config, ConfigError
from ticketd.daemon.pipeline import Processor
from ticketd.daemon.responders import build_responders
from ticketd.storage import intake
from ticketd.storage.db import database
from ticketd.storage.errors import TemporaryFailure

log = logging.getLogger("ticketd.intake")

# What we keep of an oversized message when no blank line ends its header in time.
HEADER_LIMIT = 256 * 1024


def read_message(stream: BinaryIO, max_bytes: int) -> intake.Incoming:
    """Read standard input with the size limit: over it, keep only the header, as IMAP does.

    The rest is still read (and dropped), so the MTA sees its whole message taken.
    """
    data = stream.read(max_bytes + 1)
    if len(data) <= max_bytes:
        return intake.Incoming(raw=data, size=len(data))
    size = len(data)
    while chunk := stream.read(1 << 20):
        size += len(chunk)
    return intake.Incoming(raw=header_block(data), size=size, too_large=True)


def header_block(data: bytes) -> bytes:
    """The header of a message, up to and including the blank line that ends it."""
    ends = [i + len(sep) for sep in (b"\r\n\r\n", b"\n\n") if (i := data.find(sep, 0, HEADER_LIMIT)) != -1]
    return data[:min(ends)] if ends else data[:HEADER_LIMIT]


async def ingest(config: Config, item: intake.Incoming, mailbox: str | None = None) -> dict[str, object]:
    """Store first (durable), then process; the running daemon's sender delivers any reply.

    Once the bytes are committed the message is ours: a processing step that meets a
    condition of the system leaves the row "received", and the daemon processes it later.
    """
    point = config.intake(mailbox)
    if mailbox is not None and point is None:
        known = ", ".join(p.name for p in (*config.addresses, *config.mailboxes)) or "none"
        raise ConfigError(f"{config.path}: ingest --mailbox {mailbox!r}: no such [[addresses]] or "
                          f"[[mailboxes]] name (known: {known})")
    async with database(config.database_url, config.busy_timeout):
        state = await intake.mailbox_state(point.name) if point else None
        row = await intake.store_one(item, config.max_message_bytes, state)
        try:
            [outcome] = await Processor(config, build_responders(config)).process([row], point) or [None]
        except TemporaryFailure as exc:
            log.warning("inbound %d stored; processing deferred to the daemon: %s", row.id, exc)
            return {"inbound": row.id, "status": row.status, "ticket": None,
                    "reason": f"stored; processing deferred: {exc}"}
    return {"inbound": row.id, "status": outcome.status if outcome else row.status,
            "ticket": outcome.ticket_number if outcome else None,
            "reason": outcome.reason if outcome else row.reason}
