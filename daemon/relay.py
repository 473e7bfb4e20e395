"""An agent's reply as the customer receives it: from the support address, in the customer's thread.

Only the agent's new text goes out (quoted history, signature and command lines removed) with
his attachments; the full original stays stored on the ticket. The customer never sees the
agent's own address nor the ticket's signed reply address: From is the support address, and
replies to it thread by the [#N] tag and References.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formataddr

from ticketd.daemon.config import Config
from ticketd.daemon.config_agents import AgentConfig
from ticketd.daemon.outgoing import date_value, new_message_id, one_line, reply_subject
from ticketd.daemon.parsers.model import Attachment
from ticketd.daemon.responders import Draft
from ticketd.storage import bulk, clock

MAX_REFERENCES = 10  # the first message and the nearest ones are what clients thread by


@dataclass(frozen=True)
class Thread:
    """The message ids a reply on this ticket continues: the customer's last, and the chain."""

    in_reply_to: str
    references: tuple[str, ...]


async def thread_of(ticket_id: int) -> Thread:
    """The customer's visible conversation on a ticket: their messages and what we relayed, in order."""
    rows = await bulk.fetch(
        "SELECT message_id, author, created_at, id FROM article WHERE ticket_id = ? AND internal = ? "
        "AND message_id != '' ORDER BY id", [ticket_id, False])
    sent = await bulk.fetch(
        "SELECT message_id, created_at, id FROM outbound_message WHERE ticket_id = ? "
        "AND kind IN ('agent_reply', 'acknowledgement') ORDER BY id", [ticket_id])
    customer = [r[0] for r in rows if r[1] == "customer"]
    ordered = sorted([(str(r[2]), r[0]) for r in rows if r[1] == "customer"] + [(str(r[1]), r[0]) for r in sent])
    chain = list(dict.fromkeys(mid for _, mid in ordered))
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1):]]
    return Thread(customer[-1] if customer else (chain[-1] if chain else ""), tuple(chain))


def relay_draft(config: Config, agent: AgentConfig, number: int, subject: str, recipients: tuple[str, ...],
                cc: tuple[str, ...], text: str, attachments: tuple[Attachment, ...], thread: Thread) -> Draft:
    """The agent's reply to ``recipients`` (To) and ``cc`` (followers), from the support address."""
    smtp = config.smtp
    message = EmailMessage(policy=SMTP)
    name = f"{one_line(agent.name)} via {one_line(smtp.from_name)}" if smtp.from_name else one_line(agent.name)
    message_id = new_message_id(number, smtp.from_address)
    message["From"] = formataddr((name, smtp.from_address))
    message["To"] = ", ".join(one_line(r) for r in recipients)
    if cc:
        message["Cc"] = ", ".join(one_line(r) for r in cc)
    message["Subject"] = reply_subject(subject, number)
    message["Date"] = date_value(clock.now())
    message["Message-ID"] = message_id
    if thread.in_reply_to:
        message["In-Reply-To"] = one_line(thread.in_reply_to)
    if thread.references:
        message["References"] = one_line(" ".join(thread.references), 1900)
    # A lone surrogate (undecodable bytes of the agent's mail) would make the whole reply unsendable.
    text = text.encode("utf-8", "replace").decode("utf-8")
    message.set_content(text if text.endswith("\n") else text + "\n")
    for item in attachments:
        maintype, subtype = _mime_type(item.content_type)
        # The name is display data: one line, no path (a client would show "..\evil" as given).
        filename = one_line(item.filename.replace("\\", "/").rsplit("/", 1)[-1], 200) or "attachment"
        message.add_attachment(item.content, maintype=maintype, subtype=subtype, filename=filename)
    return Draft("agent_reply", smtp.envelope_from, (*recipients, *cc), message_id, message.as_bytes(),
                 automatic=False)


_TOKEN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789!#$&-^_.+")  # RFC 6838 4.2 restricted names


def _mime_type(value: str) -> tuple[str, str]:
    """The attachment's type as two RFC 6838 names; application/octet-stream when it has none."""
    maintype, _, subtype = value.split(";", 1)[0].strip().lower().partition("/")
    if maintype and subtype and set(maintype) <= _TOKEN and set(subtype) <= _TOKEN and maintype != "multipart":
        return maintype, subtype
    return "application", "octet-stream"
