"""Filters: small named units that decide what happens to an inbound message.

A filter looks at one message and returns a ``Verdict``. The pipeline runs the filters named
in the config (``[filters] pipeline = [...]``), in that order, and acts on the verdicts after
all of them ran: the strongest action wins (reject > quarantine > defer > tag > accept), every
verdict's reasons and tags are stored with the message, and ``no_auto_reply`` from any filter
keeps responders quiet. Filters never write to the database or send mail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ticketd.daemon.parsers.model import ParsedMessage

ACCEPT, TAG, DEFER, QUARANTINE, REJECT = "accept", "tag", "defer", "quarantine", "reject"
STRENGTH = {ACCEPT: 0, TAG: 1, DEFER: 2, QUARANTINE: 3, REJECT: 4}


@dataclass(frozen=True)
class Verdict:
    """One filter's decision about one message."""

    action: str = ACCEPT  # accept | tag | defer | quarantine | reject
    reason: str = ""  # one line, shown by `tickets show` / `quarantine show`
    tags: tuple[str, ...] = ()
    no_auto_reply: bool = False  # accept, but never answer automatically (RFC 3834)
    details: dict[str, Any] = field(default_factory=dict)  # e.g. spam score and rules, bounce data


@dataclass(frozen=True)
class FilterContext:
    """What a filter may look at."""

    message: ParsedMessage
    raw: bytes
    mailbox: str  # the mailbox name the message arrived in, "" for `ticketd ingest`
    own_addresses: frozenset[str]  # every monitored address and our From address, lower case
    now: datetime


class Filter(Protocol):
    """A filter unit: ``name`` is the key admins write in ``[filters] pipeline``."""

    name: str
    description: str

    async def check(self, ctx: FilterContext) -> Verdict: ...


@dataclass(frozen=True)
class Decision:
    """All verdicts of one message, combined."""

    action: str
    reasons: tuple[str, ...]
    tags: tuple[str, ...]
    no_auto_reply: bool
    verdicts: tuple[tuple[str, Verdict], ...]

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def detail(self, filter_name: str) -> dict[str, Any]:
        for name, verdict in self.verdicts:
            if name == filter_name:
                return verdict.details
        return {}


def combine(verdicts: list[tuple[str, Verdict]]) -> Decision:
    """The strongest action wins; reasons and tags of every verdict are kept."""
    action = max((v.action for _, v in verdicts), key=STRENGTH.__getitem__, default=ACCEPT)
    reasons = tuple(f"{name}: {v.reason}" for name, v in verdicts if v.reason and v.action != ACCEPT)
    tags = tuple(dict.fromkeys(t for _, v in verdicts for t in v.tags))
    quiet = any(v.no_auto_reply for _, v in verdicts)
    return Decision(action, reasons, tags, quiet, tuple(verdicts))
