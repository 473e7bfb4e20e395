"""Notices to agents, the low-satisfaction alert, the pending reminder and the assignment mail."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from ticketd.daemon import signing
from ticketd.daemon.config import Config, ConfigError, load_config
from ticketd.daemon.notices import (assigned_draft, duration, load_notice_templates, low_csat_draft, notice_draft,
                            reminder_draft, template)
from ticketd.daemon.responders import TicketView, build_responders
from tests.test_config import write
from tests.test_config_agents import BOB, ISSUE, KEY, config_text

TICKET = TicketView(42, "Printer on fire", "pending", "P2", "", "support", "ann@example.org", "Ann")
STORED = ("Your mail was stored on ticket #42 but not relayed to the customer: it did not reach the ticket's "
          "signed reply address.")


def config(tmp_path: Path, extra: str = "") -> Config:
    return load_config(write(tmp_path, config_text(tmp_path, ISSUE + BOB + extra)), environ={})


def head(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n")[0]


def test_a_notice_goes_to_the_agent_from_the_support_address(tmp_path: Path) -> None:
    draft = notice_draft(config(tmp_path), "Bob@Example.test", "Re: [#42] Printer on fire",
                         [STORED, "Nothing was done: '#stauts pending': unknown command #stauts"],
                         "<agent-mail@example.test>", ["<q1@example.org>"], kind="not_relayed")
    assert (draft.kind, draft.recipients, draft.automatic) == ("not_relayed", ("bob@example.test",), True)
    msg = draft.message
    assert msg["From"] == "Example Support <support@example.test>"
    assert msg["To"] == "bob@example.test" and msg["Subject"] == "Re: [#42] Printer on fire"
    assert msg["In-Reply-To"] == "<agent-mail@example.test>"
    assert msg["References"] == "<q1@example.org> <agent-mail@example.test>"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Reply-To"] is None
    body = msg.get_content().replace("\r\n", "\n")
    assert body.startswith("Hello Bob Agent,\n") and STORED in body and "'#stauts pending'" in body
    assert draft.message_id.startswith("<ticketd.42.")
    assert notice_draft(config(tmp_path), "bob@example.test", "x", ["y"]).kind == "agent_notice"


def test_mail_for_agents_is_refused_for_anyone_else(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    with pytest.raises(ValueError, match="not an agent"):
        notice_draft(cfg, "ann@example.org", "x", ["y"])
    with pytest.raises(ValueError, match="not an agent"):
        assigned_draft(cfg, "ann@example.org", TICKET, signing.reply_address("support@example.test", 42, KEY.encode()))
    with pytest.raises(ValueError, match="not an agent"):
        low_csat_draft(cfg, "alice+x@example.test", TICKET, 1, "")


def test_the_low_rating_alert_tells_the_lead_the_rating_and_the_comment(tmp_path: Path) -> None:
    draft = low_csat_draft(config(tmp_path), "alice@example.test", TICKET, 2, "Slow.\r\nAnd rude.")
    msg = draft.message
    assert (draft.kind, draft.recipients, msg["Subject"]) == (
        "low_csat", ("alice@example.test",), "[#42] Rated 2/5: Printer on fire")
    body = msg.get_content().replace("\r\n", "\n")
    assert "rated it 2 out of 5" in body and "    Slow.\n    And rude." in body and "Ann <ann@example.org>" in body
    assert "no comment" in low_csat_draft(config(tmp_path), "alice@example.test", TICKET, 1, "").message.get_content()


def test_the_reminder_asks_the_customer_and_carries_no_signed_address(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    draft = reminder_draft(cfg, TICKET, "ann@example.org", "<agent-reply@example.test>", ("<q1@example.org>",))
    msg = draft.message
    assert (draft.kind, draft.recipients, draft.automatic) == ("pending_reminder", ("ann@example.org",), True)
    assert msg["Subject"] == "Re: Printer on fire [#42]" and msg["To"] == "ann@example.org"
    assert msg["From"] == "Example Support <support@example.test>"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["In-Reply-To"] == "<agent-reply@example.test>"
    body = msg.get_content()
    assert "we are waiting for your answer on [#42]" in body and "within 4 days" in body  # 7 days - 72 hours
    assert msg["Reply-To"] is None and b"+t42-" not in draft.raw
    assert signing.reply_address("support@example.test", 42, KEY.encode()).encode() not in draft.raw


def test_the_assignment_mail_has_the_signed_reply_address(tmp_path: Path) -> None:
    address = signing.reply_address("support@example.test", 42, KEY.encode())
    draft = assigned_draft(config(tmp_path), "alice@example.test", TICKET, address)
    msg = draft.message
    assert (draft.kind, draft.recipients) == ("assigned", ("alice@example.test",))
    assert msg["Reply-To"] == address and msg["From"] == "Example Support <support@example.test>"
    assert msg["Subject"] == "[#42] Assigned to you: Printer on fire"
    body = msg.get_content()
    assert "Hello Alice Agent," in body and "assigned to you" in body and "#status open|pending" in body


def test_hostile_subjects_and_comments_cannot_add_headers(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    ticket = TicketView(7, "Hi\r\nBcc: evil@example.com", "open", "P3", "", "support", "ann@example.org",
                        "Ann\nBcc: x@example.com")
    drafts = [notice_draft(cfg, "bob@example.test", "Re: x\r\nBcc: evil@example.com", ["a\r\nBcc: b@example.com"],
                           "<a@b>\r\nBcc: evil@example.com", ["<c@d>\nBcc: e@example.com"]),
              low_csat_draft(cfg, "alice@example.test", ticket, 1, "x\r\nBcc: evil@example.com"),
              reminder_draft(cfg, ticket, "ann@example.org\r\nBcc: evil@example.com", "", ()),
              assigned_draft(cfg, "alice@example.test", ticket, "x@example.test\r\nBcc: evil@example.com")]
    for draft in drafts:
        assert b"\nBcc" not in head(draft.raw) and b"\rBcc" not in head(draft.raw), draft.kind
        assert draft.message["Bcc"] is None


def test_non_ascii_names_and_subjects_are_encoded(tmp_path: Path) -> None:
    cfg = config(tmp_path, '\n[[agents]]\nname = "Jürgen Müller"\naddress = "juergen@example.test"\n')
    ticket = TicketView(8, "Drucker kaputt – jä", "open", "P3", "", "support", "j@example.org", "Jürgen")
    draft = assigned_draft(cfg, "juergen@example.test", ticket, signing.reply_address("support@example.test", 8,
                                                                                     KEY.encode()))
    assert head(draft.raw).isascii()
    assert draft.message["Subject"] == "[#8] Assigned to you: Drucker kaputt – jä"
    assert "Hello Jürgen Müller," in draft.message.get_content()


def test_templates_are_compiled_at_start_up_and_a_broken_one_names_its_key(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text("{% for x in lines %}")
    cfg = config(tmp_path, '\n[notifications]\nlow_csat_template = "bad.j2"\n')
    with pytest.raises(ConfigError, match=r"ticketd\.toml: notifications\.low_csat_template: .*bad\.j2"):
        load_notice_templates(cfg)
    with pytest.raises(ConfigError, match=r"notifications\.low_csat_template"):
        build_responders(cfg)  # what `run`, `check-config` and a reload call


def test_a_broken_survey_template_counts_only_when_the_survey_is_on(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text("{{ ")
    with pytest.raises(ConfigError, match=r"survey\.template"):
        load_notice_templates(config(tmp_path, '\n[survey]\ntemplate = "bad.j2"\n'))
    loaded = load_notice_templates(config(tmp_path, '\n[survey]\nenabled = false\ntemplate = "bad.j2"\n'))
    assert "survey.template" not in loaded and "notifications.reminder_template" in loaded


def test_a_reload_compiles_a_changed_template_and_a_broken_one_changes_nothing(tmp_path: Path) -> None:
    notice = tmp_path / "notice.j2"
    notice.write_text("first {{ lines | join(' ') }}\n")
    cfg = config(tmp_path, f'\n[notifications]\nnotice_template = "{notice}"\n')
    load_notice_templates(cfg)
    assert notice_draft(cfg, "bob@example.test", "s", ["x"]).message.get_content().strip() == "first x"
    notice.write_text("second {{ lines | join(' ') }} (longer)\n")
    assert notice_draft(cfg, "bob@example.test", "s", ["x"]).message.get_content().strip() == "first x"
    load_notice_templates(cfg)  # SIGHUP
    assert notice_draft(cfg, "bob@example.test", "s", ["x"]).message.get_content().strip() == "second x (longer)"
    notice.write_text("third {{ ")
    with pytest.raises(ConfigError):
        load_notice_templates(cfg)
    assert template(cfg, "notifications.notice_template").render(lines=["x"]).strip() == "second x (longer)"


def test_notice_templates_are_sandboxed(tmp_path: Path) -> None:
    from jinja2.exceptions import SecurityError, UndefinedError

    (tmp_path / "evil.j2").write_text("{{ agent.__class__.__mro__ }}{{ lines.__class__.__subclasses__() }}")
    cfg = config(tmp_path, '\n[notifications]\nnotice_template = "evil.j2"\n')
    with pytest.raises((SecurityError, UndefinedError)):
        notice_draft(cfg, "bob@example.test", "s", ["x"])


@pytest.mark.parametrize("span, text", [
    (timedelta(days=4), "4 days"), (timedelta(days=1), "1 day"), (timedelta(hours=36), "36 hours"),
    (timedelta(hours=12), "12 hours"), (timedelta(days=3, hours=13), "4 days"), (timedelta(seconds=100000), "28 hours"),
    (timedelta(minutes=1), "1 minute"), (timedelta(seconds=90), "90 seconds"), (timedelta(seconds=30), "30 seconds"),
    (timedelta(seconds=-5), "0 seconds"), (timedelta(0), "0 seconds"),
])
def test_durations_read_as_words(span: timedelta, text: str) -> None:
    assert duration(span) == text
