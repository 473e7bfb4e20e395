"""[sla]: the issue's minimum parsed as written, defaults without it, overrides, and each error naming its key."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ticketd.daemon.config_section import ConfigError, Section
from ticketd.daemon.sla.calendar import ALWAYS_OPEN, OFFICE, add_business, parse_hours
from ticketd.daemon.sla.config import DEFAULT, EscalationStep, SlaConfig, sla_config
from ticketd.daemon.sla.policy import DEFAULT_POLICIES, BusinessDays, Policy
from ticketd.daemon.sla.triggers import Triggers

FILE = Path("/etc/ticketd/ticketd.toml")
H = timedelta(hours=1)
MINIMUM = """
[sla.calendars.office]
timezone = "Europe/Berlin"
hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }
holidays = ["2026-12-24", "2026-12-25..2026-12-26"]
country = "DE"                      # optional: public holidays
subdivision = "BY"                  # optional

[sla.policies.P2]
calendar = "office"                 # or "24x7"
first_response = "4h"
next_update = "4h"
resolution = "24h"

[[sla.escalation]]                  # in order: Tier 1 -> Tier 2 -> Engineering -> Management
tier = "Tier 2"
after = "0m"                        # after the breach
notify = ["tier2"]                  # groups or addresses
"""


def loaded(text: str) -> SlaConfig:
    # As daemon/config.py would call it: the [sla] table of the whole file, {} without one.
    return sla_config(Section(FILE, "", tomllib.loads(text)).sub("sla", {}))


def refused(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        loaded(text)
    message = str(caught.value)
    assert message.startswith(f"{FILE}: sla."), message
    return message


def test_the_issue_minimum() -> None:
    config = loaded(MINIMUM)
    office = config.calendars["office"]
    assert office.timezone == ZoneInfo("Europe/Berlin")
    assert office.hours == {day: parse_hours("09:00-18:00") for day in range(5)}
    assert office.holidays == {date(2026, 12, 24), date(2026, 12, 25), date(2026, 12, 26)}
    assert (office.country, office.subdivision) == ("DE", "BY")
    assert config.calendars["24x7"] is ALWAYS_OPEN
    assert config.policies["P2"] == Policy("office", 4 * H, 4 * H, 24 * H)
    assert config.policies["P4"] == DEFAULT_POLICIES["P4"]
    assert config.escalation == (EscalationStep("Tier 2", timedelta(0), ("tier2",)),)
    # Friday 17:00 Berlin + 4 business hours on it: Monday 12:00 (no Saturday in these hours).
    start = datetime(2026, 1, 9, 16, tzinfo=UTC)
    assert add_business(office, start, 4 * H) == datetime(2026, 1, 12, 11, tzinfo=UTC)


def test_without_a_section_the_defaults() -> None:
    assert loaded("") == DEFAULT
    assert DEFAULT.calendars == {"24x7": ALWAYS_OPEN, "office": OFFICE}
    assert DEFAULT.policies == DEFAULT_POLICIES
    assert DEFAULT.escalation == ()


def test_missing_keys_inherit() -> None:
    config = loaded('[sla.policies.P4]\nfirst_response = "8h"\n[sla.calendars.office]\ntimezone = "Europe/Berlin"\n')
    assert config.policies["P4"] == Policy("office", 8 * H, None, BusinessDays(5))
    assert config.calendars["office"].hours == OFFICE.hours  # Saturday 10-16 included
    assert config.calendars["office"].holidays == frozenset()


def test_queue_and_tier_overrides_merge_over_the_global_policy() -> None:
    config = loaded(MINIMUM + """
[sla.queues.billing.P2]
resolution = "8h"
[sla.tiers.gold.P2]
calendar = "24x7"
first_response = "1h"
[sla.tiers.gold.P3]
next_update = "none"
""")
    assert config.queue_policies == {"billing": {"P2": Policy("office", 4 * H, 4 * H, 8 * H)}}
    assert config.tier_policies["gold"] == {"P2": Policy("24x7", 1 * H, 4 * H, 24 * H),
                                            "P3": Policy("office", 8 * H, None, 72 * H)}
    assert config.policy("P2", queue="billing") == config.queue_policies["billing"]["P2"]
    assert config.policy("P2", queue="billing", tier="gold") == config.tier_policies["gold"]["P2"]
    assert config.policy("P1", queue="billing", tier="gold") == config.policies["P1"]
    assert config.calendar(config.policy("P2", tier="gold")) is ALWAYS_OPEN


def test_own_calendar_and_toml_dates_and_lunch_hours() -> None:
    config = loaded("""
[sla.calendars.nights]
timezone = "UTC"
hours = { mon = "09:00-12:00,13:00-18:00", sun = "20:00-24:00" }
holidays = [2026-05-01]
[sla.policies.P3]
calendar = "nights"
""")
    nights = config.calendars["nights"]
    assert nights.hours == {0: parse_hours("09:00-12:00,13:00-18:00"), 6: parse_hours("20:00-24:00")}
    assert nights.holidays == {date(2026, 5, 1)}
    assert config.policies["P3"].calendar_name == "nights"


def test_escalation_steps_in_order() -> None:
    config = loaded("""
[[sla.escalation]]
tier = "Tier 2"
after = "0m"
notify = ["tier2"]
[[sla.escalation]]
tier = "Engineering"
after = "2h"
notify = ["eng", "oncall@example.com"]
""")
    assert [(s.tier, s.after, s.notify) for s in config.escalation] == [
        ("Tier 2", timedelta(0), ("tier2",)), ("Engineering", 2 * H, ("eng", "oncall@example.com"))]


STEP = '[[sla.escalation]]\ntier = "Tier 2"\nafter = "0m"\nnotify = ["tier2"]\n'


def test_triggers_default_on_and_each_can_be_switched_off() -> None:
    default = loaded(STEP).triggers
    assert default == Triggers() and "speak to a manager" in default.manager_phrases and "GDPR" in default.security_words
    assert (default.vip_tiers, default.csat_below, default.unassigned) == (("vip",), 3, True)
    assert (default.repeat_subject_count, default.repeat_subject_days) == (3, 30)
    off = loaded(STEP + "[sla.triggers]\nmanager_phrases = []\nsecurity_words = []\nvip_tiers = []\ncsat_below = 0\n"
                 "unassigned = false\nrepeat_subject_count = 0\n").triggers
    assert off == Triggers((), (), (), 0, False, 0, 30) and off.manager is None and off.security is None
    own = loaded(STEP + '[sla.triggers]\nmanager_phrases = ["Chef  sprechen", "chef sprechen"]\nvip_tiers = ["Gold"]\n'
                 "repeat_subject_days = 7\n").triggers
    # spaces collapsed, repeats dropped, tiers in lower case as [rules.tiers] gives them
    assert (own.manager_phrases, own.vip_tiers, own.repeat_subject_days) == (("Chef sprechen", "chef sprechen"),
                                                                             ("gold",), 7)


def test_an_escalation_step_may_move_the_ticket_to_a_queue() -> None:
    config = loaded(STEP + '[[sla.escalation]]\ntier = "Engineering"\nafter = "2h"\nnotify = ["eng"]\n'
                    'queue = " engineering "\n')
    assert [s.queue for s in config.escalation] == [None, "engineering"]


def _calendar(extra: str) -> str:
    return "[sla.calendars.office]\n" + extra + "\n"


@pytest.mark.parametrize(("text", "message"), [
    (_calendar('timezone = "Europe/Berln"'),
     "sla.calendars.office.timezone: expected an IANA time zone like \"Europe/Berlin\" or \"UTC\", got 'Europe/Berln'"),
    (_calendar('timezone = "../etc"'), "sla.calendars.office.timezone: expected an IANA time zone"),
    (_calendar('hours = { mon = "9-18" }'),
     "sla.calendars.office.hours.mon: expected opening hours like \"09:00-18:00\""),
    (_calendar('hours = { mon = "18:00-09:00" }'), "sla.calendars.office.hours.mon: expected opening hours"
     " like \"09:00-18:00\" or \"09:00-12:00,13:00-18:00\" (24:00 as an end), or \"closed\" (18:00-09:00 ends"
     " before it starts), got '18:00-09:00'"),
    (_calendar('hours = { monday = "09:00-18:00" }'), "sla.calendars.office.hours.monday: unknown key"),
    (_calendar('hours = { mon = "closed" }'), "sla.calendars.office.hours: expected open hours on at least one day"),
    (_calendar('hours = { mon = 9 }'), "sla.calendars.office.hours.mon: expected opening hours"),
    (_calendar('holidays = ["2026-12-32"]'), "sla.calendars.office.holidays[0]: expected a date like \"2026-12-24\""),
    (_calendar('holidays = ["24.12.2026"]'), "sla.calendars.office.holidays[0]: expected a date"),
    (_calendar('holidays = ["2026-12-24", "2026-12-26..2026-12-25"]'),
     "sla.calendars.office.holidays[1]: expected a range whose end is not before its start, got '2026-12-26..2026-12-25'"),
    (_calendar('holidays = ["2026-01-01..2028-01-01"]'), "sla.calendars.office.holidays[0]: expected a range of at most"),
    (_calendar('holidays = ["2026-01-01..2026-01-02..2026-01-03"]'), "sla.calendars.office.holidays[0]: expected a date"),
    (_calendar('holidays = "2026-12-24"'), "sla.calendars.office.holidays: expected an array of dates"),
    (_calendar('country = "XX"'), "sla.calendars.office.country: expected a country code of the holidays package"),
    (_calendar('country = "DE"\nsubdivision = "XY"'), "sla.calendars.office.subdivision: expected a subdivision of DE: BB"),
    (_calendar('subdivision = "BY"'), "sla.calendars.office.subdivision: expected a country with it"),
    (_calendar('colour = "blue"'), "sla.calendars.office.colour: unknown key"),
    ('[sla.calendars.24x7]\ntimezone = "UTC"\n', 'sla.calendars.24x7: expected a calendar name other than "24x7"'),
    ('[sla.policies.P2]\ncalendar = "ofice"\n',
     "sla.policies.P2.calendar: expected one of 24x7 | office, got 'ofice'"),
    ('[sla.policies.P2]\nresolution = "1 day"\n', 'sla.policies.P2.resolution: expected a duration like "30m"'),
    ('[sla.policies.P2]\nresolution = 4\n', 'sla.policies.P2.resolution: expected a duration like "30m"'),
    ('[sla.policies.P2]\nresolution = "0m"\n', 'sla.policies.P2.resolution: expected a duration above 0m'),
    ('[sla.policies.P2]\nresolution = "400d"\n', "sla.policies.P2.resolution: expected a duration above 0m and at most 366d"),
    ('[sla.policies.P2]\nresolution = "0bd"\n', "sla.policies.P2.resolution: expected 1 to 366 business days"),
    ('[sla.policies.P2]\nresponse = "4h"\n', "sla.policies.P2.response: unknown key"),
    ('[sla.policies.P5]\nresolution = "4h"\n', "sla.policies.P5: unknown key"),
    ('[sla.queues.billing.P9]\nresolution = "4h"\n', "sla.queues.billing.P9: unknown key"),
    ('[sla.tiers.gold.P1]\ncalendar = "nowhere"\n', "sla.tiers.gold.P1.calendar: expected one of 24x7 | office"),
    ('[sla.queues]\nbilling = "4h"\n', "sla.queues.billing: expected a table"),
    ('[[sla.escalation]]\ntier = "Tier 2"\nafter = "soon"\nnotify = ["t2"]\n',
     'sla.escalation[0].after: expected a duration like "0m", "30m" or "4h" (after the breach)'),
    ('[[sla.escalation]]\ntier = "Tier 2"\nafter = "none"\nnotify = ["t2"]\n', "sla.escalation[0].after: expected"),
    ('[[sla.escalation]]\ntier = "Tier 2"\nafter = "1h"\nnotify = []\n',
     "sla.escalation[0].notify: expected a non-empty array of group names or addresses"),
    ('[[sla.escalation]]\nafter = "1h"\nnotify = ["t2"]\n', "sla.escalation[0].tier: expected a tier name"),
    ('[[sla.escalation]]\ntier = "Tier 2"\nafter = "1h"\nnotify = ["t2"]\nwho = 1\n', "sla.escalation[0].who: unknown key"),
    ('[[sla.escalation]]\ntier = "Tier 2"\nafter = "2h"\nnotify = ["t2"]\n'
     '[[sla.escalation]]\ntier = "Engineering"\nafter = "1h"\nnotify = ["eng"]\n',
     "sla.escalation[1].after: expected at least the step before's 2h, got '1h'"),
    ('[[sla.escalation]]\ntier = "Tier 2"\nafter = "0m"\nnotify = ["t2"]\n'
     '[[sla.escalation]]\ntier = "Tier 2"\nafter = "1h"\nnotify = ["eng"]\n',
     "sla.escalation[1].tier: expected a tier not named by an earlier step"),
    ('[sla]\nescalation = "tier2"\n', "sla.escalation: expected an array of [[sla.escalation]] tables"),
    ('[[sla.escalation]]\ntier = "Tier 2"\nafter = "0m"\nnotify = ["t2"]\nqueue = " "\n',
     "sla.escalation[0].queue: expected the name of a queue of [queues], got ' '"),
    ('[[sla.escalation]]\ntier = "Tier 2"\nafter = "0m"\nnotify = ["t2"]\nqueue = 2\n',
     "sla.escalation[0].queue: expected the name of a queue of [queues], got 2"),
    ('[sla.triggers]\nvip_tiers = ["vip"]\n',
     "sla.triggers: expected [[sla.escalation]] steps beside it (a trigger raises a ticket along them)"),
    (STEP + '[sla.triggers]\nmanager_phrases = "manager"\n',
     "sla.triggers.manager_phrases: expected an array of phrases (non-empty strings); [] turns it off, got 'manager'"),
    (STEP + '[sla.triggers]\nsecurity_words = ["GDPR", " "]\n',
     "sla.triggers.security_words[1]: expected a phrase (a non-empty string of printable characters), got ' '"),
    (STEP + '[sla.triggers]\nvip_tiers = [1]\n', "sla.triggers.vip_tiers[0]: expected a phrase"),
    (STEP + '[sla.triggers]\ncsat_below = 1\n',
     "sla.triggers.csat_below: expected 0 (off) or a rating from 2 to 5 (a rating below it escalates), got 1"),
    (STEP + '[sla.triggers]\ncsat_below = 6\n', "sla.triggers.csat_below: expected 0 (off) or a rating from 2 to 5"),
    (STEP + '[sla.triggers]\ncsat_below = "3"\n', "sla.triggers.csat_below: expected 0 (off) or a rating from 2 to 5"),
    (STEP + '[sla.triggers]\nunassigned = "yes"\n', "sla.triggers.unassigned: expected true or false, got 'yes'"),
    (STEP + '[sla.triggers]\nrepeat_subject_count = 1\n',
     "sla.triggers.repeat_subject_count: expected 0 (off) or a count of 2 or more (the new ticket included), got 1"),
    (STEP + '[sla.triggers]\nrepeat_subject_days = 0\n',
     "sla.triggers.repeat_subject_days: expected a number of days, 1 to 366, got 0"),
    (STEP + '[sla.triggers]\nmanager = ["boss"]\n', "sla.triggers.manager: unknown key"),
    ('[sla]\ntargets = 1\n', "sla.targets: unknown key"),
])
def test_errors_name_the_key_and_what_was_expected(text: str, message: str) -> None:
    assert message in refused(text)


def test_the_daemon_config_reads_sla_only_when_the_file_has_it(tmp_path: Path) -> None:
    from ticketd.daemon.config import load_config
    from tests.test_config import MINIMUM, write

    assert load_config(write(tmp_path, MINIMUM), environ={}).sla is None
    loaded = load_config(write(tmp_path, MINIMUM + '\n[sla.policies.P2]\nfirst_response = "2h"\n'), environ={})
    assert loaded.sla.policy("P2").first_response == timedelta(hours=2)
    with pytest.raises(ConfigError, match=r"sla\.policies\.P2\.first_respons: unknown key"):
        load_config(write(tmp_path, MINIMUM + '\n[sla.policies.P2]\nfirst_respons = "2h"\n'), environ={})


def test_an_escalation_names_agents_or_groups_and_is_expanded_at_load(tmp_path: Path) -> None:
    from tests.support.desk import ALICE, config

    step = '\n[[sla.escalation]]\ntier = "Tier 2"\nafter = "0m"\nnotify = [{}]\n'
    assert config(tmp_path, step.format(f'"{ALICE.upper()}"')).sla.escalation[0].recipients == (ALICE,)
    with pytest.raises(ConfigError, match=r"sla\.escalation\[0\]\.notify\[0\]: expected a group of \[\[agents\]\]"):
        config(tmp_path, step.format('"tier9"'))


def test_an_escalations_queue_is_one_of_queues_checked_at_load(tmp_path: Path) -> None:
    from tests.support.desk import ALICE, config

    step = f'\n[[sla.escalation]]\ntier = "Tier 2"\nafter = "0m"\nnotify = ["{ALICE}"]\nqueue = "{{}}"\n'
    assert config(tmp_path, step.format("support")).sla.escalation[0].queue == "support"
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, step.format("tier2"))
    assert str(caught.value) == (f"{tmp_path / 'ticketd.toml'}: sla.escalation[0].queue: expected a queue of [queues] "
                                 "(support), got 'tier2'")


def test_the_shipped_examples_sla_section_loads_once_uncommented() -> None:
    example = (Path(__file__).resolve().parents[2] / "examples" / "ticketd.toml").read_text()
    block = example[example.index("# [sla.calendars.office]"):]
    config = loaded("\n".join(line.removeprefix("#").removeprefix(" ") for line in block.splitlines()))
    assert [(s.tier, s.queue) for s in config.escalation] == [("Tier 2", None), ("Engineering", "engineering")]
    assert config.triggers == Triggers()  # the example shows the defaults as they are


def test_a_queue_without_its_own_unassigned_timeout_takes_the_triggers_30_minutes(tmp_path: Path) -> None:
    from tests.support.desk import ALICE, config

    step = f'\n[[sla.escalation]]\ntier = "Tier 2"\nafter = "0m"\nnotify = ["{ALICE}"]\n'
    assert config(tmp_path, step).team.queue("support").unassigned_timeout == 1800
    assert config(tmp_path, "unassigned_timeout = 600\n" + step).team.queue("support").unassigned_timeout == 600
    later = step + '[sla.triggers]\nunassigned_after = "2h"\n'
    assert config(tmp_path, later).team.queue("support").unassigned_timeout == 7200
    off = step + "[sla.triggers]\nunassigned = false\n"
    assert config(tmp_path, off).team.queue("support").unassigned_timeout is None
    assert config(tmp_path, "[sla]\n").team.queue("support").unassigned_timeout is None  # no escalation: no trigger
    with pytest.raises(ConfigError, match=r'sla\.triggers\.unassigned_after: expected a duration like "30m"'):
        config(tmp_path, step + '[sla.triggers]\nunassigned_after = "soon"\n')
