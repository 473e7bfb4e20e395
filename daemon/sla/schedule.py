"""A ticket's SLA steps: one due row per target for its next firing, rebuilt whenever its clock changes.

Called, only with ``[sla]`` configured, wherever a ticket's SLA inputs change: a new ticket, a
status change (pending pauses, solved and closed stop, a reopen resumes), an agent's reply (the
first response is met, the next update restarts), a customer's message and a priority change.
Each call cancels the ticket's undone ``sla_`` steps and writes the next ones, so a step never
outlives the state it was computed from; firing (daemon.sla.fire) checks again anyway.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ticketd.daemon.sla.clock import BREACH, WARNING, Clock, load_clock
from ticketd.daemon.sla.config import SlaConfig
from ticketd.daemon.sla.levels import next_breach_step, still_breached
from ticketd.daemon.sla.policy import TARGETS

if TYPE_CHECKING:
    from ticketd.daemon.commit import Commit

PREFIX = "sla_"
WARN, FIRE_BREACH, ESCALATE = "sla_warn", "sla_breach", "sla_escalate"  # kinds are "<level>:<target>"


def step_kind(level: str, target: str) -> str:
    kind = f"{level}:{target}"
    assert len(kind) <= 30, kind  # DueStep.kind is 30 characters
    return kind


async def reschedule_sla(commit: Commit, ticket_id: int, clock: Clock | None = None) -> None:
    """Replace the ticket's undone SLA steps by those its clock at ``commit.now`` asks for.

    ``clock``: one already read in this transaction and kept up to date by the caller (firing
    adds what it fired), which saves a flush and reading it again; by default it is read. The
    replacement is written with the commit's other rows (one UPDATE and one INSERT for a batch).
    """
    sla: SlaConfig | None = commit.config.sla
    if sla is None:
        return
    if clock is None:
        await commit.writes.flush()  # the clock reads this group's events (a status change, a reply)
        clock = await load_clock(ticket_id, commit.config.rules)
    commit.writes.due_steps(ticket_id, PREFIX, next_steps(sla, clock, commit.now) if clock is not None else [])


def next_steps(sla: SlaConfig, clock: Clock, now: datetime) -> list[tuple[str, datetime]]:
    """Per target at most one step: its warning if not given, else its breach, else its next escalation step."""
    if clock.stopped:
        return []
    status = clock.status_at(sla, now)
    steps = []
    for target in TARGETS:
        state = getattr(status, target)
        # Met: nothing more to fire. Paused: its due moves while it waits; leaving pending reschedules.
        if state is None or state.state in ("met", "paused"):
            continue
        if (WARNING, target) not in clock.fired and (BREACH, target) not in clock.fired and state.state != "breached":
            steps.append((step_kind(WARN, target), state.warn_at))
        elif (BREACH, target) not in clock.fired:
            steps.append((step_kind(FIRE_BREACH, target), state.due))
        elif sla.escalation:  # breached: the next step of the escalation matrix, if one is left to run
            step = next_breach_step(len(sla.escalation), clock.level, clock.breach_steps(target))
            if step is not None and still_breached(target, state, clock.first_reply_at):
                steps.append((step_kind(ESCALATE, target), state.due + sla.escalation[step].after))
    return steps
