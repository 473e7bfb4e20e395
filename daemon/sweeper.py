"""Finish piped-in messages that `ticketd ingest` stored but could not process."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from itertools import groupby

from ticketd.daemon.config import Config
from ticketd.daemon.pause import pause
from ticketd.daemon.pipeline import Processor
from ticketd.storage import clock
from ticketd.storage.errors import TemporaryFailure
from ticketd.storage.models import InboundMessage, InboundStatus

log = logging.getLogger("ticketd.intake")

# An `ingest` still at work on its row would only make us parse it in vain (the claim in the
# commit keeps it from being processed twice), so the sweep leaves young rows alone.
MIN_AGE = timedelta(seconds=30)
INTERVAL = 30.0


PAGE = 500  # rows read at a time; a sweep pages on by id until it has seen every stranded row


async def sweep(processor: Processor, min_age: timedelta = MIN_AGE) -> int:
    """Process every stranded piped (or LMTP) row once; return how many were processed.

    Paged by id, so a crash that left thousands behind is finished in one sweep, and a row
    that stays "received" (deferred by a filter) is not read again until the next sweep.
    """
    config: Config = processor.config
    cutoff = clock.now() - min_age
    done, last = 0, 0
    while True:
        rows = await (InboundMessage.filter(status=InboundStatus.RECEIVED, uid=None, received_at__lt=cutoff,
                                            id__gt=last).order_by("id").limit(PAGE).prefetch_related("mailbox"))
        for name, group in groupby(rows, key=lambda r: r.mailbox.name if r.mailbox else None):
            batch = list(group)
            log.info("processing %d piped message(s) left by ingest (mailbox %s)", len(batch), name or "-")
            done += len(await processor.process(batch, config.intake(name) if name else None))
        if len(rows) < PAGE:
            return done
        last = rows[-1].id


async def run(processor: Processor, stop: asyncio.Event, interval: float = INTERVAL) -> None:
    """Sweep now and every ``interval`` seconds until ``stop``; a failure waits for the next turn.

    The first sweep takes every stranded row, young or not: rows left from before a restart
    should not wait, and a concurrent ingest's row is skipped by the claim in the commit.
    """
    min_age = timedelta(0)
    while not stop.is_set():
        try:
            await sweep(processor, min_age)
            min_age = MIN_AGE
        except TemporaryFailure as exc:
            log.warning("piped messages wait for the next sweep: %s", exc)
        except Exception:  # one bad sweep must not end the daemon's sweeping for good
            log.exception("sweep of piped messages failed")
        await pause(stop, interval)
