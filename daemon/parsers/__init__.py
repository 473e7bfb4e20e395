"""The parse step: raw message bytes to a normalized ParsedMessage."""

from daemon.parsers.message import parse_message
from daemon.parsers.model import Address, Attachment, ParsedMessage, UnreadableMessage

__all__ = ["Address", "Attachment", "ParsedMessage", "UnreadableMessage", "parse_message"]
