"""Helpers for mail we write: Message-IDs, reply subjects, header-safe values."""

from __future__ import annotations

import re
import uuid

_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw|wg|fwd?)\s*:\s*", re.IGNORECASE)
_TAG = re.compile(r"\[#\d+\]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def one_line(value: str, limit: int = 900) -> str:
    """Collapse CR, LF and other controls so peer data can never start a new header."""
    return " ".join(_CONTROL.sub(" ", value).split())[:limit]


def new_message_id(ticket_number: int, from_address: str) -> str:
    domain = from_address.rpartition("@")[2] or "ticketd.invalid"
    return f"<ticketd.{ticket_number}.{uuid.uuid4().hex}@{one_line(domain)}>"


def reply_subject(subject: str, ticket_number: int) -> str:
    """``Re: <subject> [#N]``, without piling up Re: or a second tag."""
    tag = f"[#{ticket_number}]"
    # Another ticket's tag in a new ticket's subject would invite replies onto the wrong ticket.
    text = one_line(_TAG.sub(lambda m: m.group(0) if m.group(0) == tag else "", subject)) or "(no subject)"
    if tag not in text:
        text = f"{text} {tag}"
    return text if _REPLY_PREFIX.match(text) else f"Re: {text}"
