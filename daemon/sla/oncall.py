"""After hours: a P1 pages the week's on-call agent, and the acknowledgement says when a person answers.

``[sla.oncall]`` names a rotation of agents, one a week in turn from ``start`` (a Monday), and
the calendar whose closed hours are "after hours". A new ticket of a paged priority opened while
that calendar is closed mails the week's agent at once (an event records it); any new ticket
whose own policy calendar is closed tells the customer when the office opens again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ticketd.daemon.config_section import Section
from ticketd.daemon.sla.calendar import Calendar, is_open, next_open

if TYPE_CHECKING:
    from ticketd.daemon.commit import Commit
    from ticketd.daemon.sla.config import SlaConfig
    from ticketd.storage.writes import TicketRow

ROTATION_EXPECTED = "a non-empty array of agent addresses, one a week in turn"


@dataclass(frozen=True)
class OnCall:
    rotation: tuple[str, ...]  # agent addresses, one a week
    start: date  # the Monday of the first one's week
    calendar: str  # outside its open hours is "after hours"
    priorities: tuple[str, ...] = ("P1",)  # which new tickets page

    def of_week(self, at: datetime, cal: Calendar) -> str:
        """Who is on call at ``at``: weeks counted in the calendar's own time zone, from ``start``."""
        local = at.astimezone(cal.timezone).date()
        return self.rotation[((local - self.start).days // 7) % len(self.rotation)]


def oncall_config(section: Section, calendars: dict[str, Calendar], priorities: tuple[str, ...]) -> OnCall:
    rotation: list[Any] = section.get("rotation", list, expected=ROTATION_EXPECTED)
    if not rotation or not all(isinstance(a, str) and "@" in a for a in rotation):
        section.fail("rotation", ROTATION_EXPECTED, rotation)
    text = section.get("start", str, expected='the Monday of the first week, like "2026-11-30"')
    try:
        start = date.fromisoformat(text)
    except ValueError:
        start = None
    if start is None or start.weekday() != 0:
        section.fail("start", 'the Monday of the first week, like "2026-11-30"', text)
    calendar = section.get("calendar", str, "office")
    if calendar not in calendars:
        section.fail("calendar", "a calendar of [sla.calendars] (or office, 24x7)", calendar)
    paged: list[Any] = section.get("priorities", list, ["P1"], expected="an array of priorities like [\"P1\"]")
    if not paged or not all(p in priorities for p in paged):
        section.fail("priorities", "an array of priorities like [\"P1\"]", paged)
    section.done()
    return OnCall(tuple(a.strip().lower() for a in rotation), start, calendar, tuple(paged))  # type: ignore[arg-type]


def after_hours(commit: Commit, ticket: TicketRow) -> dict[str, Any]:
    """For a new ticket: page the on-call agent if it is after hours; what the acknowledgement adds."""
    sla: SlaConfig = commit.config.sla
    now = commit.now
    said: dict[str, Any] = {}
    oncall = sla.oncall
    if oncall is not None and ticket.priority in oncall.priorities:
        cal = sla.calendars[oncall.calendar]
        if not is_open(cal, now):
            _page(commit, ticket, oncall.of_week(now, cal))
            said["on_call"] = True
    policy = sla.policy(ticket.priority, ticket.queue)
    cal = sla.calendar(policy)
    if not said and not is_open(cal, now):
        said["answer_from"] = _local(next_open(cal, now), cal)
    return said


def _page(commit: Commit, ticket: TicketRow, agent: str) -> None:
    from ticketd.daemon.notices import notice_draft

    draft = notice_draft(commit.config, agent, f"On call: [#{ticket.number}] {ticket.subject}", [
        f"A {ticket.priority} ticket came in after hours: #{ticket.number}, queue {ticket.queue or 'none'}, "
        f"from {ticket.requester or 'an unknown sender'}.",
        "You are on call this week. Answer its notification to reach the customer."], kind="oncall_page")
    commit._outbound_row(ticket, draft)
    commit.writes.event(ticket.id, "oncall_paged", {"to": agent}, who="system")


def _local(at: datetime, cal: Calendar) -> str:
    local = at.astimezone(cal.timezone)
    return f"{local:%A %d %B, %H:%M} ({cal.timezone.key})"
