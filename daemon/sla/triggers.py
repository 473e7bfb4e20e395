"""Escalation triggers besides a breach, read from ``[sla.triggers]``; the pure part: config, matching, subjects.

Each trigger raises a ticket one tier of ``[[sla.escalation]]``, at most once per ticket (its
``escalated`` event names the trigger); they run only when ``[[sla.escalation]]`` has steps::

    [sla.triggers]
    manager_phrases = ["speak to a manager", "supervisor", "escalate", ...]  # [] turns it off
    security_words = ["data breach", "security incident", "GDPR", ...]      # [] turns it off
    vip_tiers = ["vip"]          # customer tiers of [rules.tiers] whose new tickets escalate; [] off
    csat_below = 3               # a survey rating below it (of 5) escalates; 0 turns it off
    unassigned = true            # a ticket its queue's unassigned_timeout reports escalates too
    unassigned_after = "30m"     # that timeout for the queues that set none (with unassigned = true)
    repeat_subject_count = 3     # the requester's third ticket on one subject ... (0 turns it off)
    repeat_subject_days = 30     # ... within 30 days, the new one counted

Phrases and words match case-insensitively, as whole words with any white space between them,
in the new text of a customer's mail (quotes and signature removed: a quoted "escalate" is not
asked again) and in a new ticket's subject. Mail from robots never triggers (daemon.sla.hooks).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ticketd.daemon.config_section import Section
from ticketd.daemon.sla.policy import parse_duration

MANAGER_PHRASES = ("speak to a manager", "speak with a manager", "talk to a manager", "speak to your manager",
                   "talk to your manager", "speak to someone in charge", "supervisor", "escalate", "escalation",
                   "formal complaint")
SECURITY_WORDS = ("data breach", "security breach", "security incident", "vulnerability", "vulnerabilities",
                  "exploit", "hacked", "phishing", "ransomware", "malware", "data leak", "GDPR", "DSGVO", "CVE")
MANAGER, SECURITY, VIP, CSAT, UNASSIGNED, REPEAT = "manager", "security", "vip", "csat", "unassigned", "repeat_subject"
MAX_TEXT = 20_000  # characters read of one mail: a request for a manager sits near its top, and it is the hot path
NO_SUBJECT = "(no subject)"  # what a ticket without one is stored as (daemon.commit): no repeat of anything
_PREFIX = re.compile(r"(?:(?:re|aw|sv|antw|wg|fwd?|fw)\s*(?:\[\d+\])?\s*:|\[#\d+\])\s*", re.IGNORECASE)
_TAG = re.compile(r"\[#\d+\]")
PHRASES_EXPECTED = "an array of phrases (non-empty strings); [] turns it off"


@dataclass(frozen=True)
class Triggers:
    manager_phrases: tuple[str, ...] = MANAGER_PHRASES
    security_words: tuple[str, ...] = SECURITY_WORDS
    vip_tiers: tuple[str, ...] = ("vip",)  # lower case: rules give tiers so
    csat_below: int = 3  # 0: off
    unassigned: bool = True
    repeat_subject_count: int = 3  # 0: off
    repeat_subject_days: int = 30
    unassigned_after: timedelta = timedelta(minutes=30)  # the queues' unassigned_timeout where they set none
    manager: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)
    security: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # compiled once, at load: every customer mail reads them
        object.__setattr__(self, "manager", phrase_pattern(self.manager_phrases))
        object.__setattr__(self, "security", phrase_pattern(self.security_words))


def triggers_config(section: Section) -> Triggers:
    """``[sla.triggers]``; every key missing takes its default."""
    base = Triggers()
    manager = _phrases(section, "manager_phrases", base.manager_phrases)
    security = _phrases(section, "security_words", base.security_words)
    vip = tuple(p.lower() for p in _phrases(section, "vip_tiers", base.vip_tiers))
    csat = section.get("csat_below", int, base.csat_below, expected="0 (off) or a rating from 2 to 5")
    if csat != 0 and not 2 <= csat <= 5:  # 1: nothing is below it
        section.fail("csat_below", "0 (off) or a rating from 2 to 5 (a rating below it escalates)", csat)
    unassigned = section.get("unassigned", bool, base.unassigned)
    after = _after(section, base.unassigned_after)
    count = section.get("repeat_subject_count", int, base.repeat_subject_count, expected="0 (off) or 2 or more")
    if count != 0 and count < 2:  # 1 would escalate every new ticket
        section.fail("repeat_subject_count", "0 (off) or a count of 2 or more (the new ticket included)", count)
    days = section.get("repeat_subject_days", int, base.repeat_subject_days, expected="a number of days, 1 to 366")
    if not 1 <= days <= 366:
        section.fail("repeat_subject_days", "a number of days, 1 to 366", days)
    section.done()
    return Triggers(manager, security, vip, csat, unassigned, count, days, after)


def _after(section: Section, default: timedelta) -> timedelta:
    expected = 'a duration like "30m" or "2h" (at least a minute)'
    text = section.get("unassigned_after", str, "", expected=expected)
    if not text:
        return default
    try:
        after = parse_duration(text)
    except ValueError:
        after = None
    if not isinstance(after, timedelta) or after < timedelta(minutes=1):
        section.fail("unassigned_after", expected, text)
    return after  # type: ignore[return-value]


def _phrases(section: Section, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    values: list[Any] = section.get(key, list, list(default), expected=PHRASES_EXPECTED)
    for i, value in enumerate(values):
        if not isinstance(value, str) or not value.strip() or not value.isprintable():
            section.fail(f"{key}[{i}]", "a phrase (a non-empty string of printable characters)", value)
    return tuple(dict.fromkeys(" ".join(v.split()) for v in values))


def phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern for all ``phrases``: whole words, any white space between them; None for none."""
    if not phrases:
        return None
    return re.compile("|".join(_one(p) for p in sorted(phrases, key=len, reverse=True)), re.IGNORECASE)


def _one(phrase: str) -> str:
    body = r"\s+".join(re.escape(word) for word in phrase.split())
    # \b only next to a word character: "C++" or "(GDPR)" would never match with one beside them.
    return (r"\b" if phrase[0].isalnum() else "") + body + (r"\b" if phrase[-1].isalnum() else "")


def first_phrase(pattern: re.Pattern[str] | None, text: str) -> str | None:
    """The first phrase of ``pattern`` in ``text``, as one line in lower case; None if none is."""
    found = pattern.search(text[:MAX_TEXT]) if pattern is not None else None
    return " ".join(found.group(0).lower().split()) if found else None


def normalise_subject(subject: str) -> str:
    """The subject two tickets share when they are about one thing: no Re:/Fwd:/[#N], case or spacing."""
    text = subject.strip()
    while found := _PREFIX.match(text):
        text = text[found.end():]
    text = " ".join(_TAG.sub(" ", text).casefold().split())
    return "" if text == NO_SUBJECT else text


def vip_tier(triggers: Triggers, tier: str | None) -> bool:
    return bool(tier) and tier.lower() in triggers.vip_tiers  # type: ignore[union-attr]


def low_rating(triggers: Triggers, rating: int) -> bool:
    return triggers.csat_below > 0 and rating < triggers.csat_below
