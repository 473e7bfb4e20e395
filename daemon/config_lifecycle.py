"""The ``[lifecycle]``, ``[survey]`` and ``[notifications]`` sections: timed steps and the mail about them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from ticketd.daemon.config_section import Section
from ticketd.daemon.lifecycle import LifecycleConfig

MAX_SECONDS = 100 * 365 * 86400
# What daemon.lifecycle.is_thanks makes of a mail's words: letters, an apostrophe inside, single spaces.
_PHRASE = r"[^\W\d_]+(?:'[^\W\d_]+)?(?: [^\W\d_]+(?:'[^\W\d_]+)?)*"  # compiled when phrases are given
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_SECONDS = "a positive number of seconds ({example} for {words})"
_DURATIONS = {  # key: (example, its words), for the error messages
    "pending_reminder": ("259200", "3 days"), "pending_solve": ("604800", "7 days"),
    "solved_close": ("345600", "4 days"), "reopen_window": ("1209600", "14 days"),
}
# [notifications] key -> the packaged template it defaults to.
NOTIFICATION_TEMPLATES = {
    "template": "notification.txt.j2",  # a new ticket, to the queue's agents
    "notice_template": "agent_notice.txt.j2",  # "stored but not relayed", "unknown command", ...
    "low_csat_template": "low_csat.txt.j2",  # a low rating, to the queue's lead
    "assigned_template": "assigned.txt.j2",  # a ticket assigned to an agent
    "reminder_template": "pending_reminder.txt.j2",  # to the customer of a pending ticket
}


@dataclass(frozen=True)
class SurveyConfig:
    enabled: bool  # ask the customer for a rating when a ticket is solved
    template: Path


@dataclass(frozen=True)
class NotificationsConfig:
    """The templates of the mail ticketd writes by itself about a ticket's life."""

    template: Path
    notice_template: Path
    low_csat_template: Path
    assigned_template: Path
    reminder_template: Path


def load_lifecycle(top: Section, team: Any) -> tuple[LifecycleConfig, SurveyConfig, NotificationsConfig]:
    """Read the three sections (each optional: the defaults apply); ``team`` is ``Config.team``."""
    lifecycle = _lifecycle(top.sub("lifecycle", {}))
    survey = top.sub("survey", {})
    # Only agents solve tickets (or time, on tickets agents set pending): no agents, no survey.
    enabled = survey.get("enabled", bool, bool(team is not None and team.agents))
    survey_config = SurveyConfig(enabled, template_path(survey, "template", "survey.txt.j2"))
    survey.done()
    notifications = top.sub("notifications", {})
    paths = {key: template_path(notifications, key, name) for key, name in NOTIFICATION_TEMPLATES.items()}
    notifications.done()
    return lifecycle, survey_config, NotificationsConfig(**paths)


def template_path(section: Section, key: str, default: str) -> Path:
    """An existing template file; relative to the config file's directory; a packaged one by default."""
    path = Path(section.get(key, str, str(TEMPLATES / default), expected="the path of a Jinja2 template file"))
    if not path.is_absolute():
        path = section.file.parent / path
    if not path.is_file():
        section.fail(key, "an existing Jinja2 template file", str(path))
    return path


def _lifecycle(section: Section) -> LifecycleConfig:
    default = LifecycleConfig()
    durations = {key: _seconds(section, key, getattr(default, key)) for key in _DURATIONS}
    if durations["pending_reminder"] >= durations["pending_solve"]:  # else the reminder follows the solve
        section.fail("pending_reminder", f"fewer seconds than pending_solve "
                     f"({durations['pending_solve'].total_seconds():g})", durations["pending_reminder"].total_seconds())
    phrases = default.thanks_phrases
    if "thanks_phrases" in section.data:
        phrases = _phrases(section)
    config = LifecycleConfig(
        **durations, thanks_phrases=phrases,
        thanks_max_chars=section.positive("thanks_max_chars", int, default.thanks_max_chars),
        followers=section.get("followers", bool, default.followers),
        forwarded_on_behalf=section.get("forwarded_on_behalf", bool, default.forwarded_on_behalf),
    )
    section.done()
    return config


def _seconds(section: Section, key: str, default: timedelta) -> timedelta:
    expected = _SECONDS.format(example=_DURATIONS[key][0], words=_DURATIONS[key][1])
    value = section.get(key, float, default.total_seconds(), expected=expected)
    if value <= 0:
        section.fail(key, expected, value)
    if value > MAX_SECONDS:  # a due time past the year 9999 cannot even be computed
        section.fail(key, f"at most {MAX_SECONDS} seconds (100 years)", value)
    return timedelta(seconds=value)


def _phrases(section: Section) -> tuple[str, ...]:
    """Lower case and single spaces: ``daemon.lifecycle.is_thanks`` compares them with the text so."""
    values: Any = section.get("thanks_phrases", list, expected="an array of phrases")
    phrases: list[str] = []
    for i, value in enumerate(values):
        phrase = " ".join(value.lower().split()) if isinstance(value, str) else ""
        if not re.fullmatch(_PHRASE, phrase):  # punctuation or digits could never match the words of a mail
            section.fail(f"thanks_phrases[{i}]", 'a phrase like "thank you" (words of letters, spaces between)',
                         value)
        phrases.append(phrase)
    return tuple(dict.fromkeys(phrases))
