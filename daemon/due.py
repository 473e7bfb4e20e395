"""Timed steps of the life cycle: rows with a due time, each run exactly once.

A pending ticket gets a reminder to its customer after a silence and is solved after a longer
one; a solved ticket closes after a delay (daemon.lifecycle schedules them, and leaving a state
cancels its steps). A step is claimed by the UPDATE that marks it done, in the same transaction
as its effects: two daemons, or a crash between the two, can neither run it twice nor lose it.
The daemon runs this every minute; `run --once` runs it once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from tortoise.transactions import in_transaction

from ticketd.daemon import lifecycle
from ticketd.daemon.commit import Commit
from ticketd.daemon.pause import pause
from ticketd.daemon.relay import thread_of
from ticketd.daemon.ticket_steps import UNASSIGNED_REPORT, change_status, ticket_view
from ticketd.storage import bulk
from ticketd.storage.errors import TemporaryFailure, describe, is_temporary
from ticketd.storage.models import DueStep, Ticket
from ticketd.storage.writes import TicketRow, load_tickets

if TYPE_CHECKING:
    from ticketd.daemon.pipeline import Processor

log = logging.getLogger("ticketd.due")

INTERVAL = 60.0  # seconds between looks for due steps
BATCH = 100


async def run_due(processor: Processor, kind_prefix: str = "") -> int:
    """Run every step due now (of kinds starting with ``kind_prefix``); the number run.

    A condition of the system raises TemporaryFailure.
    """
    done = 0
    failed: set[int] = set()  # this pass: a broken step must not hold back the ones due after it
    while True:
        ran, seen = await _batch(processor, _Pick(processor.clock(), kind_prefix), failed)
        done += ran
        if seen < BATCH:
            return done


async def run_forever(processor: Processor, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await run_due(processor)
        except TemporaryFailure as exc:
            log.warning("due steps wait: %s", exc)
        await pause(stop, INTERVAL)


@dataclass(frozen=True)
class _Pick:
    """Which steps a batch takes: due at ``now``, of kinds starting with ``prefix``, ``only`` these ids."""

    now: datetime
    prefix: str = ""  # `ticketd sla run`: "sla_", SLA steps only
    only: tuple[int, ...] = ()

    def one(self, step_id: int) -> _Pick:
        return _Pick(self.now, self.prefix, (step_id,))


async def _batch(processor: Processor, pick: _Pick, failed: set[int]) -> tuple[int, int]:
    """Run the next due steps in one transaction: one fsync, their reads and writes a few statements
    each. Returns (steps run, steps due that the batch found): fewer than BATCH found, none is left.

    A step's claim and its effects still commit together or not at all. A step that fails is a
    bug or a row no code expects, not a condition of the system: the batch rolls back and runs
    again without it, and it stays due (``failed`` keeps it out of this pass). A write that fails
    at the end, where no step can be named, has the steps run one by one to find it. A condition
    of the system rolls the batch back, to be run again later.
    """
    while True:
        if not await _due(pick, failed, probe=True):  # a read: no write transaction when nothing is due
            return 0, 0
        try:
            return await _together(processor, pick, failed)
        except _StepFailed as exc:
            failed.add(exc.step_id)
        except _Unnamed as exc:
            ran = 0
            for step_id in exc.step_ids:
                ran += (await _batch(processor, pick.one(step_id), failed))[0]
            return ran, len(exc.step_ids)
        except Exception as exc:  # BEGIN itself refused (SQLite's lock held past busy_timeout, say)
            if is_temporary(exc):
                raise TemporaryFailure(describe(exc)) from exc
            raise


class _StepFailed(Exception):
    def __init__(self, step_id: int) -> None:
        self.step_id = step_id


class _Unnamed(Exception):
    """The batch's writes failed, and no one step can be blamed."""

    def __init__(self, step_ids: list[int]) -> None:
        self.step_ids = step_ids


async def _together(processor: Processor, pick: _Pick, failed: set[int]) -> tuple[int, int]:
    async with processor.write_turn.exclusive(), in_transaction():
        commit = Commit(processor, "")
        steps = await _due(pick, failed)
        claimed = await _claim(commit, [s[0] for s in steps]) if steps else set()
        tickets = {t.id: t for t in await load_tickets({s[1] for s in steps}, set())}
        clocks = await _clocks(commit, steps)
        for step_id, ticket_id, kind in steps:
            ticket = tickets.get(ticket_id)
            if step_id not in claimed or ticket is None:
                continue
            try:
                await _run(commit, kind, ticket, clocks.get(ticket.id))
            except Exception as exc:
                _blame(exc, f"due step {step_id} failed; it stays due and is tried again next pass")
                raise _StepFailed(step_id) from exc
            if not kind.startswith("sla_"):
                clocks.pop(ticket.id, None)  # its status may have changed: read again after a flush
        try:
            await commit.writes.flush()
        except Exception as exc:
            _blame(exc, "due steps: writing their effects failed", quiet=len(steps) > 1)
            if len(steps) == 1:
                raise _StepFailed(steps[0][0]) from exc
            raise _Unnamed([s[0] for s in steps]) from exc
    if commit.drafts:
        processor.on_outbox()
    _count(processor, commit, [s for s in steps if s[0] in claimed])
    return len(claimed), len(steps)


async def _due(pick: _Pick, failed: set[int], probe: bool = False) -> list[tuple[int, int, str]]:
    """(id, ticket id, kind) of the batch's steps, oldest due first, read inside its transaction
    (``probe``: the first one only, outside any transaction, locking nothing).

    PostgreSQL: FOR UPDATE SKIP LOCKED, so that two instances at the same moment take disjoint
    batches instead of the second waiting on the first's rows and then finding them done; the
    rows stay locked until this transaction ends, and the claim below marks them done in it.
    (Every transaction of ours also takes the advisory write lock at BEGIN, storage.postgres_backend,
    which today queues the two batches anyway; the skip keeps them apart without it.) SQLite:
    BEGIN IMMEDIATE, one writer, nothing to skip. Served by the index on (done_at, due_at).
    """
    due_at = DueStep._meta.fields_map["due_at"].to_db_value(pick.now, None)
    sql = "SELECT id, ticket_id, kind FROM due_step WHERE done_at IS NULL AND due_at <= ?"
    values: list[Any] = [due_at]
    if pick.prefix:
        sql += " AND substr(kind, 1, ?) = ?"
        values += [len(pick.prefix), pick.prefix]
    if pick.only:
        sql += f" AND id IN ({bulk.marks(len(pick.only))})"
        values += pick.only
    if failed:
        sql += f" AND id NOT IN ({bulk.marks(len(failed))})"
        values += sorted(failed)
    sql += " ORDER BY due_at, id LIMIT ?"
    if bulk.is_postgres(bulk.client()) and not probe:
        sql += " FOR UPDATE SKIP LOCKED"
    return [(int(i), int(t), str(k)) for i, t, k in await bulk.fetch(sql, [*values, 1 if probe else BATCH])]


def _count(processor: Processor, commit: Commit, steps: list[tuple[int, int, str]]) -> None:
    """The committed batch's steps and SLA events, for the metrics."""
    for _, _, kind in steps:
        processor.metrics.due_run[kind] += 1
    if commit.fired:
        processor.metrics.count_fired(commit.fired)


async def _claim(commit: Commit, step_ids: list[int]) -> set[int]:
    """Mark the steps done; those that were undone are this batch's (the UPDATE is the claim)."""
    done_at = DueStep._meta.fields_map["done_at"].to_db_value(commit.now, None)
    rows = await bulk.fetch(f"UPDATE due_step SET done_at = ? WHERE {bulk.unindexed('done_at')} IS NULL "
                            f"AND id IN ({bulk.marks(len(step_ids))}) RETURNING id", [done_at, *step_ids])
    return {int(r[0]) for r in rows}


async def _clocks(commit: Commit, steps: list[tuple[int, int, str]]) -> dict[int, Any]:
    """The SLA clocks of the tickets with SLA steps in the batch, read in two queries."""
    ids = {int(t) for _, t, kind in steps if kind.startswith("sla_")}
    if not ids or commit.config.sla is None:
        return {}
    from ticketd.daemon.sla.clock import load_clocks

    return await load_clocks(ids, commit.config.rules)


def _blame(exc: Exception, message: str, quiet: bool = False) -> None:
    """A condition of the system becomes TemporaryFailure; anything else is logged (unless ``quiet``)."""
    if is_temporary(exc):
        raise TemporaryFailure(describe(exc)) from exc
    if not quiet:
        log.error(message, exc_info=exc)


async def _run(commit: Commit, kind: str, ticket: TicketRow, clock: Any = None) -> None:
    """One step; ``clock``: the ticket's SLA clock when read with the batch."""
    if kind.startswith("sla_"):  # written only with [sla]: the module is imported only then
        from ticketd.daemon.sla.fire import fire

        await fire(commit, kind, ticket, clock)  # which logs what it fired
        return
    if kind == lifecycle.PENDING_REMINDER and ticket.status == lifecycle.PENDING and ticket.requester:
        from ticketd.daemon.notices import reminder_draft

        thread = await thread_of(ticket.id)
        commit._outbound_row(ticket, reminder_draft(commit.config, ticket_view(ticket), ticket.requester,
                                                    thread.in_reply_to, thread.references))
        commit.writes.event(ticket.id, "reminder_sent", {"to": ticket.requester}, who="system")
    elif kind == lifecycle.AUTO_SOLVE and ticket.status == lifecycle.PENDING:
        await change_status(commit, ticket, lifecycle.SOLVED, "system")
    elif kind == lifecycle.AUTO_CLOSE and ticket.status == lifecycle.SOLVED:
        await change_status(commit, ticket, lifecycle.CLOSED, "system")
    elif kind == UNASSIGNED_REPORT and ticket.status not in (lifecycle.SOLVED, lifecycle.CLOSED):
        if not await _report_unassigned(commit, ticket):
            return
    else:
        return
    log.info("ticket #%d: %s", ticket.number, kind)


async def _report_unassigned(commit: Commit, ticket: TicketRow) -> bool:
    """Tell the queue's lead (else its agents) that nobody took the ticket; False if someone did."""
    if (await Ticket.filter(id=ticket.id).first().values("assignee"))["assignee"]:
        return False
    from ticketd.daemon.notices import notice_draft

    team = commit.config.team
    queue = team.queue(ticket.queue) if team is not None else None
    if queue is None:
        return False
    targets = (queue.lead,) if queue.lead else queue.recipients
    waited = round(queue.unassigned_timeout or 0)
    for address in targets:
        commit._outbound_row(ticket, notice_draft(
            commit.config, address, f"Unassigned: [#{ticket.number}] {ticket.subject}",
            [f"Ticket #{ticket.number} in queue {ticket.queue} has had no assignee for {waited // 60} minutes.",
             "Answer its notification with #assign ADDRESS to give it to someone."], kind="unassigned_report"))
    commit.writes.event(ticket.id, "unassigned_reported", {"to": list(targets)}, who="system")
    if commit.config.sla is not None:  # nobody's for so long: a trigger of escalation
        from ticketd.daemon.sla.hooks import unassigned

        await unassigned(commit, ticket, timedelta(seconds=waited))
    return True
