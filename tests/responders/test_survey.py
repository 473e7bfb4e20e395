"""The satisfaction survey: its headers, and that every answer it offers is one daemon.satisfaction reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ticketd.daemon.config import Config, load_config
from ticketd.daemon.config_lifecycle import TEMPLATES
from ticketd.daemon.responders import TicketView
from ticketd.daemon.responders.survey import survey_draft
from ticketd.daemon.satisfaction import rating
from ticketd.daemon.templating import load_template
from tests.test_config import write
from tests.test_config_agents import ISSUE, config_text

TICKET = TicketView(17, "Printer on fire", "solved", "P2", "", "support", "ann@example.org", "Ann")
# "    5  excellent": a digit and the word for it, as the packaged template lists them.
_OFFER = re.compile(r"^\s+([0-9])\s+([A-Za-z]+)\s*$", re.MULTILINE)


def config(tmp_path: Path, extra: str = "") -> Config:
    return load_config(write(tmp_path, config_text(tmp_path, ISSUE + extra)), environ={})


def test_the_survey_answers_the_ticket_as_automatic_mail_from_the_support_address(tmp_path: Path) -> None:
    draft = survey_draft(config(tmp_path), TICKET, "ann@example.org", "<last@example.test>", ("<q1@example.org>",))
    assert (draft.kind, draft.recipients, draft.automatic) == ("survey", ("ann@example.org",), True)
    msg = draft.message
    assert msg["From"] == "Example Support <support@example.test>"
    assert msg["To"] == "ann@example.org"
    assert msg["Subject"] == "Re: Printer on fire [#17]"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["In-Reply-To"] == "<last@example.test>"
    assert msg["References"] == "<q1@example.org> <last@example.test>"
    # A customer never sees a signed reply address: it would let him write as an agent.
    assert msg["Reply-To"] is None and b"+t17-" not in draft.raw


def test_a_hostile_subject_or_recipient_cannot_add_headers(tmp_path: Path) -> None:
    ticket = TicketView(3, "Hi\r\nBcc: evil@example.com", "solved", "P3", "", "", "ann@example.org", "")
    draft = survey_draft(config(tmp_path), ticket, "ann@example.org\r\nBcc: evil@example.com", "", ())
    head = draft.raw.split(b"\r\n\r\n")[0]
    assert b"\nBcc" not in head and draft.message["Bcc"] is None


def test_a_non_ascii_subject_survives(tmp_path: Path) -> None:
    ticket = TicketView(4, "Drucker kaputt – jä", "solved", "P3", "", "", "j@example.org", "Jürgen")
    draft = survey_draft(config(tmp_path), ticket, "j@example.org", "", ())
    assert draft.raw.isascii() and draft.message["Subject"] == "Re: Drucker kaputt – jä [#4]"


def test_every_answer_the_template_offers_reads_as_the_rating_it_stands_for() -> None:
    body = load_template(TEMPLATES / "survey.txt.j2").render(ticket=TICKET, recipient="ann@example.org")
    offers = {int(digit): word for digit, word in _OFFER.findall(body)}
    assert sorted(offers) == [1, 2, 3, 4, 5], body
    assert list(offers.values()) == ["excellent", "good", "okay", "poor", "bad"]
    for value, word in offers.items():
        # as a customer would answer: alone, capitalised, or with a comment after it
        for answer in (str(value), word, word.capitalize() + ", thanks", f"{value} - {word}", f"{value}\n\n> {body}"):
            assert rating(answer) == value, answer


def test_the_rendered_survey_asks_for_the_first_line(tmp_path: Path) -> None:
    body = survey_draft(config(tmp_path), TICKET, "ann@example.org", "", ()).message.get_content()
    assert "[#17]" in body and "first line" in body and "Printer on fire" in body


def test_a_template_of_ones_own_is_used(tmp_path: Path) -> None:
    (tmp_path / "mine.j2").write_text("Wie war es? #{{ ticket.number }} an {{ recipient }}\n")
    draft = survey_draft(config(tmp_path, '\n[survey]\ntemplate = "mine.j2"\n'), TICKET, "ann@example.org", "", ())
    assert draft.message.get_content().strip() == "Wie war es? #17 an ann@example.org"


@pytest.mark.parametrize("text", ["{{ ticket.__class__.__mro__ }}", "{{ ticket.number.__class__ }}"])
def test_the_template_is_sandboxed(tmp_path: Path, text: str) -> None:
    from jinja2.exceptions import SecurityError, UndefinedError

    (tmp_path / "evil.j2").write_text(text)
    with pytest.raises((SecurityError, UndefinedError)):
        survey_draft(config(tmp_path, '\n[survey]\ntemplate = "evil.j2"\n'), TICKET, "ann@example.org", "", ())
