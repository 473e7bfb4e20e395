"""The new-ticket notification: who gets it, what it shows, and that its signed address reaches agents only."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ticketd.daemon import signing
from ticketd.daemon.config import Config, ConfigError, load_config
from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.daemon.responders import Draft, ResponseContext, TicketView, Withheld, build_responders
from ticketd.daemon.responders.acknowledgement import Acknowledgement
from ticketd.daemon.responders.notification import MAX_TEXT, Notification
from tests.support.mail import parsed
from tests.test_config import MINIMUM, write
from tests.test_config_agents import BOB, ISSUE, KEY, config_text

TICKET = TicketView(17, "Printer on fire", "new", "P2", "Hardware", "support", "ann@example.org", "Ann",
                    ("fire", "vip"), ("urgent-words", "vip-senders"))
SALES = '\n[[addresses]]\nname = "sales"\naddress = "sales@example.test"\n'


def config(tmp_path: Path, extra: str = "") -> Config:
    return load_config(write(tmp_path, config_text(tmp_path, ISSUE + BOB + extra)), environ={})


def customer_mail(extra_headers: str = "", sender: str = "Ann <ann@example.org>") -> ParsedMessage:
    return parsed(f"""
        From: {sender}
        To: support@example.test
        Subject: Printer on fire
        Message-ID: <q1@example.org>
        References: <old@example.org>
        {extra_headers}

        It burns.
        Please hurry.
    """)


def notify(cfg: Config, ticket: TicketView = TICKET, message: ParsedMessage | None = None, new: bool = True,
           mailbox: str = "support", **more: object) -> list[Draft | Withheld]:
    ctx = ResponseContext(ticket, message or customer_mail(), new, mailbox, first_response="4 hours", **more)
    return Notification(cfg).run(ctx)  # type: ignore[arg-type]


def the_draft(results: list[Draft | Withheld]) -> Draft:
    [draft] = results
    assert isinstance(draft, Draft)
    return draft


def test_a_new_ticket_goes_to_the_queues_agents_in_one_mail(tmp_path: Path) -> None:
    draft = the_draft(notify(config(tmp_path)))
    assert (draft.kind, draft.recipients, draft.automatic) == (
        "notification", ("alice@example.test", "bob@example.test"), False)
    msg = draft.message
    assert msg["To"] == "alice@example.test, bob@example.test"
    assert msg["From"] == "Ann via Example Support <support@example.test>"
    assert msg["Subject"] == "[#17] Printer on fire"
    assert msg["In-Reply-To"] == "<q1@example.org>"
    assert msg["References"] == "<old@example.org> <q1@example.org>"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Message-ID"] == draft.message_id and draft.message_id.startswith("<ticketd.17.")
    assert draft.mail_from == "support@example.test"


def test_reply_to_is_the_tickets_signed_address_on_the_mailbox_it_came_in_on(tmp_path: Path) -> None:
    cfg = config(tmp_path, SALES)
    reply_to = the_draft(notify(cfg)).message["Reply-To"]
    assert reply_to == signing.reply_address("support@example.test", 17, KEY.encode())
    assert signing.verify(reply_to, KEY.encode()) == 17
    assert the_draft(notify(cfg, mailbox="sales")).message["Reply-To"].startswith("sales+t17-")
    # `ticketd ingest` without --mailbox: the From address of our mail
    assert the_draft(notify(cfg, mailbox="")).message["Reply-To"].startswith("support+t17-")


def test_the_body_shows_the_customer_the_classification_and_how_to_answer(tmp_path: Path) -> None:
    body = the_draft(notify(config(tmp_path))).message.get_content().replace("\r\n", "\n")
    for shown in ("Ann <ann@example.org>", "It burns.\nPlease hurry.", "Priority: P2 (first response within 4 hours)",
                  "New ticket #17 in support", "Category: Hardware", "Tags: fire, vip",
                  "Rules that fired: urgent-words, vip-senders", "reply to this mail", "#status open|pending",
                  "#note"):
        assert shown in body, shown


def test_the_new_text_is_shown_when_the_parser_gives_one(tmp_path: Path) -> None:
    message = replace(customer_mail(), new_text="Only the new part.")
    body = the_draft(notify(config(tmp_path), message=message)).message.get_content()
    assert "Only the new part." in body and "It burns." not in body


def test_a_long_text_is_cut_and_says_so(tmp_path: Path) -> None:
    message = replace(customer_mail(), text="x" * (MAX_TEXT + 5), new_text="")
    body = the_draft(notify(config(tmp_path), message=message)).message.get_content()
    assert "x" * MAX_TEXT in body and "x" * (MAX_TEXT + 1) not in body and "5 more characters" in body


def test_the_hourly_limit_on_automatic_mail_never_stops_it(tmp_path: Path) -> None:
    draft = the_draft(notify(config(tmp_path), recent_automatic=1000))
    assert draft.automatic is False


def test_no_notification_for_a_reply_or_a_queue_nobody_is_notified_of(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert notify(cfg, new=False) == []
    other = TicketView(18, "Invoice", "new", "P3", "", "billing", "ann@example.org", "Ann")
    assert notify(cfg, other) == []


def test_an_agent_who_opens_a_ticket_is_not_sent_his_own_mail(tmp_path: Path) -> None:
    ticket = TicketView(19, "VPN down", "new", "P3", "", "support", "bob@example.test", "Bob Agent")
    draft = the_draft(notify(config(tmp_path), ticket, customer_mail(sender="Bob Agent <Bob@example.test>")))
    assert draft.recipients == ("alice@example.test",)


def test_an_automatic_mail_of_an_agent_tells_nobody(tmp_path: Path) -> None:
    ticket = TicketView(20, "Out of office", "new", "P3", "", "support", "bob@example.test", "Bob Agent")
    message = customer_mail("Auto-Submitted: auto-replied", sender="Bob Agent <bob@example.test>")
    [withheld] = notify(config(tmp_path), ticket, message)
    assert isinstance(withheld, Withheld) and withheld.recipient == "bob@example.test"
    # a customer's robot opening a ticket is still the agents' to see
    assert the_draft(notify(config(tmp_path), message=customer_mail("Auto-Submitted: auto-replied")))


def test_a_hostile_name_or_subject_cannot_add_headers(tmp_path: Path) -> None:
    ticket = TicketView(21, "Hi\r\nBcc: evil@example.com", "new", "P3", "", "support", "ann@example.org",
                        "Ann\r\nBcc: evil@example.com")
    draft = the_draft(notify(config(tmp_path), ticket))
    head = draft.raw.split(b"\r\n\r\n")[0]
    assert b"\nBcc" not in head and b"\rBcc" not in head
    msg = draft.message
    assert msg["Bcc"] is None
    assert msg["Subject"] == "[#21] Hi Bcc: evil@example.com"
    assert msg["From"].addresses[0].addr_spec == "support@example.test"


def test_a_non_ascii_name_and_subject_are_encoded_and_survive(tmp_path: Path) -> None:
    ticket = TicketView(22, "Drucker kaputt – jä", "new", "P3", "", "support", "j@example.org", "Jürgen Müller")
    draft = the_draft(notify(config(tmp_path), ticket))
    assert draft.raw.isascii()
    msg = draft.message
    assert msg["From"].addresses[0].display_name == "Jürgen Müller via Example Support"
    assert msg["From"].addresses[0].addr_spec == "support@example.test"
    assert msg["Subject"] == "[#22] Drucker kaputt – jä"


def test_without_a_name_the_customers_address_is_shown(tmp_path: Path) -> None:
    ticket = TicketView(23, "Hi", "new", "P3", "", "support", "ann@example.org", "")
    msg = the_draft(notify(config(tmp_path), ticket, customer_mail(sender="ann@example.org"))).message
    assert msg["From"].addresses[0].display_name == "ann@example.org via Example Support"


def test_it_runs_after_the_acknowledgement_and_only_with_agents(tmp_path: Path) -> None:
    assert [type(r) for r in build_responders(config(tmp_path))] == [Acknowledgement, Notification]
    plain = load_config(write(tmp_path, MINIMUM), environ={})
    assert [type(r) for r in build_responders(plain)] == [Acknowledgement]


def test_a_broken_template_stops_start_up_with_the_key(tmp_path: Path) -> None:
    (tmp_path / "bad.j2").write_text("New {{ ticket.number ")
    cfg = config(tmp_path, '\n[notifications]\ntemplate = "bad.j2"\n')
    with pytest.raises(ConfigError, match=r"ticketd\.toml: notifications\.template: .*bad\.j2: line 1"):
        build_responders(cfg)


def test_the_template_is_sandboxed(tmp_path: Path) -> None:
    from jinja2.exceptions import SecurityError, UndefinedError

    (tmp_path / "evil.j2").write_text("{{ ticket.__class__.__mro__ }}")
    responder = Notification(config(tmp_path, '\n[notifications]\ntemplate = "evil.j2"\n'))
    with pytest.raises((SecurityError, UndefinedError)):
        responder.run(ResponseContext(TICKET, customer_mail(), True, "support"))


def test_a_reload_uses_the_changed_template(tmp_path: Path) -> None:
    (tmp_path / "mine.j2").write_text("one #{{ ticket.number }}\n")
    cfg = config(tmp_path, '\n[notifications]\ntemplate = "mine.j2"\n')
    [_, first] = build_responders(cfg)
    (tmp_path / "mine.j2").write_text("two #{{ ticket.number }} (changed)\n")
    [_, second] = build_responders(cfg)  # what SIGHUP does with the new config
    ctx = ResponseContext(TICKET, customer_mail(), True, "support")
    assert [the_draft(r.run(ctx)).message.get_content().strip() for r in (first, second)] == [
        "one #17", "two #17 (changed)"]
