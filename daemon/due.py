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
from datetime import timedelta
from typing import TYPE_CHECKING

from tortoise.transactions import in_transaction

from daemon import lifecycle
from daemon.commit import Commit
from daemon.relay import thread_of
from daemon.ticket_steps import UNASSIGNED_REPORT, change_status, ticket_view
from storage.errors import TemporaryFailure, describe, is_temporary
from storage.models import DueStep, Ticket
from storage.writes import TicketRow, load_tickets

if TYPE_CHECKING:
    from daemon.pipeline import Processor

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
        now = processor.clock()
        query = DueStep.filter(done_at=None, due_at__lte=now)
        if kind_prefix:  # `ticketd sla run`: SLA steps only
            query = query.filter(kind__startswith=kind_prefix)
        if failed:
            query = query.exclude(id__in=sorted(failed))
        # A step's ticket and kind never change: read with the list, only the claim is per step.
        steps = await query.order_by("due_at", "id").limit(BATCH).values_list("id", "ticket_id", "kind")
        done += await _batch(processor, steps, failed)
        if len(steps) < BATCH:
            return done


async def run_forever(processor: Processor, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await run_due(processor)
        except TemporaryFailure as exc:
            log.warning("due steps wait: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), INTERVAL)
        except asyncio.TimeoutError:
            pass


async def _batch(processor: Processor, steps: list[tuple[int, int, str]], failed: set[int]) -> int:
    """The steps in one transaction (one fsync, not one a step), each in a savepoint of its own.

    A step's claim and its effects still commit together or not at all; a step that fails rolls
    back alone and stays due (``failed`` keeps it out of this pass); a condition of the system
    rolls back the batch, to be run again later.
    """
    done, drafted = 0, False
    if not steps:
        return 0
    async with processor.write_turn.exclusive(), in_transaction():
        for step_id, ticket_id, kind in steps:
            try:
                async with in_transaction():  # a savepoint
                    ran, drafts = await _one(processor, int(step_id), int(ticket_id), kind)
            except Exception as exc:
                if is_temporary(exc):
                    raise TemporaryFailure(describe(exc)) from exc
                log.exception("due step %d failed; it stays due and is tried again next pass", step_id)
                failed.add(int(step_id))
                continue
            done, drafted = done + ran, drafted or drafts
    if drafted:
        processor.on_outbox()
    return done


async def _one(processor: Processor, step_id: int, ticket_id: int, kind: str) -> tuple[int, bool]:
    """Claim and run one step: (1 if it ran, whether it drafted mail)."""
    commit = Commit(processor, "")
    if not await DueStep.filter(id=step_id, done_at=None).update(done_at=commit.now):
        return 0, False  # run or cancelled meanwhile: the UPDATE is the claim
    found = await load_tickets({ticket_id}, set())
    if found:
        await _run(commit, kind, found[0])
    await commit.writes.flush()
    return 1, bool(commit.drafts)


async def _run(commit: Commit, kind: str, ticket: TicketRow) -> None:
    if kind.startswith("sla_"):  # written only with [sla]: the module is imported only then
        from daemon.sla.fire import fire

        if not await fire(commit, kind, ticket):
            return
    elif kind == lifecycle.PENDING_REMINDER and ticket.status == lifecycle.PENDING and ticket.requester:
        from daemon.notices import reminder_draft

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
    from daemon.notices import notice_draft

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
        from daemon.sla.hooks import unassigned

        await unassigned(commit, ticket, timedelta(seconds=waited))
    return True
