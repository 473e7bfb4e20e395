"""Is this inbound message one we already processed? Same bytes, or the same ID, sender and body.

A Message-ID alone proves nothing: anyone can send a mail carrying the ID of a message that
is still on its way, and silence it. So an ID match counts only when the sender and the
readable body match too (the same mail delivered to two mailboxes differs only in its trace
headers); a different message with a known ID is processed as its own, and the collision noted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.storage import bulk
from ticketd.storage.models import InboundMessage, InboundStatus


@dataclass(frozen=True)
class Earlier:
    """A processed inbound message, as much of it as the comparison needs."""

    id: int
    ticket_id: int | None
    sha256: str
    message_id: str
    sender: str  # as stored on its article: str(ParsedMessage.from_)
    text: str


def key(row: InboundMessage) -> str:
    return row.message_id or f"sha256:{row.sha256}"


def sender_of(msg: ParsedMessage) -> str:
    return str(msg.from_ or "")


def earlier_of(row: InboundMessage, msg: ParsedMessage) -> Earlier:
    return Earlier(row.id, row.ticket_id, row.sha256, row.message_id, sender_of(msg), msg.text)


def same_message(row: InboundMessage, msg: ParsedMessage, candidates: list[Earlier]) -> tuple[Earlier | None, str]:
    """The earlier message this one repeats, and how we know; (None, "") when it is new."""
    for earlier in candidates:
        if earlier.id != row.id and earlier.sha256 == row.sha256:
            return earlier, "the same bytes"
    for earlier in candidates:
        if (earlier.id != row.id and row.message_id and earlier.message_id == row.message_id
                and earlier.sender == sender_of(msg) and earlier.text == msg.text):
            return earlier, "the same Message-ID, sender and body"
    return None, ""


async def load_earlier(rows: list[InboundMessage]) -> dict[str, list[Earlier]]:
    """Processed messages sharing a key with ``rows``, in one query (two on a collision).

    Both lookups are served by an index on (key, status): the history of processed rows is
    never walked, however long it grows.
    """
    ids = sorted({r.message_id for r in rows if r.message_id})
    hashes = sorted({r.sha256 for r in rows if not r.message_id})
    clauses, values = [], []
    if ids:
        clauses.append(f"(message_id IN ({bulk.marks(len(ids))}) AND status = ?)")
        values += [*ids, InboundStatus.PROCESSED]
    if hashes:
        clauses.append(f"(sha256 IN ({bulk.marks(len(hashes))}) AND status = ? AND message_id = '')")
        values += [*hashes, InboundStatus.PROCESSED]
    if not clauses:
        return {}
    found = await bulk.fetch("SELECT id, message_id, sha256, ticket_id FROM inbound_message WHERE "
                             + " OR ".join(clauses), values)
    if not found:
        return {}
    # The article's sender and text are needed only when the bytes differ (rare: a second
    # mailbox's copy, or a collision).
    hashes_by_key: dict[str, set[str]] = {}
    for r in rows:
        hashes_by_key.setdefault(key(r), set()).add(r.sha256)
    need = [int(r[0]) for r in found if hashes_by_key.get(r[1] or f"sha256:{r[2]}", set()) - {r[2]}]
    articles = {int(a[0]): (a[1], a[2]) for a in await bulk.fetch(
        f"SELECT inbound_id, sender, text FROM article WHERE inbound_id IN ({bulk.marks(len(need))})", need)} \
        if need else {}
    result: dict[str, list[Earlier]] = {}
    for row_id, message_id, sha256, ticket_id in found:
        sender, text = articles.get(int(row_id), ("", ""))
        result.setdefault(message_id or f"sha256:{sha256}", []).append(
            Earlier(int(row_id), ticket_id, sha256, message_id, sender, text))
    return result
