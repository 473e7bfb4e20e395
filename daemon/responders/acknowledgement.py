"""acknowledgement: tell the requester of a new ticket its number."""

from __future__ import annotations

import logging
from pathlib import Path

from ticketd.daemon.addresses import is_own
from ticketd.daemon.config import Config, ConfigError
from ticketd.daemon.outgoing import (address_header, date_value, header_line, new_message_id, one_line, reply_subject,
                                      text_message)
from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.daemon.filters.autoreply import automatic_reason
from ticketd.daemon.responders import Draft, ResponseContext, TicketView, Withheld
from ticketd.daemon.templating import Template, load_template
from ticketd.storage import clock

log = logging.getLogger("ticketd.responders")


class Acknowledgement:
    name = "acknowledgement"
    description = "Send the requester of a new ticket an acknowledgement carrying [#N]"

    def __init__(self, config: Config) -> None:
        self.config = config
        ack = config.acknowledgement
        self.template = self._load(ack.template, "acknowledgement.template")
        self.templates = {key: self._load(path, f"acknowledgement.templates.{key}")
                          for key, path in ack.templates.items()}

    def _load(self, path: Path, key: str) -> Template:
        try:
            return load_template(path)
        except ValueError as exc:
            raise ConfigError(f"{self.config.path}: {key}: {exc}") from None

    def run(self, ctx: ResponseContext) -> list[Draft | Withheld]:
        if not ctx.is_new_ticket:
            return []
        recipient = reply_address(ctx.message)
        withheld = self._why_not(ctx, recipient)
        if withheld is not None:
            log.log(logging.WARNING if withheld.warn else logging.INFO, "no acknowledgement for ticket #%d: %s",
                    ctx.ticket.number, withheld.reason)
            return [withheld]
        return [self._draft(ctx, recipient)]

    def _why_not(self, ctx: ResponseContext, recipient: str) -> Withheld | None:
        def no(reason: str, warn: bool = False) -> Withheld:
            return Withheld(self.name, recipient, reason, warn)

        if not recipient or is_own(recipient, self.config.own_addresses):
            return no("no address to answer, or our own")
        if ctx.decision is not None and ctx.decision.no_auto_reply:
            return no("a filter said not to answer automatically (" + (ctx.decision.reason or "no reason") + ")")
        reason = automatic_reason(ctx.message, self.config.own_addresses)  # RFC 3834, even without the filter
        if reason:
            return no(reason)
        if ctx.suppressed:
            return no(f"{recipient} bounced permanently", warn=True)
        if ctx.recent_automatic >= self.config.auto_replies_per_hour:
            return no(f"{recipient} already had {ctx.recent_automatic} automatic mails this hour "
                      f"(limits.auto_replies_per_hour = {self.config.auto_replies_per_hour})", warn=True)
        return None

    def template_for(self, ticket: TicketView) -> Template:
        return (self.templates.get(f"queue:{ticket.queue}") or self.templates.get(f"category:{ticket.category}")
                or self.template)

    def _draft(self, ctx: ResponseContext, recipient: str) -> Draft:
        smtp = self.config.smtp
        message_id = new_message_id(ctx.ticket.number, smtp.from_address)
        headers = [
            address_header("From", smtp.from_name, smtp.from_address),
            header_line("To", recipient),
            header_line("Subject", reply_subject(ctx.message.subject, ctx.ticket.number)),
            header_line("Date", date_value(clock.now())),
            header_line("Message-ID", message_id),
        ]
        if ctx.message.message_id:
            references = " ".join((*ctx.message.references[-10:], ctx.message.message_id))
            headers += [header_line("In-Reply-To", ctx.message.message_id), header_line("References", references)]
        headers += [header_line("Auto-Submitted", "auto-replied"), header_line("X-Auto-Response-Suppress", "All"),
                    header_line("Precedence", "auto_reply")]
        body = self.template_for(ctx.ticket).render(
            ticket=ctx.ticket, message=_template_message(ctx.message), mailbox=ctx.mailbox,
            first_response=ctx.first_response, on_call=ctx.on_call, answer_from=ctx.answer_from,
            articles=[{"title": a.title, "url": a.url} for a in ctx.articles])
        return Draft(self.name, smtp.envelope_from, (recipient,), message_id, text_message(headers, body))


def reply_address(message: ParsedMessage) -> str:
    """Reply-To, else From, else Sender: the first well-formed address, "" when none."""
    target = message.answer_to
    return one_line(target.email) if target else ""


def is_automatic(message: ParsedMessage, own_addresses: frozenset[str]) -> bool:
    """True for mail an autoresponder must not answer (RFC 3834, loops, robots)."""
    return bool(automatic_reason(message, own_addresses))


def _template_message(message: ParsedMessage) -> dict[str, object]:
    """Plain values only: the sandbox then has nothing to reach through."""
    return {
        "subject": message.subject,
        "from_name": message.from_.name if message.from_ else "",
        "from_email": message.from_.email if message.from_ else "",
        "message_id": message.message_id,
        "text": message.text,
    }
