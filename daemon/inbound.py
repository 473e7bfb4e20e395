"""``ticketd inbound``: every inbound message's fate — its ticket, its duplicate, or why it is held."""

from __future__ import annotations

from typing import Any

from ticketd.daemon.config import Config
from ticketd.daemon.terminal import safe_line

# storage.models.InboundStatus's RECEIVED and FINAL, spelled out: the command line offers them
# as --status choices when it builds its parser, for every command, and storage.models would
# bring the ORM (~0.3 s) with it. tests/test_inbound.py keeps the two lists equal.
STATUSES = ("received", "processed", "duplicate", "quarantined", "rejected")


async def listing(config: Config, status: str | None, limit: int | None) -> list[dict[str, Any]]:
    from ticketd.storage import queries
    from ticketd.storage.db import database

    async with database(config.database_url):
        return await queries.inbound_list(status, limit)


async def detail(config: Config, inbound_id: int) -> dict[str, Any]:
    from ticketd.daemon.quarantine import QuarantineError, summary_headers
    from ticketd.storage import intake, queries
    from ticketd.storage.db import database

    async with database(config.database_url):
        row = await queries.inbound_row(inbound_id)
        if row is None:
            raise QuarantineError(f"no inbound message {inbound_id}")
        raw = (await intake.raw_of([row])).get(row.id)
        result = await queries.inbound_detail(row, summary_headers(raw or b""))
    result["raw_removed"] = raw is None  # by retention (storage.retention): the row and its fate stay
    return result


def render_list(rows: list[dict[str, Any]]) -> str:
    # Cut to width before escaping, so an escape is never cut in half.
    lines = [f"{r['id']:<7} {safe_line((r['mailbox'] or '-')[:12]):<12} {safe_line(r['uid'] or '-'):>6} "
             f"{r['status']:<11} {('#' + str(r['ticket'])) if r['ticket'] else '-':<7} "
             f"{safe_line(r['message_id'][:40]):<40} {safe_line(r['reason'][:80])}" for r in rows]
    return "\n".join([*lines, f"{len(rows)} inbound message(s)"])


def render_detail(row: dict[str, Any]) -> str:
    lines = [f"Inbound message {row['id']}: {row['status']}"]
    for key in ("mailbox", "uid", "uidvalidity", "message_id", "ticket", "duplicate_of", "reason", "size",
                "attempts", "truncated", "received_at", "processed_at"):
        lines.append(f"  {key}: {safe_line(row[key] if row[key] is not None else '-')}")
    if row.get("raw_removed"):
        lines.append("  raw message: removed by retention (headers no longer known)")
    lines += [f"  {safe_line(name)}: {safe_line(value)}" for name, value in row["headers"].items()]
    for name, action, reason, _ in row["verdicts"]:
        lines.append(f"  filter {safe_line(name)}: {safe_line(action)}{' (' + safe_line(reason) + ')' if reason else ''}")
    return "\n".join(lines)
