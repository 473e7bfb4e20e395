"""notification: tell the agents of a new ticket's queue about it, with the signed address to answer it."""

from __future__ import annotations

import logging

from ticketd.daemon import signing
from ticketd.daemon.config import Config
from ticketd.daemon.filters.autoreply import automatic_reason
from ticketd.daemon.notices import COMMAND_HELP, message_headers, template
from ticketd.daemon.outgoing import new_message_id, one_line, text_message
from ticketd.daemon.responders import Draft, ResponseContext, Withheld

log = logging.getLogger("ticketd.responders")

MAX_TEXT = 20_000  # characters of the customer's text in the mail; the ticket keeps all of it


class Notification:
    name = "notification"
    description = "Send the agents of a new ticket's queue the customer's mail, answerable at its signed reply address"

    def __init__(self, config: Config) -> None:
        self.config = config
        self.template = template(config, "notifications.template")  # a broken one stops start-up

    def run(self, ctx: ResponseContext) -> list[Draft | Withheld]:
        team = self.config.team
        if not ctx.is_new_ticket or team is None or team.signing is None:
            return []
        requester = team.agent_by_address(ctx.ticket.requester) if ctx.ticket.requester else None
        if requester is not None and automatic_reason(ctx.message, self.config.own_addresses):
            # An agent's auto-responder answered something of ours to the plain support address.
            # Telling his colleagues could have their auto-responders answer in turn: a loop
            # between agents that no per-customer limit stops (agent mail is never limited).
            return [Withheld(self.name, requester.address, "an automatic mail from an agent opened the ticket")]
        # The author of a ticket needs no copy of his own mail (and the agent-reply code has
        # already taken every mail of an agent that reached a signed address).
        recipients = tuple(a for a in team.recipients(ctx.ticket.queue) if requester is None or a != requester.address)
        if not recipients:
            return []
        try:
            reply_to = signing.reply_address(self.base_address(ctx.mailbox), ctx.ticket.number, team.signing.key,
                                             team.signing.reply_format)
        except ValueError as exc:  # e.g. an smtp.from too long for a token: no way to answer, so no mail
            log.warning("no notification for ticket #%d: %s", ctx.ticket.number, exc)
            return [Withheld(self.name, ", ".join(recipients), f"no signed reply address: {exc}", warn=True)]
        return [self._draft(ctx, recipients, reply_to)]

    def base_address(self, mailbox: str) -> str:
        """The support address the ticket came in on, whose signed form its agents answer to."""
        return self.config.support_address(mailbox)

    def _draft(self, ctx: ResponseContext, recipients: tuple[str, ...], reply_to: str) -> Draft:
        ticket, message, smtp = ctx.ticket, ctx.message, self.config.smtp
        customer = one_line(ticket.requester_name or (message.from_.name if message.from_ else ""))
        email = ticket.requester or (message.from_.email if message.from_ else "")
        display = f"{customer or one_line(email) or 'A customer'} via {smtp.from_name or smtp.from_address}"
        tag = f"[#{ticket.number}]"
        subject = ticket.subject if ticket.subject.startswith(tag) else f"{tag} {ticket.subject}"
        message_id = new_message_id(ticket.number, smtp.from_address)
        references = message.references if message.message_id else ()
        headers = message_headers(self.config, recipients, subject, message_id, message.message_id, references,
                                  reply_to, from_name=display)
        text = message.new_text or message.text
        body = self.template.render(
            ticket=ticket, customer={"name": customer, "email": email}, text=text[:MAX_TEXT],
            truncated=max(len(text) - MAX_TEXT, 0), first_response=ctx.first_response,
            fired_rules=list(ticket.fired_rules), mailbox=ctx.mailbox, commands=COMMAND_HELP,
            attachments=[one_line(a.filename) or a.content_type for a in message.attachments if not a.inline])
        # Not automatic: the hourly limit on automatic mail is against loops with customers'
        # auto-responders, and must never keep a new ticket from the agents.
        return Draft(self.name, smtp.envelope_from, recipients, message_id, text_message(headers, body),
                     automatic=False)
