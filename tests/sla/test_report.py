"""The period report's figures on a fixture of tickets whose figures were computed by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ticketd.daemon.sla.config import DEFAULT
from ticketd.daemon.sla.report import HEALTH, build, nearest_rank
from ticketd.daemon.sla.report_cli import human
from ticketd.daemon.sla.report_html import render
from ticketd.storage.db import database
from ticketd.storage.models import Event, Ticket
from tests.support import backend

H = timedelta(hours=1)
SINCE, UNTIL = datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC)  # 3 days
NOW = datetime(2026, 11, 10, tzinfo=UTC)


def at(day: int, hour: int, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


async def _ticket(number: int, created: datetime, priority: str, status: str, first: timedelta | None = None,
                  solved: datetime | None = None, closed: datetime | None = None, reopens: int = 0,
                  csat: int | None = None, replies: int = 0, events: tuple[tuple[str, Any, datetime], ...] = ()) \
        -> None:
    ticket = await Ticket.create(number=number, subject=f"ticket {number}", requester="ann@example.org",
                                 status=status, priority=priority, created_at=created, solved_at=solved,
                                 first_response_at=created + first if first else None, closed_at=closed,
                                 reopen_count=reopens, csat=csat, agent_replies=replies)
    for what, detail, when in events:
        await Event.create(ticket=ticket, what=what, detail=detail, at=when, who="system")


def change(old: str, new: str, when: datetime, reopened: bool = False) -> tuple[str, Any, datetime]:
    return "status_changed", {"from": old, "to": new, **({"reopened": True} if reopened else {})}, when


def breach(target: str, when: datetime) -> tuple[str, Any, datetime]:
    return "sla_breach", {"target": target, "due": when.isoformat()}, when


async def fixture() -> None:
    """Ten tickets around the period [11-02, 11-05): six created in it (#1-#6)."""
    await _ticket(1, at(2, 9), "P1", "closed", 30 * H / 60, solved=at(2, 12), closed=at(4, 12), csat=5, replies=1)
    await _ticket(2, at(2, 10), "P1", "solved", 2 * H, solved=at(3, 16), csat=3, replies=2, events=(
        breach("first_response", at(2, 11)), ("escalated", {"tier": "Tier 2", "target": "first_response"}, at(2, 11)),
        breach("resolution", at(2, 14))))
    await _ticket(3, at(3, 8), "P2", "solved", H, solved=at(3, 13), reopens=1, csat=4, replies=1, events=(
        change("open", "solved", at(3, 11)), change("solved", "open", at(3, 12), True),
        change("open", "solved", at(3, 13))))
    await _ticket(4, at(3, 9), "P2", "open", 6 * H, replies=1, events=(
        ("sla_warning", {"target": "first_response"}, at(3, 12)), breach("first_response", at(3, 13)),
        ("escalated", {"tier": "Tier 2", "target": "first_response"}, at(3, 13))))
    # First answered and solved after the period: its first response counts, its solve does not.
    await _ticket(5, at(4, 10), "P4", "solved", 20 * H, solved=at(6, 10), replies=1)
    await _ticket(6, at(4, 23), "P4", "new")
    # Before the period: #7 solved in it (and escalated before it), #8 solved before it and
    # reopened after it (not in the backlog at until), #9 still pending (in the backlog).
    await _ticket(7, at(30, 12, 10), "P3", "solved", 4 * H, solved=at(2, 15), csat=2, replies=1,
                  events=(("escalated", {"tier": "Tier 2"}, at(31, 12, 10)),))
    await _ticket(8, at(31, 10, 10), "P2", "open", H, solved=at(1, 10), reopens=1, replies=2, events=(
        change("new", "open", at(31, 11, 10)), change("open", "solved", at(1, 10)),
        change("solved", "open", at(6, 9), True)))
    await _ticket(9, at(25, 10, 10), "P3", "pending", H, replies=1)
    await _ticket(10, at(5, 0), "P1", "new")  # at until: outside the period (until is exclusive)


# By hand. New: #1-#6 = 6. Solved in [11-02, 11-05): #1 (11-02 12h), #2 (11-03 16h), #3 (11-03 13h),
# #7 (11-02 15h) = 4. Backlog at until: #4 (open), #5 (solved only on 11-06), #6 (new), #9 (pending)
# = 4 (#3's and #8's histories say solved at until). Daily new 6/3 = 2.0; backlog ratio 4/2 = 2.0.
# First responses (s): #1 1800, #3 3600, #2 7200, #4 21600, #5 72000: mean 106200/5 = 21240.0,
# median rank ceil(2.5) = 3 -> 7200, p95 rank ceil(4.75) = 5 -> 72000.
# Resolution (s): #1 3h = 10800, #3 5h = 18000, #2 30h = 108000, #7 75h = 270000: mean 406800/4 =
# 101700.0, median rank 2 -> 18000, p95 rank ceil(3.8) = 4 -> 270000.
# Escalated in the period: #2, #4 (not #7): 2/6 = 0.3333. Reopened: #3: 1/6 = 0.1667.
# FCR: #1 and #7 (one reply, no reopen; #2 had two replies, #3 a reopen): 2/4 = 0.5.
# CSAT of the solved: 5, 3, 4, 2: 2 of 4 satisfied = 0.5, mean 14/4 = 3.5.
EXPECTED_VOLUME = {"new": 6, "solved": 4, "backlog": 4, "daily_new": 2.0, "backlog_ratio": 2.0, "per_day": [
    {"date": "2026-11-02", "new": 2, "solved": 2}, {"date": "2026-11-03", "new": 2, "solved": 2},
    {"date": "2026-11-04", "new": 2, "solved": 0}]}
EXPECTED_FIRST = {"count": 5, "mean": 21240.0, "median": 7200.0, "p95": 72000.0, "histogram": [
    {"label": "< 1 h", "upto": 3600.0, "count": 1}, {"label": "1–4 h", "upto": 14400.0, "count": 2},
    {"label": "4–8 h", "upto": 28800.0, "count": 1}, {"label": "8–24 h", "upto": 86400.0, "count": 1},
    {"label": "1–3 d", "upto": 259200.0, "count": 0}, {"label": "> 3 d", "upto": None, "count": 0}]}
EXPECTED_RESOLUTION = {"count": 4, "mean": 101700.0, "median": 18000.0, "p95": 270000.0}
# Health: first response 5.9 h and resolution 28.25 h warn; CSAT 50 % is critical; FCR 50 % is
# on the boundary (a warning); a backlog of 2 days warns; 33 % escalated is critical.
EXPECTED_HEALTH = {"first_response": "warning", "resolution": "warning", "csat": "critical", "fcr": "warning",
                   "backlog": "warning", "escalation": "critical"}


def rate(met: int, breached: int) -> dict[str, Any]:
    return {"met": met, "breached": breached, "rate": round(met / (met + breached), 4) if met + breached else None}


NONE = rate(0, 0)
# SLA per ticket of the period: #1 all met. #2 first response and resolution breached, next update
# met (solved). #3 all met. #4 first response breached, the others undecided (open). #5 (P4) all met
# (solved after the period: as stored). #6 nothing decided.
EXPECTED_SLA = {
    "P1": {"first_response": rate(1, 1), "next_update": rate(2, 0), "resolution": rate(1, 1)},
    "P2": {"first_response": rate(1, 1), "next_update": rate(1, 0), "resolution": rate(1, 0)},
    "P3": {"first_response": NONE, "next_update": NONE, "resolution": NONE},
    "P4": {"first_response": rate(1, 0), "next_update": rate(1, 0), "resolution": rate(1, 0)},
    "all": {"first_response": rate(3, 2), "next_update": rate(4, 0), "resolution": rate(3, 1)}}


async def test_the_report_has_the_hand_computed_figures(tmp_path: Path) -> None:
    async with database(backend.url(tmp_path / "t.db")):
        await fixture()
        report = await build(SINCE, UNTIL, NOW)
    assert (report["since"], report["until"], report["generated_at"], report["days"]) == (
        "2026-11-02T00:00:00+00:00", "2026-11-05T00:00:00+00:00", "2026-11-10T00:00:00+00:00", 3.0)
    assert report["volume"] == EXPECTED_VOLUME
    assert report["first_response"] == EXPECTED_FIRST
    assert report["resolution"] == EXPECTED_RESOLUTION
    assert report["escalation"] == {"count": 2, "rate": 0.3333}
    assert report["reopen"] == {"count": 1, "rate": 0.1667}
    assert report["fcr"] == {"count": 2, "rate": 0.5}
    assert report["csat"] == {"rated": 4, "satisfied": 2, "rate": 0.5, "mean": 3.5}
    assert report["sla"] == EXPECTED_SLA  # no [sla] given, but the tickets have SLA events
    assert report["health"] == EXPECTED_HEALTH
    assert set(report) == {"since", "until", "generated_at", "days", "volume", "first_response", "resolution",
                           "sla", "escalation", "reopen", "fcr", "csat", "health"}


async def test_the_policy_leaves_out_targets_a_priority_does_not_have(tmp_path: Path) -> None:
    async with database(backend.url(tmp_path / "t.db")):
        await fixture()
        report = await build(SINCE, UNTIL, NOW, DEFAULT)
    # The default P4 policy has no next update: #5's is not counted.
    assert report["sla"]["P4"] == {"first_response": rate(1, 0), "next_update": NONE, "resolution": rate(1, 0)}
    assert report["sla"]["all"]["next_update"] == rate(3, 0)


async def test_without_sla_events_or_section_compliance_is_null_and_an_empty_period_has_no_figures(
        tmp_path: Path) -> None:
    async with database(backend.url(tmp_path / "t.db")):
        await _ticket(1, at(2, 9), "P1", "open", H, replies=1)
        plain = await build(SINCE, UNTIL, NOW)
        empty = await build(at(1, 0, 12), at(2, 0, 12), NOW)
    assert plain["sla"] is None and plain["first_response"]["mean"] == 3600.0
    assert plain["health"]["resolution"] is None and plain["resolution"]["median"] is None
    assert empty["volume"]["new"] == 0 and empty["volume"]["backlog"] == 1  # #1 is still open
    assert empty["volume"]["backlog_ratio"] is None and empty["health"]["backlog"] == "critical"
    assert empty["first_response"]["mean"] is None and empty["csat"]["rate"] is None


def test_the_health_bands_put_each_boundary_in_the_warning() -> None:
    judged = {name: [band.judge(v) for v in values] for name, band, values in (
        ("first_response", HEALTH["first_response"], (14399, 14400, 86400, 86401)),
        ("resolution", HEALTH["resolution"], (86399, 86400, 259200, 259201)),
        ("csat", HEALTH["csat"], (0.8501, 0.85, 0.70, 0.6999)), ("fcr", HEALTH["fcr"], (0.7001, 0.70, 0.50, 0.4999)),
        ("backlog", HEALTH["backlog"], (0.99, 1, 3, 3.01)),
        ("escalation", HEALTH["escalation"], (0.1499, 0.15, 0.30, 0.3001)))}
    assert judged == {name: ["healthy", "warning", "warning", "critical"] for name in judged}
    assert HEALTH["csat"].judge(None) is None


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(1, 21)]  # 1..20
    assert (nearest_rank(values, 50), nearest_rank(values, 95), nearest_rank(values, 100)) == (10.0, 19.0, 20.0)
    assert nearest_rank([7.0], 95) == 7.0 and nearest_rank([], 50) is None
    assert nearest_rank([1.0, 2.0], 50) == 1.0  # the lower middle: every figure is one of the values


async def test_the_text_table_and_the_html_show_the_figures_escaped(tmp_path: Path) -> None:
    async with database(backend.url(tmp_path / "t.db")):
        await fixture()
        report = await build(SINCE, UNTIL, NOW)
    text = human(report)
    assert "first response  mean 5h54m  median 2h00m  p95 20h00m  (5 tickets)" in text
    assert "backlog         4 (2.0 days of new tickets)" in text and "critical" in text
    page = render(report)
    for chart in ("volume", "first-response", "compliance"):
        assert page.count(f'data-chart="{chart}"') == 1
    assert page.count("<svg") == 3 and "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    report["since"] = "<b>&"
    assert "<b>&" not in render(report) and "&lt;b&gt;&amp;" in render(report)
