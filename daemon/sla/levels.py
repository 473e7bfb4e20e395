"""Escalation levels: the tier a ticket is at, the one it reaches next, the step of a breach due next (pure).

A ticket's level is the number of tiers of ``[[sla.escalation]]`` it has climbed (its
``escalated`` events): 0 is not escalated, 1 the first step's tier, and so on. Whatever raises a
ticket raises it one tier past its level; at the last tier nothing raises it further.

A target's breach runs the steps after it, each at the breach + its ``after``: step 0 raises
the ticket one tier whatever its level (a breach is news even to an escalated ticket); a later
step i raises it only while the target is still breached and the ticket has not reached tier
i + 1 yet (a trigger, or another target's breach, may have got it there first). Each step runs
once per target, so a tier is mailed once: the level only ever goes up.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

from ticketd.daemon.sla.due import TargetStatus

Step = TypeVar("Step")  # daemon.sla.config.EscalationStep; any sequence of steps will do


def next_tier(steps: Sequence[Step], level: int) -> Step | None:
    """The step a ticket at ``level`` climbs to; None at the top (or with no steps)."""
    return steps[level] if 0 <= level < len(steps) else None


def current_tier(steps: Sequence[Step], level: int) -> Step | None:
    """The step of the tier a ticket at ``level`` is at; None when not escalated.

    A level above the steps configured (a step removed since) is the last tier.
    """
    return steps[min(level, len(steps)) - 1] if level > 0 and steps else None


def next_breach_step(count: int, level: int, done: set[int]) -> int | None:
    """The index of the step a breach runs next, of ``count`` steps; ``done``: those run for this target."""
    if level >= count:
        return None  # at the top: no step can raise it
    for i in range(count):
        if i not in done and (i == 0 or level < i + 1):
            return i  # a later step the ticket has reached already stays skipped: levels only go up
    return None


def still_breached(target: str, state: TargetStatus | None, first_reply_at: datetime | None) -> bool:
    """Whether ``target`` is breached and not yet answered.

    A late first reply leaves the first response breached for good (the report counts it), but
    nobody more needs to hear of it; resolution stops with the ticket (then there is no state).
    """
    if state is None or state.state != "breached":
        return False
    return not (target == "first_response" and first_reply_at is not None)
