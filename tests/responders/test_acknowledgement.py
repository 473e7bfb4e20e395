"""The acknowledgement responder: who gets one, and what it looks like."""

from __future__ import annotations

from pathlib import Path

import pytest

from ticketd.daemon.config import ConfigError, load_config
from ticketd.daemon.responders import Draft, ResponseContext, TicketView, Withheld
from ticketd.daemon.responders.acknowledgement import Acknowledgement, is_automatic
from tests.support.mail import parsed
from tests.test_config import MINIMUM, write

TICKET = TicketView(17, "Printer on fire", "new", "P3", "", "support", "ann@example.org", "Ann")


def ack(tmp_path: Path, extra: str = "") -> Acknowledgement:
    return Acknowledgement(load_config(write(tmp_path, MINIMUM + extra)))


def customer_mail(extra_headers: str = "") -> str:
    return f"""
        From: Ann <ann@example.org>
        To: support@example.test
        Subject: Printer on fire
        Message-ID: <q1@example.org>
        References: <old@example.org>
        {extra_headers}

        It burns.
    """


def test_new_ticket_gets_one_acknowledgement_with_tag_and_rfc3834_headers(tmp_path: Path) -> None:
    drafts = ack(tmp_path).run(ResponseContext(TICKET, parsed(customer_mail()), True, None))
    assert len(drafts) == 1
    msg = drafts[0].message
    assert msg["Subject"] == "Re: Printer on fire [#17]"
    assert msg["To"] == "ann@example.org"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["In-Reply-To"] == "<q1@example.org>"
    assert msg["References"] == "<old@example.org> <q1@example.org>"
    assert drafts[0].message_id.startswith("<ticketd.17.")
    assert "#17" in msg.get_content()
    assert drafts[0].recipients == ("ann@example.org",)


def test_reply_to_existing_ticket_gets_no_acknowledgement(tmp_path: Path) -> None:
    assert ack(tmp_path).run(ResponseContext(TICKET, parsed(customer_mail()), False, None)) == []


def test_acknowledgement_goes_to_reply_to_when_given(tmp_path: Path) -> None:
    msg = parsed(customer_mail("Reply-To: Ann Desk <desk@example.org>"))
    drafts = ack(tmp_path).run(ResponseContext(TICKET, msg, True, None))
    assert drafts[0].recipients == ("desk@example.org",)


@pytest.mark.parametrize("header", [
    "Auto-Submitted: auto-replied", "Precedence: bulk", "List-Id: <list.example.org>",
    "X-Autoreply: yes", "X-Auto-Response-Suppress: All",
])
def test_automatic_mail_is_never_answered(tmp_path: Path, header: str) -> None:
    msg = parsed(customer_mail(header))
    assert is_automatic(msg, frozenset())
    [withheld] = ack(tmp_path).run(ResponseContext(TICKET, msg, True, None))
    assert isinstance(withheld, Withheld) and not withheld.warn


def test_auto_submitted_no_is_answered() -> None:
    assert not is_automatic(parsed(customer_mail("Auto-Submitted: no")), frozenset())


def test_mail_from_our_own_address_or_a_robot_is_not_answered() -> None:
    own = parsed(customer_mail().replace("Ann <ann@example.org>", "support@example.test"))
    assert is_automatic(own, frozenset({"support@example.test"}))
    robot = parsed(customer_mail().replace("Ann <ann@example.org>", "MAILER-DAEMON@mx.example.org"))
    assert is_automatic(robot, frozenset())


def test_subject_with_line_breaks_cannot_inject_headers(tmp_path: Path) -> None:
    ticket = TicketView(3, "x", "new", "P3", "", "", "ann@example.org", "")
    msg = parsed(customer_mail().replace("Subject: Printer on fire", "Subject: =?utf-8?q?a=0D=0ABcc:_evil@example.com?="))
    raw = ack(tmp_path).run(ResponseContext(ticket, msg, True, None))[0].message.as_bytes()
    assert b"\nBcc:" not in raw


def test_a_broken_template_stops_start_up_with_the_key(tmp_path: Path) -> None:
    template = tmp_path / "bad.j2"
    template.write_text("Hello {{ ticket.number ")
    with pytest.raises(ConfigError, match="acknowledgement.template"):
        ack(tmp_path, f'\n[acknowledgement]\ntemplate = "{template}"\n')


def test_templates_are_sandboxed(tmp_path: Path) -> None:
    template = tmp_path / "evil.j2"
    template.write_text("{{ ticket.__class__.__mro__ }}")
    responder = ack(tmp_path, f'\n[acknowledgement]\ntemplate = "{template}"\n')
    from jinja2.exceptions import SecurityError, UndefinedError
    with pytest.raises((SecurityError, UndefinedError)):
        responder.run(ResponseContext(TICKET, parsed(customer_mail()), True, None))


def test_non_ascii_subjects_and_names_survive_the_round_trip(tmp_path: Path) -> None:
    msg = parsed(customer_mail().replace("Subject: Printer on fire", "Subject: =?utf-8?q?Drucker_kaputt_=E2=80=93_j=C3=A4?=")
                 .replace("From: Ann <ann@example.org>", "From: =?utf-8?q?J=C3=BCrgen?= <ann@example.org>"))
    ticket = TicketView(9, msg.subject, "new", "P3", "", "", "ann@example.org", "Jürgen")
    out = ack(tmp_path).run(ResponseContext(ticket, msg, True, None))[0].message
    assert out["Subject"] == "Re: Drucker kaputt – jä [#9]"
    assert "Hello Jürgen," in out.get_content()


def test_a_queue_template_wins_and_sees_priority_first_response_and_articles(tmp_path: Path) -> None:
    from ticketd.daemon.rules import HelpArticle

    billing = tmp_path / "billing.j2"
    billing.write_text("Billing {{ ticket.priority }} within {{ first_response }}: "
                       "{% for a in articles %}{{ a.title }} <{{ a.url }}>{% endfor %}\n")
    responder = ack(tmp_path, f'\n[acknowledgement.templates]\n"queue:Billing" = "{billing}"\n')
    ticket = TicketView(5, "Refund", "new", "P2", "", "Billing", "ann@example.org", "Ann")
    article = HelpArticle("Refund policy", "https://help.example.test/refunds", ("refund",))
    ctx = ResponseContext(ticket, parsed(customer_mail()), True, "support", first_response="4 hours",
                          articles=(article,))
    body = responder.run(ctx)[0].message.get_content()
    assert body.strip() == "Billing P2 within 4 hours: Refund policy <https://help.example.test/refunds>"
    other = TicketView(6, "Printer", "new", "P3", "", "support", "ann@example.org", "Ann")
    assert "ticket #6 for it" in responder.run(ResponseContext(other, parsed(customer_mail()), True, ""))[0] \
        .message.get_content()


def test_no_acknowledgement_past_the_hourly_limit_or_to_a_bounced_address(tmp_path: Path) -> None:
    responder = ack(tmp_path)
    msg = parsed(customer_mail())
    [limited] = responder.run(ResponseContext(TICKET, msg, True, "", recent_automatic=3))
    assert isinstance(limited, Withheld) and limited.warn and "auto_replies_per_hour" in limited.reason
    [bounced] = responder.run(ResponseContext(TICKET, msg, True, "", suppressed=True))
    assert isinstance(bounced, Withheld) and bounced.warn and "bounced" in bounced.reason
    [draft] = responder.run(ResponseContext(TICKET, msg, True, "", recent_automatic=2))
    assert isinstance(draft, Draft)
