"""Due steps run in batches: one transaction for many steps, and still each step on its own.

Tickets on the 24x7 P1 policy (first response 1 h, warned at 45 min), their steps run by daemon.due on a simulated clock through the real database.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from ticketd.storage.db import database
from ticketd.storage.models import DueStep, Event, OutboundMessage
from tests.support.desk import Desk, config

MIN = timedelta(minutes=1)
SLA = """
[rules]
default_priority = "P1"

[sla]
"""


async def warned() -> list[int]:
    """Numbers of the tickets with a first-response warning, in order."""
    ids = await Event.filter(what="sla_warning").order_by("ticket_id").values_list("ticket__number", flat=True)
    return list(ids)


async def test_two_steps_of_one_ticket_due_in_one_batch_both_fire_once(tmp_path: Path) -> None:
    same = SLA + '[sla.policies.P1]\ncalendar = "24x7"\nfirst_response = "4h"\nresolution = "4h"\n'
    async with database((cfg := config(tmp_path, same)).database_url):
        desk = Desk(cfg)
        await desk.customer("The site is down.")
        # Both warnings due at 3 h: one batch runs both, the ticket's clock read once for the two.
        assert await desk.later(185 * MIN) == 2
        targets = await Event.filter(what="sla_warning").values_list("detail", flat=True)
        assert sorted(d["target"] for d in targets) == ["first_response", "resolution"]
        # The breaches that follow were scheduled from the clock with both warnings counted.
        undone = await DueStep.filter(done_at=None, kind__startswith="sla_").values_list("kind", flat=True)
        assert sorted(undone) == ["sla_breach:first_response", "sla_breach:resolution"]
        assert await desk.later(54 * MIN) == 0
        assert await desk.later(2 * MIN) == 2 and await desk.later(MIN) == 0  # both breaches at 4 h, once
        assert await desk.sent("sla_warning") == 2 and await desk.sent("sla_breach") == 2


async def test_a_write_that_fails_at_the_end_of_a_batch_costs_only_its_own_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ticketd.daemon import notices

    async with database((cfg := config(tmp_path, SLA)).database_url):
        desk = Desk(cfg)
        for _ in range(3):
            await desk.customer("The site is down.")
        taken = (await OutboundMessage.filter(kind="acknowledgement").first()).message_id  # type: ignore[union-attr]
        real = notices.sla_draft

        def clashing(config, address, name, ticket, subject, **values):  # type: ignore[no-untyped-def]
            draft = real(config, address, name, ticket, subject, **values)
            # Ticket 2's warning reuses a stored Message-ID: its INSERT fails with the others' rows.
            return dataclasses.replace(draft, message_id=taken) if ticket.number == 2 else draft

        monkeypatch.setattr(notices, "sla_draft", clashing)
        assert await desk.later(50 * MIN) == 2
        assert await warned() == [1, 3]
        assert await desk.sent("sla_warning") == 2
        left = await DueStep.filter(done_at=None, kind="sla_warn:first_response").values_list("ticket__number",
                                                                                               flat=True)
        assert list(left) == [2]  # rolled back with its write: still due, tried again next pass
        monkeypatch.setattr(notices, "sla_draft", real)
        assert await desk.later(MIN) == 1
        assert await warned() == [1, 2, 3] and await desk.sent("sla_warning") == 3


async def test_a_step_that_raises_is_left_due_and_the_batch_runs_without_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ticketd.daemon.sla import fire

    async with database((cfg := config(tmp_path, SLA)).database_url):
        desk = Desk(cfg)
        for _ in range(3):
            await desk.customer("The site is down.")
        real = fire.fire

        async def broken_for_the_first(commit, kind, ticket, *rest):  # type: ignore[no-untyped-def]
            if ticket.number == 1:
                raise RuntimeError("a row no code expects")
            return await real(commit, kind, ticket, *rest)

        monkeypatch.setattr(fire, "fire", broken_for_the_first)
        assert await desk.later(50 * MIN) == 2
        assert await warned() == [2, 3]
        # Nothing of #1's attempt stayed: no event, no mail, its step undone.
        assert await desk.sent("sla_warning") == 2
        assert await DueStep.filter(done_at=None, kind="sla_warn:first_response").count() == 1
        monkeypatch.setattr(fire, "fire", real)
        assert await desk.later(MIN) == 1 and await warned() == [1, 2, 3]
