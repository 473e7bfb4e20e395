"""The parse step: raw message bytes to a normalized ParsedMessage."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ticketd.daemon.parsers.model import Address, Attachment, ParsedMessage, UnreadableMessage

if TYPE_CHECKING:
    from ticketd.daemon.parsers.message import parse_message

__all__ = ["Address", "Attachment", "ParsedMessage", "UnreadableMessage", "parse_message"]


def __getattr__(name: str) -> Any:
    # The parser stack (mail-parser, tnefparse, the HTML and MIME walkers: ~70 ms) loads on first
    # use. The filters, rules and responders import only the model, and so does loading the
    # configuration, which every command does at start-up; the daemon's parsing runs in its workers.
    if name == "parse_message":
        from ticketd.daemon.parsers.message import parse_message

        return parse_message
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
