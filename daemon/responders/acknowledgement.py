"""acknowledgement: tell the requester of a new ticket its number."""

from __future__ import annotations

from email.utils import format_datetime
from datetime import datetime, timezone

from daemon.config import Config, ConfigError
from daemon.outgoing import address_header, header_line, new_message_id, one_line, reply_subject, text_message
from daemon.parsers.model import ParsedMessage
from daemon.responders import Draft, ResponseContext
from daemon.templating import load_template

# RFC 3834 section 2 and common practice: mail that must never get an automatic answer.
_BULK_PRECEDENCE = {"bulk", "junk", "list"}
_ROBOT_LOCALPARTS = ("mailer-daemon", "postmaster", "noreply", "no-reply", "donotreply", "do-not-reply")


class Acknowledgement:
    name = "acknowledgement"
    description = "Send the requester of a new ticket an acknowledgement carrying [#N]"

    def __init__(self, config: Config) -> None:
        self.config = config
        try:
            self.template = load_template(config.acknowledgement.template)
        except ValueError as exc:
            raise ConfigError(f"{config.path}: acknowledgement.template: {exc}") from None

    def run(self, ctx: ResponseContext) -> list[Draft]:
        if not ctx.is_new_ticket or is_automatic(ctx.message, self.config.own_addresses):
            return []
        recipient = reply_address(ctx.message)
        if not recipient or recipient.lower() in self.config.own_addresses:
            return []
        return [self._draft(ctx, recipient)]

    def _draft(self, ctx: ResponseContext, recipient: str) -> Draft:
        smtp = self.config.smtp
        message_id = new_message_id(ctx.ticket.number, smtp.from_address)
        headers = [
            address_header("From", smtp.from_name, smtp.from_address),
            header_line("To", recipient),
            header_line("Subject", reply_subject(ctx.message.subject, ctx.ticket.number)),
            header_line("Date", format_datetime(datetime.now(timezone.utc))),
            header_line("Message-ID", message_id),
        ]
        if ctx.message.message_id:
            references = " ".join((*ctx.message.references[-10:], ctx.message.message_id))
            headers += [header_line("In-Reply-To", ctx.message.message_id), header_line("References", references)]
        headers += [header_line("Auto-Submitted", "auto-replied"), header_line("X-Auto-Response-Suppress", "All"),
                    header_line("Precedence", "auto_reply")]
        body = self.template.render(ticket=ctx.ticket, message=_template_message(ctx.message),
                                    mailbox=ctx.mailbox.name if ctx.mailbox else "")
        return Draft(self.name, smtp.envelope_from, (recipient,), message_id, text_message(headers, body))


def reply_address(message: ParsedMessage) -> str:
    for address in (*message.reply_to, message.from_):
        if address is not None and "@" in address.email:
            return one_line(address.email)
    return ""


def is_automatic(message: ParsedMessage, own_addresses: frozenset[str]) -> bool:
    """True for mail an autoresponder must not answer (RFC 3834, loops, robots)."""
    auto = (message.header("Auto-Submitted") or "no").strip().lower()
    if auto.split(";")[0].strip() != "no":
        return True
    if (message.header("Precedence") or "").strip().lower() in _BULK_PRECEDENCE:
        return True
    if any(message.header(h) is not None for h in ("List-Id", "List-Unsubscribe", "X-Auto-Response-Suppress",
                                                 "X-Autoreply", "X-Autorespond")):
        return True
    sender = message.from_.email.lower() if message.from_ else ""
    return sender in own_addresses or sender.split("@")[0] in _ROBOT_LOCALPARTS


def _template_message(message: ParsedMessage) -> dict[str, object]:
    """Plain values only: the sandbox then has nothing to reach through."""
    return {
        "subject": message.subject,
        "from_name": message.from_.name if message.from_ else "",
        "from_email": message.from_.email if message.from_ else "",
        "message_id": message.message_id,
        "text": message.text,
    }
