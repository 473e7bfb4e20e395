"""A ticket's life cycle: new -> open -> pending -> solved -> closed, and back.

Pure decisions; daemon.agent_reply and daemon.commit write them, the scheduler (daemon.due)
runs the timed steps. Who moves a ticket:
- an agent: the first reply opens a new ticket; ``#status`` sets any state;
- a customer: a reply reopens a pending or solved ticket, and a closed one within the reopen
  window (after it, the reply opens a new ticket linked to the old one). A bare thank-you on a
  solved ticket is recorded without reopening it;
- automatic mail (auto-replies, bounces): never;
- time: a pending ticket gets a reminder after a silence and is solved after a longer one; a
  solved ticket closes after a delay. Each is a row with a due time (DueStep), run once.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

NEW, OPEN, PENDING, SOLVED, CLOSED = "new", "open", "pending", "solved", "closed"
STATUSES = (NEW, OPEN, PENDING, SOLVED, CLOSED)
WAITING = (PENDING, SOLVED, CLOSED)  # where a customer's reply may change the state

# Due steps, by the state that schedules them: leaving the state cancels what it scheduled.
PENDING_REMINDER, AUTO_SOLVE, AUTO_CLOSE = "pending_reminder", "auto_solve", "auto_close"
STEPS_OF = {PENDING: (PENDING_REMINDER, AUTO_SOLVE), SOLVED: (AUTO_CLOSE,)}


@dataclass(frozen=True)
class LifecycleConfig:
    pending_reminder: timedelta = timedelta(hours=72)
    pending_solve: timedelta = timedelta(days=7)
    solved_close: timedelta = timedelta(days=4)
    reopen_window: timedelta = timedelta(days=14)  # a reply to a closed ticket within it reopens it
    thanks_phrases: tuple[str, ...] = ("thank you", "thanks", "thank u", "thx", "ty", "cheers", "much appreciated",
                                       "danke", "merci", "gracias", "grazie", "obrigado", "obrigada", "bedankt")
    thanks_max_chars: int = 120  # longer than this, it says more than thank you
    followers: bool = True  # the customer's Cc addresses follow the ticket (get the agents' replies)
    forwarded_on_behalf: bool = True  # an agent's "Fwd:" to a support address opens a ticket for the original sender


@dataclass(frozen=True)
class Change:
    status: str  # the ticket's status after the message (may be unchanged)
    reopened: bool = False  # solved/closed -> open: counted in reopen_count
    follow_up: bool = False  # closed past the window: open a new ticket linked to this one
    thanks: bool = False  # a thank-you recorded on a solved ticket, which stays solved


def customer_reply(status: str, closed_at: datetime | None, now: datetime, config: LifecycleConfig,
                   new_text: str, automatic: bool) -> Change:
    """What a customer's message (``new_text``: quotes removed) does to a ticket in ``status``."""
    if automatic or status in (NEW, OPEN):
        return Change(status)
    if status == PENDING:
        return Change(OPEN)
    if status == SOLVED:
        if is_thanks(new_text, config):
            return Change(SOLVED, thanks=True)
        return Change(OPEN, reopened=True)
    if status == CLOSED:
        if closed_at is not None and now - closed_at > config.reopen_window:
            return Change(CLOSED, follow_up=True)
        if is_thanks(new_text, config):
            return Change(CLOSED, thanks=True)
        return Change(OPEN, reopened=True)
    return Change(status)


def agent_reply(status: str, wanted: str | None) -> str:
    """The status after an agent's reply: the one ``#status`` asked for, else a new ticket opens."""
    if wanted is not None:
        return wanted
    return OPEN if status == NEW else status


def due_steps(status: str, now: datetime, config: LifecycleConfig) -> list[tuple[str, datetime]]:
    """The timed steps that entering ``status`` schedules: (kind, due_at)."""
    if status == PENDING:
        return [(PENDING_REMINDER, now + config.pending_reminder), (AUTO_SOLVE, now + config.pending_solve)]
    if status == SOLVED:
        return [(AUTO_CLOSE, now + config.solved_close)]
    return []


_NEGATIVE = (r"\b(but|still|not|no|never|however|again|problem|issue|error|fail\w*|broken|wrong|"
             r"can'?t|cannot|won'?t|doesn'?t|didn'?t|isn'?t|aber|noch|pas|pero|todavia)\b|n't\b")
_WORDS = r"[^\W\d_]+(?:'[^\W\d_]+)?"


@functools.cache
def _pattern(source: str) -> re.Pattern[str]:
    return re.compile(source)  # on first use: compiled at import, these cost every start-up ~4 ms


def is_thanks(text: str, config: LifecycleConfig) -> bool:
    """A short thank-you with no question and nothing wrong in it ("Thanks, that fixed it!")."""
    body = " ".join(text.split()).lower()
    if not body or len(body) > config.thanks_max_chars or "?" in body or _pattern(_NEGATIVE).search(body):
        return False
    words = " " + " ".join(_pattern(_WORDS).findall(body)) + " "
    return any(f" {phrase} " in words for phrase in config.thanks_phrases)
