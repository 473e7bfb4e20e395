"""[lifecycle], [survey], [notifications]: defaults without them, values read, errors naming file, key, expectation."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ticketd.daemon.config import Config, ConfigError, load_config
from ticketd.daemon.config_lifecycle import TEMPLATES, NotificationsConfig, SurveyConfig
from ticketd.daemon.lifecycle import LifecycleConfig, is_thanks
from tests.test_config import MINIMUM, ROOT, write
from tests.test_config_agents import ISSUE, config_text


def loaded(tmp_path: Path, extra: str = "", agents: bool = False) -> Config:
    text = config_text(tmp_path, ISSUE + extra) if agents else MINIMUM + extra
    return load_config(write(tmp_path, text), environ={})


def refused(tmp_path: Path, extra: str, agents: bool = False) -> str:
    path = write(tmp_path, config_text(tmp_path, ISSUE + extra) if agents else MINIMUM + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_without_the_sections_the_defaults_apply(tmp_path: Path) -> None:
    config = loaded(tmp_path)
    assert config.lifecycle == LifecycleConfig()
    assert config.lifecycle.pending_reminder == timedelta(hours=72)
    assert config.lifecycle.reopen_window == timedelta(days=14)
    assert config.lifecycle.followers is True and config.lifecycle.forwarded_on_behalf is True
    assert config.survey == SurveyConfig(False, TEMPLATES / "survey.txt.j2")  # no agents: nobody solves a ticket
    assert config.notifications == NotificationsConfig(
        TEMPLATES / "notification.txt.j2", TEMPLATES / "agent_notice.txt.j2", TEMPLATES / "low_csat.txt.j2",
        TEMPLATES / "assigned.txt.j2", TEMPLATES / "pending_reminder.txt.j2")
    assert all(path.is_file() for path in vars(config.notifications).values())


def test_the_survey_is_on_by_default_with_agents_and_may_be_turned_off(tmp_path: Path) -> None:
    assert loaded(tmp_path, agents=True).survey.enabled is True
    assert loaded(tmp_path, "\n[survey]\nenabled = false\n", agents=True).survey.enabled is False
    assert loaded(tmp_path, "\n[survey]\nenabled = true\n").survey.enabled is True


def test_every_key_is_read(tmp_path: Path) -> None:
    (tmp_path / "mine.j2").write_text("Rate us: {{ ticket.number }}\n")
    (tmp_path / "remind.j2").write_text("Still there?\n")
    config = loaded(tmp_path, """
[lifecycle]
pending_reminder = 3600
pending_solve = 7200.5
solved_close = 60
reopen_window = 86400
thanks_phrases = ["Thank  You", "merci beaucoup", "thank you"]
thanks_max_chars = 40
followers = false
forwarded_on_behalf = false

[survey]
template = "mine.j2"

[notifications]
reminder_template = "remind.j2"
""")
    life = config.lifecycle
    assert (life.pending_reminder, life.pending_solve, life.solved_close, life.reopen_window) == (
        timedelta(hours=1), timedelta(seconds=7200.5), timedelta(minutes=1), timedelta(days=1))
    assert life.thanks_phrases == ("thank you", "merci beaucoup")  # as is_thanks compares them; no repeats
    assert (life.thanks_max_chars, life.followers, life.forwarded_on_behalf) == (40, False, False)
    assert config.survey.template == tmp_path / "mine.j2"  # relative to the config file
    assert config.notifications.reminder_template == tmp_path / "remind.j2"
    assert config.notifications.template == TEMPLATES / "notification.txt.j2"


def test_configured_thanks_phrases_replace_the_default_and_match(tmp_path: Path) -> None:
    life = loaded(tmp_path, '\n[lifecycle]\nthanks_phrases = ["Vielen Dank"]\n').lifecycle
    assert is_thanks("Vielen Dank, es geht!", life)
    assert not is_thanks("Thanks!", life)
    assert loaded(tmp_path, "\n[lifecycle]\nthanks_phrases = []\n").lifecycle.thanks_phrases == ()


@pytest.mark.parametrize("extra, expected", [
    ("[lifecycle]\npending_reminder = 0", "lifecycle.pending_reminder: expected a positive number of seconds "
     "(259200 for 3 days), got 0.0"),
    ("[lifecycle]\npending_solve = -5", "lifecycle.pending_solve: expected a positive number of seconds "
     "(604800 for 7 days), got -5.0"),
    ('[lifecycle]\nsolved_close = "4d"', "lifecycle.solved_close: expected a positive number of seconds "
     "(345600 for 4 days), got '4d'"),
    ("[lifecycle]\nreopen_window = true", "lifecycle.reopen_window: expected a positive number of seconds"),
    ("[lifecycle]\nreopen_window = 1e20", "lifecycle.reopen_window: expected at most 3153600000 seconds (100 years)"),
    ("[lifecycle]\npending_reminder = 604800", "lifecycle.pending_reminder: expected fewer seconds than "
     "pending_solve (604800), got 604800.0"),
    ('[lifecycle]\nthanks_phrases = "thanks"', "lifecycle.thanks_phrases: expected an array of phrases, got 'thanks'"),
    ('[lifecycle]\nthanks_phrases = ["thanks", ""]', "lifecycle.thanks_phrases[1]: expected a phrase like "
     '"thank you"'),
    ('[lifecycle]\nthanks_phrases = ["thanks!"]', "lifecycle.thanks_phrases[0]: expected a phrase like"),
    ("[lifecycle]\nthanks_phrases = [3]", "lifecycle.thanks_phrases[0]: expected a phrase like"),
    ("[lifecycle]\nthanks_max_chars = 0", "lifecycle.thanks_max_chars: expected a positive number, got 0"),
    ("[lifecycle]\nthanks_max_chars = 1.5", "lifecycle.thanks_max_chars: expected an integer, got 1.5"),
    ('[lifecycle]\nfollowers = "yes"', "lifecycle.followers: expected true or false, got 'yes'"),
    ("[lifecycle]\nforwarded_on_behalf = 1", "lifecycle.forwarded_on_behalf: expected true or false, got 1"),
    ("[lifecycle]\npending = 5", "lifecycle.pending: unknown key"),
    ('[survey]\nenabled = "no"', "survey.enabled: expected true or false, got 'no'"),
    ('[survey]\ntemplate = "missing.j2"', "survey.template: expected an existing Jinja2 template file, got '"),
    ("[survey]\nwords = []", "survey.words: unknown key"),
    ('[notifications]\nlow_csat_template = "/nonexistent/csat.j2"', "notifications.low_csat_template: expected an "
     "existing Jinja2 template file, got '/nonexistent/csat.j2'"),
    ("[notifications]\ntemplate = 5", "notifications.template: expected the path of a Jinja2 template file, got 5"),
    ('[notifications]\nsurvey_template = "x.j2"', "notifications.survey_template: unknown key"),
])
def test_errors_name_the_file_the_key_and_what_was_expected(tmp_path: Path, extra: str, expected: str) -> None:
    message = refused(tmp_path, "\n" + extra + "\n")
    assert expected in message, message


def test_the_shipped_examples_sections_load_once_uncommented(tmp_path: Path) -> None:
    example = (ROOT / "examples" / "ticketd.toml").read_text()
    block = example[example.index("# [lifecycle]"):example.index("\n# [daemon]")]
    text = "\n".join(line.removeprefix("#").removeprefix(" ") for line in block.splitlines())
    text = text.replace("/usr/share/ticketd/templates/", f"{TEMPLATES}/")
    assert "[notifications]" in text and "reminder_template" in text
    config = loaded(tmp_path, "\n" + text, agents=True)
    assert config.lifecycle.thanks_phrases == ("thank you", "thanks", "cheers")
    assert config.lifecycle.pending_solve == timedelta(days=7) and config.survey.enabled
    assert config.notifications.assigned_template == TEMPLATES / "assigned.txt.j2"
