"""Before the transaction: parse (in the process pool) and filter (concurrently, bounded)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from ticketd.daemon import logcontext
from ticketd.daemon.filters import ACCEPT, REJECT, Decision, Filter, FilterContext, Verdict, combine
from ticketd.daemon.parsers import parse_message
from ticketd.daemon.parsers.model import ParsedMessage, UnreadableMessage
from ticketd.storage import clock

log = logging.getLogger("ticketd.filters")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return clock.now()


@dataclass(frozen=True)
class Prepared:
    """One row, ready for its transaction: the parse (or why not) and the filters' decision."""

    parsed: ParsedMessage | str  # a str is the reason the bytes could not be read
    decision: Decision | None = None


def parse_or_reason(raw: bytes) -> ParsedMessage | str:
    """Parse, turning every failure into a stored reason instead of an exception."""
    try:
        return parse_message(raw)
    except UnreadableMessage as exc:
        return f"unreadable: {exc}"
    except RecursionError:
        return "unreadable: MIME structure nested too deeply"
    except Exception as exc:  # a parser bug must quarantine one message, never stop the daemon
        return f"parser error: {type(exc).__name__}: {exc}"


# Messages per task sent to the parse pool. A task costs the main process a queue hand-off,
# a wake-up of the pool's manager thread and a future, each way (~5 % of its CPU at one task a
# message, measured with py-spy); a few messages a task make that small, while a batch of 50
# still spreads over the workers.
PER_TASK = 8


def parse_many(raws: list[bytes | None]) -> list[ParsedMessage | str]:
    """In a parse worker: one task's messages (None entries are skipped)."""
    return [parse_or_reason(raw) if raw is not None else "" for raw in raws]


async def parse_all(raws: list[bytes | None], pool: Executor | None) -> tuple[list[ParsedMessage | str], bool]:
    """Parse in ``pool`` (None entries are skipped); the flag says the pool broke."""
    if pool is None or len(raws) == 1:
        return parse_many(raws), False
    loop = asyncio.get_running_loop()
    workers = getattr(pool, "_max_workers", 1)
    size = max(1, min(PER_TASK, -(-len(raws) // workers)))  # every worker gets a share
    try:
        parts = await asyncio.gather(*(loop.run_in_executor(pool, parse_many, raws[i:i + size])
                                       for i in range(0, len(raws), size)))
    except BrokenProcessPool:
        log.error("parser process died; parsing in the main process from now on")
        return parse_many(raws), True
    return [parsed for part in parts for parsed in part], False


async def run_filters(filters: list[Filter], ctx: FilterContext) -> Decision:
    """The filters in order; a REJECT or a filter asking to be final ends the run early."""
    verdicts: list[tuple[str, Verdict]] = []
    for unit in filters:
        try:
            verdict = await unit.check(ctx)
        except Exception as exc:  # a broken filter lets mail through, loudly, rather than lose it
            log.exception("filter %s failed on %s", unit.name, ctx.message.message_id)
            verdict = Verdict(ACCEPT, reason=f"filter error: {type(exc).__name__}: {exc}")
        verdicts.append((unit.name, verdict))
        if verdict.action == REJECT or verdict.details.get("final"):
            break
    return combine(verdicts)


async def filter_all(filters: list[Filter], parsed: list[ParsedMessage | str], raws: list[bytes | None],
                     mailbox: str, own: frozenset[str], window: asyncio.Semaphore,
                     clock: Clock, inbound: list[int] | None = None) -> list[Decision | None]:
    """Decide every readable message, at most ``window`` at a time across batches (spamd is slow).

    ``inbound``: the row ids of the messages, for the filters' log lines.
    """
    if not filters:
        return [None] * len(parsed)

    async def one(item: ParsedMessage | str, raw: bytes | None, row: int | None) -> Decision | None:
        if isinstance(item, str) or raw is None:
            return None
        async with window:
            with logcontext.message(mailbox, row, item.message_id):
                return await run_filters(filters, FilterContext(item, raw, mailbox, own, clock()))

    ids: list[int | None] = list(inbound) if inbound is not None else [None] * len(parsed)
    return list(await asyncio.gather(*(one(item, raw, row) for item, raw, row in zip(parsed, raws, ids))))
