"""The ``[sla]`` section: business calendars, targets per priority, queue and tier overrides, escalation.

``[[sla.escalation]]`` is the escalation matrix, in order (Tier 1 -> Tier 2 -> Engineering ->
Management); a ticket's level is the number of its steps it has climbed (daemon.sla.escalate)::

    [[sla.escalation]]
    tier = "Tier 2"          # the name mail and `tickets show` give the tier
    after = "0m"             # after a target's breach (wall-clock time): when this step fires
    notify = ["tier2"]       # groups of [[agents]] or agents' addresses: the tier's people
    queue = "tier2"          # optional: a queue of [queues] the ticket moves to on reaching the tier

``[sla.triggers]`` (daemon.sla.triggers) names what else escalates a ticket one tier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ticketd.daemon.config_section import Section
from ticketd.daemon.sla.calendar import ALWAYS_OPEN, HOURS_EXPECTED, OFFICE, OFFICE_HOURS, WEEKDAYS, Calendar, parse_hours
from ticketd.daemon.sla.policy import (DEFAULT_POLICIES, DURATION_EXPECTED, MAX_BUSINESS_DAYS, MAX_TARGET, PRIORITIES,
                               TARGETS, BusinessDays, Policy, Target, format_duration, parse_duration)
from ticketd.daemon.sla.triggers import Triggers, triggers_config

BUILT_IN = "24x7"  # always open; cannot be redefined
DATE_EXPECTED = 'a date like "2026-12-24" or a range like "2026-12-25..2026-12-26"'
HOLIDAYS_EXPECTED = 'an array of dates like "2026-12-24" and ranges like "2026-12-25..2026-12-26"'
MAX_HOLIDAY_RANGE = 366  # days; a longer range is a typo in a year
_DATE = re.compile(r"\d{4}-\d\d-\d\d")
AFTER_EXPECTED = 'a duration like "0m", "30m" or "4h" (after the breach)'


@dataclass(frozen=True)
class EscalationStep:
    tier: str  # who takes the ticket over, e.g. "Tier 2"
    after: timedelta  # after the breach
    notify: tuple[str, ...]  # group names or addresses
    recipients: tuple[str, ...] = ()  # notify expanded to agents' addresses (``with_team``)
    queue: str | None = None  # the queue of [queues] the ticket moves to on reaching this tier


@dataclass(frozen=True)
class SlaConfig:
    calendars: dict[str, Calendar]  # always holds "24x7" and "office"
    policies: dict[str, Policy]  # P1..P4, every one present
    queue_policies: dict[str, dict[str, Policy]]  # queue -> the priorities it overrides, merged
    tier_policies: dict[str, dict[str, Policy]]  # tier -> the priorities it overrides, merged
    escalation: tuple[EscalationStep, ...] = ()  # in order, each `after` at least the one before
    oncall: Any = None  # daemon.sla.oncall.OnCall ([sla.oncall]), None: nobody is paged after hours
    triggers: Triggers = field(default_factory=Triggers)  # [sla.triggers]: what else escalates a ticket

    def policy(self, priority: str, queue: str | None = None, tier: str | None = None) -> Policy:
        """The most specific policy: the tier's, else the queue's, else the global one."""
        for table, name in ((self.tier_policies, tier), (self.queue_policies, queue)):
            found = table.get(name, {}).get(priority) if name is not None else None
            if found is not None:
                return found
        return self.policies[priority]

    def calendar(self, policy: Policy) -> Calendar:
        return self.calendars[policy.calendar_name]


DEFAULT = SlaConfig({BUILT_IN: ALWAYS_OPEN, "office": OFFICE}, dict(DEFAULT_POLICIES), {}, {})


def sla_config(section: Section) -> SlaConfig:
    """Read ``[sla]``; without it (or any of its tables) the issue's defaults apply."""
    calendars = _calendars(section.sub("calendars", {}))
    policies = _policies(section.sub("policies", {}), DEFAULT_POLICIES, calendars)
    queues = _overrides(section.sub("queues", {}), policies, calendars)
    tiers = _overrides(section.sub("tiers", {}), policies, calendars)
    escalation = _escalation(section)
    if "triggers" in section.data and not escalation:
        section.fail("triggers", "[[sla.escalation]] steps beside it (a trigger raises a ticket along them)")
    triggers = triggers_config(section.sub("triggers", {}))
    oncall = None
    if "oncall" in section.data:
        from ticketd.daemon.sla.oncall import oncall_config

        oncall = oncall_config(section.sub("oncall"), calendars, PRIORITIES)
    section.done()
    return SlaConfig(calendars, policies, queues, tiers, escalation, oncall, triggers)


def with_team(sla: SlaConfig, file: Path, team: Any) -> SlaConfig:
    """``sla`` checked against the agents and queues (daemon.config_agents.Team, None without any).

    Names that are no agent, group or queue stop start-up here, not at a breach.
    """
    from ticketd.daemon.config_agents import expand_notify

    for address in sla.oncall.rotation if sla.oncall is not None else ():
        if team is None or team.agent_by_address(address) is None:  # pages go to agents, as notices do
            Section(file, "sla.oncall", {}).fail("rotation", "agent addresses of [[agents]]", address)
    agents = team.agents if team is not None else ()
    queues = sorted(q.name for q in team.queues) if team is not None else []
    steps = []
    for i, step in enumerate(sla.escalation):
        where = Section(file, f"sla.escalation[{i}]", {})
        if step.queue is not None and step.queue not in queues:
            where.fail("queue", f"a queue of [queues] ({', '.join(queues) or 'none is configured'})", step.queue)
        steps.append(replace(step, recipients=expand_notify(where, "notify", step.notify, agents)[1]))
    return replace(sla, escalation=tuple(steps))


def unassigned_default(team: Any, sla: SlaConfig | None) -> Any:
    """The team with ``[sla.triggers] unassigned_after`` as the timeout of the queues that set none.

    A ticket nobody took is an escalation trigger (30 minutes by default), which needs the queue's
    timed report; a queue's own ``unassigned_timeout`` wins.
    """
    if team is None or sla is None or not sla.escalation or not sla.triggers.unassigned:
        return team
    seconds = sla.triggers.unassigned_after.total_seconds()
    queues = tuple(q if q.unassigned_timeout else replace(q, unassigned_timeout=seconds) for q in team.queues)
    return replace(team, queues=queues)


def _calendars(section: Section) -> dict[str, Calendar]:
    calendars = {BUILT_IN: ALWAYS_OPEN, "office": OFFICE}
    for name in section.data:
        if name == BUILT_IN:
            section.fail(name, f'a calendar name other than "{BUILT_IN}" (built in: always open)')
        calendars[name] = _calendar(section.sub(name))
    section.done()
    return calendars


def _calendar(section: Section) -> Calendar:
    zone = _timezone(section)
    hours = _hours(section.sub("hours")) if "hours" in section.data else OFFICE_HOURS
    days = _holidays(section)
    country, subdivision = _country(section)
    section.done()
    try:
        return Calendar(zone, hours, days, country=country, subdivision=subdivision)
    except ValueError:  # the only check left to it: not one open minute in the week
        section.fail("hours", "open hours on at least one day of the week")
        raise AssertionError("unreachable") from None


def _timezone(section: Section) -> ZoneInfo:
    expected = 'an IANA time zone like "Europe/Berlin" or "UTC"'
    name = section.get("timezone", str, "UTC", expected=expected)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):  # ValueError: "", "../x", absolute paths
        section.fail("timezone", expected, name)
        raise AssertionError("unreachable") from None


def _hours(section: Section) -> dict[int, tuple[Any, ...]]:
    """Days not named are closed all day."""
    hours = {}
    for weekday, name in enumerate(WEEKDAYS):
        text = section.get(name, str, None, expected=HOURS_EXPECTED)
        if text is None:
            continue
        try:
            hours[weekday] = parse_hours(text)
        except ValueError as exc:
            why = "" if str(exc) == HOURS_EXPECTED else f" ({exc})"
            section.fail(name, HOURS_EXPECTED + why, text)
    section.done()  # "monday" or "Mon" stops here, named
    return hours


def _holidays(section: Section) -> frozenset[date]:
    values: list[Any] = section.get("holidays", list, [], expected=HOLIDAYS_EXPECTED)
    days: set[date] = set()
    for i, value in enumerate(values):
        first, last = _holiday_range(section, f"holidays[{i}]", value)
        days.update(first + timedelta(days=n) for n in range((last - first).days + 1))
    return frozenset(days)


def _holiday_range(section: Section, key: str, value: Any) -> tuple[date, date]:
    # TOML's own dates (holidays = [2026-12-24]) are dates already.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value, value
    if not isinstance(value, str):
        section.fail(key, DATE_EXPECTED, value)
    parts = [_date(section, key, part.strip(), value) for part in value.split("..")]
    if len(parts) > 2:
        section.fail(key, DATE_EXPECTED, value)
    first, last = parts[0], parts[-1]
    if last < first:
        section.fail(key, "a range whose end is not before its start", value)
    if (last - first).days >= MAX_HOLIDAY_RANGE:
        section.fail(key, f"a range of at most {MAX_HOLIDAY_RANGE} days", value)
    return first, last


def _date(section: Section, key: str, text: str, value: str) -> date:
    try:
        if _DATE.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:  # 2026-02-30
        pass
    section.fail(key, DATE_EXPECTED, value)
    raise AssertionError("unreachable")


def _country(section: Section) -> tuple[str | None, str | None]:
    country = section.get("country", str, None, expected='a country code like "DE"')
    subdivision = section.get("subdivision", str, None, expected='a subdivision code like "BY"')
    if country is None:
        if subdivision is not None:
            section.fail("subdivision", 'a country with it (country = "DE")', subdivision)
        return None, None
    import holidays  # ~100 ms: only for calendars with public holidays

    supported = holidays.list_supported_countries()
    if country not in supported:
        section.fail("country", 'a country code of the holidays package, like "DE" or "AT"', country)
    if subdivision is not None and subdivision not in supported[country]:
        section.fail("subdivision", f"a subdivision of {country}: " + " | ".join(supported[country]), subdivision)
    return country, subdivision


def _policies(section: Section, bases: dict[str, Policy], calendars: dict[str, Calendar]) -> dict[str, Policy]:
    """Every priority, each key missing from a table taken from ``bases``."""
    policies = {prio: _policy(section.sub(prio, {}), bases[prio], calendars) for prio in PRIORITIES}
    section.done()  # "P5" or "p1" stops here
    return policies


def _overrides(section: Section, policies: dict[str, Policy],
               calendars: dict[str, Calendar]) -> dict[str, dict[str, Policy]]:
    """[sla.queues.NAME.P1] / [sla.tiers.NAME.P1]: only the priorities named, merged over the global ones."""
    result = {}
    for name in section.data:
        table = section.sub(name)
        result[name] = {prio: _policy(table.sub(prio), policies[prio], calendars)
                        for prio in PRIORITIES if prio in table.data}
        table.done()
    section.done()
    return result


def _policy(section: Section, base: Policy, calendars: dict[str, Calendar]) -> Policy:
    name = section.get("calendar", str, base.calendar_name,
                       expected=f'a calendar name ("{BUILT_IN}" or a [sla.calendars.NAME] table)')
    if name not in calendars:
        section.fail("calendar", "one of " + " | ".join(calendars), name)
    targets = {key: _target(section, key, getattr(base, key)) for key in TARGETS}
    section.done()
    return Policy(name, **targets)


def _target(section: Section, key: str, default: Target | None) -> Target | None:
    text = section.get(key, str, None, expected=DURATION_EXPECTED)
    if text is None:
        return default
    try:
        target = parse_duration(text)
    except ValueError:
        section.fail(key, DURATION_EXPECTED, text)
        raise AssertionError("unreachable") from None
    if isinstance(target, BusinessDays) and not 0 < target.days <= MAX_BUSINESS_DAYS:
        section.fail(key, f"1 to {MAX_BUSINESS_DAYS} business days", text)
    if isinstance(target, timedelta) and not timedelta(0) < target <= MAX_TARGET:
        # 0 would breach at creation; "none" says "no target" instead.
        section.fail(key, f'a duration above 0m and at most {MAX_TARGET.days}d, or "none"', text)
    return target


def _escalation(section: Section) -> tuple[EscalationStep, ...]:
    raw: list[Any] = section.get("escalation", list, [], expected="an array of [[sla.escalation]] tables")
    steps: list[EscalationStep] = []
    for i, item in enumerate(raw):
        table = Section(section.file, section.key(f"escalation[{i}]"), item)
        step = _step(table)
        if steps and step.after < steps[-1].after:  # the order is the order of escalation
            table.fail("after", f"at least the step before's {format_duration(steps[-1].after)}", item["after"])
        if any(s.tier == step.tier for s in steps):
            table.fail("tier", "a tier not named by an earlier step", step.tier)
        steps.append(step)
    return tuple(steps)


def _step(section: Section) -> EscalationStep:
    tier = section.get("tier", str, expected='a tier name like "Tier 2"').strip()
    if not tier:
        section.fail("tier", 'a tier name like "Tier 2"', tier)
    text = section.get("after", str, expected=AFTER_EXPECTED)
    try:
        after = parse_duration(text)
    except ValueError:
        after = None
    if not isinstance(after, timedelta) or after > MAX_TARGET:
        section.fail("after", AFTER_EXPECTED, text)
    notify: list[Any] = section.get("notify", list, expected="an array of group names or addresses")
    if not notify or not all(isinstance(n, str) and n.strip() for n in notify):
        section.fail("notify", "a non-empty array of group names or addresses", notify)
    queue = section.get("queue", str, None, expected="the name of a queue of [queues]")
    if queue is not None and not queue.strip():
        section.fail("queue", "the name of a queue of [queues]", queue)
    section.done()
    return EscalationStep(tier, after, tuple(n.strip() for n in notify),  # type: ignore[arg-type]
                          queue=queue.strip() if queue is not None else None)
