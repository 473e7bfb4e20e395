"""survey: ask the customer of a solved ticket for a rating, by reply (daemon.satisfaction reads it)."""

from __future__ import annotations

from collections.abc import Iterable

from ticketd.daemon.config import Config
from ticketd.daemon.notices import message_headers, template
from ticketd.daemon.outgoing import new_message_id, one_line, reply_subject, text_message
from ticketd.daemon.responders import Draft, TicketView


def survey_draft(config: Config, ticket: TicketView, recipient: str, in_reply_to: str,
                 references: Iterable[str] = ()) -> Draft:
    """The survey for ``ticket`` to its customer: automatic mail, and no signed address (he is no agent)."""
    smtp = config.smtp
    message_id = new_message_id(ticket.number, smtp.from_address)
    subject = reply_subject(ticket.subject, ticket.number)
    to = one_line(recipient)
    headers = message_headers(config, (to,), subject, message_id, in_reply_to, references)
    body = template(config, "survey.template").render(ticket=ticket, recipient=to)
    return Draft("survey", smtp.envelope_from, (to,), message_id, text_message(headers, body), automatic=True)
