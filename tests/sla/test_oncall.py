"""After hours: a P1 pages the week's on-call agent; the acknowledgement says when a person answers."""

from __future__ import annotations

import tomllib
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ticketd.daemon.config_section import ConfigError, Section
from ticketd.daemon.sla.calendar import OFFICE
from ticketd.daemon.sla.oncall import OnCall, oncall_config
from ticketd.daemon.sla.policy import PRIORITIES
from ticketd.storage.db import database
from ticketd.storage.models import Event, OutboundMessage
from tests.support.desk import ALICE, Desk, config

BERLIN = ZoneInfo("Europe/Berlin")
BOB = "bob@example.test"
TEAM = f"""
[[agents]]
name = "Bob Second"
address = "{BOB}"
"""
OFFICE_BERLIN = """
[sla.calendars.office]
timezone = "Europe/Berlin"
hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }
"""
ONCALL = f"""
[sla.oncall]
rotation = ["{ALICE}", "{BOB}"]
start = "2026-11-30"
"""


def _rules(priority: str) -> str:
    return f'\n[rules]\ndefault_priority = "{priority}"\n'


def test_the_week_is_counted_in_the_calendars_own_time_zone() -> None:
    oncall = OnCall((ALICE, BOB), date(2026, 11, 30), "office")
    berlin = OFFICE.__class__(BERLIN, OFFICE.hours)
    sunday_night = datetime(2026, 12, 6, 3, 0, tzinfo=BERLIN)  # still the first week (Mon 30 Nov - Sun 6 Dec)
    assert oncall.of_week(sunday_night, berlin) == ALICE
    # Sunday 23:30 UTC is already Monday 00:30 in Berlin: the second week, Bob's.
    assert oncall.of_week(datetime(2026, 12, 6, 23, 30, tzinfo=timezone.utc), berlin) == BOB
    assert oncall.of_week(datetime(2026, 12, 14, 10, 0, tzinfo=BERLIN), berlin) == ALICE  # in turn again


@pytest.mark.parametrize(("text", "message"), [
    ('rotation = []\nstart = "2026-11-30"', "sla.oncall.rotation: expected a non-empty array of agent addresses"),
    ('rotation = ["a@example.test"]\nstart = "2026-12-01"', "sla.oncall.start: expected the Monday of the first week"),
    ('rotation = ["a@example.test"]\nstart = "2026-11-30"\ncalendar = "shop"', "sla.oncall.calendar: expected a calendar"),
    ('rotation = ["a@example.test"]\nstart = "2026-11-30"\npriorities = ["P5"]', "sla.oncall.priorities: expected"),
    ('rotation = ["a@example.test"]\nstart = "2026-11-30"\nwho = 1', "sla.oncall.who: unknown key"),
])
def test_a_broken_oncall_table_names_its_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        oncall_config(Section(Path("t.toml"), "sla.oncall", tomllib.loads(text)), {"office": OFFICE}, PRIORITIES)


def test_the_rotation_holds_agents_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sla\.oncall\.rotation: expected agent addresses of \[\[agents\]\], "
                                          r"got 'carol@example.test'"):
        config(tmp_path, '\n[sla.oncall]\nrotation = ["carol@example.test"]\nstart = "2026-11-30"\n')


async def _ticket_at(tmp_path: Path, more: str, at: datetime) -> tuple[list[dict], str]:  # type: ignore[type-arg]
    async with database((cfg := config(tmp_path, TEAM + more)).database_url):
        desk = Desk(cfg)
        desk.clock.now = at
        await desk.customer("The shop is down.")
        pages = await OutboundMessage.filter(kind="oncall_page").values("recipients", "created_at")
        [ack] = await OutboundMessage.filter(kind="acknowledgement").values_list("raw_bytes", flat=True)
        assert await Event.filter(what="oncall_paged").count() == len(pages)
    return pages, ack.decode()


async def test_a_p1_at_three_on_a_sunday_morning_pages_that_weeks_agent(tmp_path: Path) -> None:
    pages, ack = await _ticket_at(tmp_path, _rules("P1") + OFFICE_BERLIN + ONCALL,
                                  datetime(2026, 12, 13, 3, 0, tzinfo=BERLIN))  # Sunday of the second week
    assert [p["recipients"] for p in pages] == [[BOB]]
    assert "our on-call engineer has been alerted" in ack


async def test_a_p1_in_office_hours_pages_nobody(tmp_path: Path) -> None:
    pages, ack = await _ticket_at(tmp_path, _rules("P1") + OFFICE_BERLIN + ONCALL,
                                  datetime(2026, 12, 14, 10, 0, tzinfo=BERLIN))  # Monday 10:00
    assert pages == [] and "office is closed" not in ack


async def test_a_p2_on_saturday_is_told_when_the_office_opens(tmp_path: Path) -> None:
    pages, ack = await _ticket_at(tmp_path, _rules("P2") + OFFICE_BERLIN + ONCALL,
                                  datetime(2026, 12, 5, 11, 0, tzinfo=BERLIN))
    assert pages == []  # only P1 pages
    assert "a person will answer from Monday 07 December, 09:00 (Europe/Berlin)." in ack
