"""Plain data that the parse step hands to the rest of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ticketd.daemon.addresses import is_valid


@dataclass(frozen=True)
class Address:
    """One mailbox from an address header, RFC 2047-decoded."""

    name: str  # display name, "" when none
    email: str  # addr-spec as written (local@domain), "" when unreadable

    def __str__(self) -> str:
        if self.name:
            return f"{self.name} <{self.email}>"
        return self.email


@dataclass(frozen=True)
class Attachment:
    """A decoded MIME part that is not the message body.

    ``filename`` is the decoded name the sender gave (may be "" or contain
    path separators); it is display data only and never becomes a path.
    """

    filename: str
    content_type: str
    content: bytes
    content_id: str = ""  # without angle brackets; set for inline (cid:) parts
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.content)


@dataclass(frozen=True)
class ParsedMessage:
    """One inbound message, normalized. Produced by ``daemon.parsers.parse_message``."""

    from_: Address | None
    reply_to: tuple[Address, ...]
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    subject: str
    date: datetime | None  # timezone-aware when the header had a zone
    message_id: str  # with angle brackets, "" when missing
    in_reply_to: tuple[str, ...]  # message ids, with angle brackets
    references: tuple[str, ...]
    text: str  # readable text; derived from the HTML part when only HTML exists
    html: str  # the HTML body as sent, "" when none
    attachments: tuple[Attachment, ...]
    headers: tuple[tuple[str, str], ...]  # every header, decoded, in order
    defects: tuple[str, ...] = field(default=())  # what the parser had to repair
    sender: Address | None = None  # the Sender header (RFC 5322 3.6.2), None when absent
    # What the writer added: ``text`` less quoted history and signature (daemon.parsers.reply_text).
    new_text: str = ""
    auth_results: tuple[str, ...] = ()  # Authentication-Results values as received (not decoded), in order

    @property
    def requester(self) -> Address | None:
        """Who wrote: the first of From, Reply-To, Sender with a well-formed address
        ('From: "Jo" <>' names its author but gives no address to answer)."""
        return _first_valid(self.from_, *self.reply_to, self.sender)

    @property
    def answer_to(self) -> Address | None:
        """Where an answer goes (RFC 5322 3.6.2): Reply-To, then From, then Sender, well-formed only."""
        return _first_valid(*self.reply_to, self.from_, self.sender)

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


def _first_valid(*candidates: Address | None) -> Address | None:
    return next((a for a in candidates if a is not None and is_valid(a.email)), None)


class UnreadableMessage(Exception):
    """The bytes cannot be read as a message at all; the reason is the text."""
