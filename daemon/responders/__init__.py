"""Responders: turn a committed-to-be ticket event into outbound mail drafts."""

from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Protocol

from ticketd.daemon.config import Config
from ticketd.daemon.filters import Decision
from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.daemon.rules import HelpArticle


@dataclass(frozen=True)
class TicketView:
    """What a responder (and its template) may see of a ticket."""

    number: int
    subject: str
    status: str
    priority: str
    category: str
    queue: str
    requester: str
    requester_name: str
    tags: tuple[str, ...] = ()
    fired_rules: tuple[str, ...] = ()  # the names of the rules that classified it (daemon.rules)


@dataclass(frozen=True)
class ResponseContext:
    ticket: TicketView
    message: ParsedMessage
    is_new_ticket: bool
    mailbox: str  # the mailbox name it arrived in, "" for `ticketd ingest`
    decision: Decision | None = None  # the filters' verdicts (no_auto_reply, tags)
    recent_automatic: int = 0  # automatic mails to this sender in the last hour
    suppressed: bool = False  # the sender's address bounced permanently not long ago
    first_response: str = ""  # expected first-response time for the ticket's priority
    articles: tuple[HelpArticle, ...] = ()  # help-centre articles matching the mail
    # After hours ([sla] only): the on-call agent was paged, or when the office opens again.
    on_call: bool = False
    answer_from: str = ""


@dataclass(frozen=True)
class Draft:
    """An outbound message ready for the outbox; its Message-ID is chosen before it is stored."""

    kind: str
    mail_from: str  # envelope sender
    recipients: tuple[str, ...]
    message_id: str
    raw: bytes  # CRLF, ready for SMTP DATA
    automatic: bool = True  # counts toward the per-recipient limit on automatic mail

    @property
    def message(self) -> EmailMessage:
        """The draft parsed back, for inspection (tests, CLI)."""
        parsed = message_from_bytes(self.raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass(frozen=True)
class Withheld:
    """Mail a responder would have sent but did not, and why: an event on the ticket."""

    kind: str
    recipient: str
    reason: str
    # A limit that held back mail to a customer (hourly limit, suppression) is worth a
    # warning; not answering an autoresponder is the normal case.
    warn: bool = False


class Responder(Protocol):
    name: str
    description: str

    def run(self, ctx: ResponseContext) -> list[Draft | Withheld]: ...


def build_responders(config: Config) -> list[Responder]:
    """The responders in force for ``config``, in the order they run."""
    from ticketd.daemon.responders.acknowledgement import Acknowledgement

    responders: list[Responder] = []
    if config.acknowledgement.enabled:
        responders.append(Acknowledgement(config))
    if config.team is not None:
        from ticketd.daemon.notices import load_notice_templates
        from ticketd.daemon.responders.notification import Notification

        # First: it compiles every template of the agents' mail, the survey and the reminder
        # (again where a file changed, on reload), so a broken one stops start-up here.
        load_notice_templates(config)
        responders.append(Notification(config))
    return responders
