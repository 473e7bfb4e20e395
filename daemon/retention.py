"""Retention on a schedule: the bytes of tickets closed longer ago than ``[retention] raw_after_days``.

The daemon runs it a few minutes after it starts and then once an hour; ``ticketd db prune``
runs it once. The work is storage.retention's; here it goes in batches of a few tickets, each
its own short write transaction taken in the pipeline's turn (daemon.turn), so incoming mail
never waits behind it for long.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tortoise.transactions import in_transaction

from ticketd.daemon.pause import pause
from ticketd.storage import retention
from ticketd.storage.errors import describe, is_temporary

if TYPE_CHECKING:
    from ticketd.daemon.pipeline import Processor
    from ticketd.daemon.turn import WriteTurn

log = logging.getLogger("ticketd.retention")

INTERVAL = 3600.0  # seconds between passes: closing times are days old, an hour late is nothing
FIRST_AFTER = 300.0  # after start-up, when the backlog of mail has been taken in
BATCH = 20  # tickets per transaction: their deletes free pages of every message, a few MB each


async def prune(days: int, now: datetime, turn: WriteTurn | None = None) -> retention.Removed:
    """Strip every ticket closed more than ``days`` days before ``now``; what was removed."""
    cutoff = now - timedelta(days=days)
    total = retention.Removed()
    after = 0
    while True:
        ids = await retention.due_tickets(cutoff, after, BATCH)
        if not ids:
            break
        writing: Any = turn.exclusive() if turn is not None else nullcontext()
        async with writing, in_transaction():
            total.add(await retention.strip(ids, cutoff, now, days))
        if len(ids) < BATCH:
            break
        after = ids[-1]
    if total.tickets:
        log.info("retention: %d ticket(s) closed more than %d day(s) ago: %d raw message(s), %d attachment(s), "
                 "%d sent message copy(ies) removed", total.tickets, days, total.raw_messages, total.attachments,
                 total.outbound)
    return total


async def run_forever(processor: Processor, stop: asyncio.Event, interval: float = INTERVAL,
                      first_after: float = FIRST_AFTER) -> None:
    """Prune every ``interval`` seconds until ``stop``; the days are read from the current config (SIGHUP)."""
    delay = first_after
    while not await pause(stop, delay):
        delay = interval
        days = processor.config.raw_after_days
        if not days:
            continue
        try:
            await prune(days, processor.clock(), processor.write_turn)
        except Exception as exc:  # one failed pass must not end retention for good
            if is_temporary(exc):
                log.warning("retention waits for its next pass: %s", describe(exc))
            else:
                log.exception("retention pass failed")
