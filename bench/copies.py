"""The messages a history is copied from, and how one copy differs from another.

The first ``TEMPLATES`` messages of the run's own seed (so the same 60 customers) are parsed,
filtered, classified and acknowledged once, by the daemon's own functions. A copy renames every
Message-ID in its header (``<h<cycle>.local@domain>``), so Message-IDs and sha256 values are
distinct; a message without one gets a trace header that differs instead.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from bench.generate import generate
from bench.servers import MAILBOX, USER
from ticketd.daemon.config import Config
from ticketd.daemon.filters import ACCEPT, FilterContext
from ticketd.daemon.filters.registry import build_filters
from ticketd.daemon.outgoing import one_line
from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.daemon.prepare import parse_or_reason, run_filters
from ticketd.daemon.responders import Draft, ResponseContext, TicketView, build_responders
from ticketd.daemon.rules import classify, match_articles
from ticketd.storage.intake import header_message_id

TEMPLATES = 200  # distinct messages the history is copied from: two blocks of the generator's mix
MARK = 987654321987  # the ticket number templates are acknowledged with, replaced per copy
_RANDOM = random.Random(7)  # the acknowledgements' Message-ID tokens: uuid4 reads /dev/urandom, slow here


@dataclass(frozen=True)
class Template:
    """One generated message, as the pipeline saw it."""

    index: int
    raw: bytes
    parsed: ParsedMessage
    thread: int
    is_reply: bool
    ids: tuple[str, ...]  # every Message-ID in it (its own, In-Reply-To, References): renamed per copy
    head: int  # bytes from the start that hold every one of those ids (the header block)
    header_id: str  # the Message-ID intake reads from its header (storage.intake.header_message_id)
    verdicts: list[list[Any]]
    ticket: dict[str, Any]  # ticket columns for a new conversation
    drafts: tuple[Draft, ...]  # the responders' mail for a new ticket numbered MARK
    participants: tuple[str, ...]


def history_id(message_id: str, cycle: int) -> str:
    """The Message-ID of copy ``cycle`` of a template: ``<h3.local@domain>``."""
    inner = message_id[1:] if message_id.startswith("<") else message_id
    return f"<h{cycle}.{inner}"


def copy_raw(template: Template, cycle: int) -> bytes:
    """The raw bytes of one copy: every Message-ID renamed; without one, a trace header differs."""
    head, rest = template.raw[:template.head], template.raw[template.head:]  # the ids are all in the head
    for message_id in template.ids:
        head = head.replace(message_id.encode(), history_id(message_id, cycle).encode())
    if not template.parsed.message_id:
        head = f"X-Bench-History: {cycle}.{template.index}\r\n".encode() + head
    return head + rest


def copy_message_id(template: Template, cycle: int) -> str:
    """``header_message_id(copy_raw(template, cycle))``, without reading the copy again."""
    return history_id(template.header_id, cycle) if template.header_id in template.ids else template.header_id


def _head_length(raw: bytes, ids: tuple[str, ...]) -> int:
    """Where renaming can stop: the end of the header block, or of the message if an id is further on."""
    end = raw.find(b"\r\n\r\n")
    end = len(raw) if end < 0 else end + 4
    return len(raw) if any(i.encode() in raw[end:] for i in ids) else end


def _with_cc(raw: bytes, address: str) -> bytes:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if head.count(b"\r\nSubject:") != 1:
        return raw
    return head.replace(b"\r\nSubject:", f"\r\nCc: IT desk <{address}>\r\nSubject:".encode()) + sep + body


async def templates(config: Config, seed: int, count: int = TEMPLATES) -> list[Template]:
    """The first ``count`` messages of ``seed``, parsed, filtered, classified and acknowledged."""
    filters, responders = build_filters(config.filters), build_responders(config)
    found: list[Template] = []
    for index, message in enumerate(generate(count, seed, to=USER)):
        raw = message.raw
        if not message.is_reply and index % 10 == 3:
            raw = _with_cc(raw, f"it-desk@{message.sender.rpartition('@')[2]}")
        parsed = parse_or_reason(raw)
        if isinstance(parsed, str):
            continue
        decision = await run_filters(filters, FilterContext(parsed, raw, MAILBOX, config.own_addresses,
                                                            datetime.now(timezone.utc)))
        if decision.action != ACCEPT or decision.detail("bounce"):
            continue  # history holds processed mail only
        ids = tuple(dict.fromkeys(i for i in (message.message_id, parsed.message_id, *parsed.in_reply_to,
                                              *parsed.references) if i))
        rules = classify(parsed, MAILBOX, config.rules)
        sender = parsed.requester
        tags = list(dict.fromkeys((*rules.tags, *decision.tags)))
        ticket = dict(subject=one_line(parsed.subject, 998) or "(no subject)",
                      requester=(sender.email if sender else "").lower(),
                      requester_name=one_line(sender.name) if sender else "", mailbox=MAILBOX,
                      queue=rules.queue or MAILBOX, priority=rules.priority, category=rules.category,
                      fired_rules=list(rules.fired), tags=tags)
        view = TicketView(MARK, ticket["subject"], "new", rules.priority, rules.category, ticket["queue"],
                          ticket["requester"], ticket["requester_name"], tuple(tags))
        ctx = ResponseContext(view, parsed, True, MAILBOX, decision=decision, first_response=rules.first_response,
                              articles=match_articles(parsed, config.rules))
        drafts = tuple(d for r in responders for d in r.run(ctx) if isinstance(d, Draft))
        people = {a.email.lower() for a in (parsed.from_, *parsed.cc) if a is not None and a.email}
        found.append(Template(index, raw, parsed, message.thread, message.is_reply, ids, _head_length(raw, ids),
                              header_message_id(raw),
                              [[n, v.action, v.reason, v.details] for n, v in decision.verdicts], ticket, drafts,
                              tuple(sorted(people - {ticket["requester"]} - config.own_addresses))))
    return found


def copy_acknowledgement(config: Config, template: Template, cycle: int, draft: Draft, number: int) -> tuple[str, bytes]:
    """The Message-ID and bytes of one copy's acknowledgement (rendered once, for ticket MARK)."""
    domain = config.smtp.from_address.rpartition("@")[2] or "ticketd.invalid"
    message_id = f"<ticketd.{number}.{_RANDOM.getrandbits(128):032x}@{domain}>"  # daemon.outgoing.new_message_id, without the slow urandom
    # The headers name the right ticket; a base64-encoded body keeps the number it was rendered with.
    raw = draft.raw.replace(draft.message_id.encode(), message_id.encode()).replace(
        str(MARK).encode(), str(number).encode())
    for old in template.ids:
        raw = raw.replace(old.encode(), history_id(old, cycle).encode())
    return message_id, raw
