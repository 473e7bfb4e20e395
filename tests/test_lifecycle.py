"""The life cycle's decisions: who may move a ticket where, and what time does."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ticketd.daemon.lifecycle import (AUTO_CLOSE, AUTO_SOLVE, PENDING_REMINDER, Change, LifecycleConfig, agent_reply,
                              customer_reply, due_steps, is_thanks)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
CFG = LifecycleConfig()


def reply(status: str, text: str = "It still fails.", closed_ago: timedelta | None = None,
          automatic: bool = False) -> Change:
    closed_at = NOW - closed_ago if closed_ago is not None else None
    return customer_reply(status, closed_at, NOW, CFG, text, automatic)


def test_a_customer_reply_reopens_pending_and_solved_and_leaves_new_and_open() -> None:
    assert reply("new") == Change("new") and reply("open") == Change("open")
    assert reply("pending") == Change("open")  # answered: waiting on us again, not a reopen
    assert reply("solved") == Change("open", reopened=True)


def test_a_closed_ticket_reopens_within_the_window_and_is_followed_up_after_it() -> None:
    assert reply("closed", closed_ago=timedelta(days=1)) == Change("open", reopened=True)
    assert reply("closed", closed_ago=CFG.reopen_window + timedelta(seconds=1)) == Change("closed", follow_up=True)


def test_a_thank_you_on_a_solved_ticket_is_recorded_without_reopening() -> None:
    assert reply("solved", "Thanks, that fixed it!") == Change("solved", thanks=True)
    assert reply("closed", "Thank you very much", closed_ago=timedelta(hours=1)) == Change("closed", thanks=True)


def test_automatic_mail_never_moves_a_ticket() -> None:
    for status in ("pending", "solved", "closed"):
        assert reply(status, automatic=True, closed_ago=timedelta(days=1)) == Change(status)


@pytest.mark.parametrize("text", ["Thanks!", "thank you so much :)", "Thx", "Many thanks, John", "Danke!",
                                  "Merci beaucoup", "Cheers, works now."])
def test_thanks(text: str) -> None:
    assert is_thanks(text, CFG)


@pytest.mark.parametrize("text", ["Thanks, but it still does not work", "Thanks! Can you also reset my password?",
                                  "thanks " * 40, "", "It works", "Thanks, the error is back",
                                  "Thanksgiving order 1234 is missing", "I can't thank you enough but the bill is wrong"])
def test_not_thanks(text: str) -> None:
    assert not is_thanks(text, CFG)


def test_agents_open_new_tickets_and_status_commands_win() -> None:
    assert agent_reply("new", None) == "open"
    assert agent_reply("pending", None) == "pending"
    assert agent_reply("new", "solved") == "solved"


def test_entering_pending_or_solved_schedules_its_timed_steps() -> None:
    assert due_steps("pending", NOW, CFG) == [(PENDING_REMINDER, NOW + timedelta(hours=72)),
                                              (AUTO_SOLVE, NOW + timedelta(days=7))]
    assert due_steps("solved", NOW, CFG) == [(AUTO_CLOSE, NOW + timedelta(days=4))]
    assert due_steps("open", NOW, CFG) == []
