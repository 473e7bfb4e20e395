"""The webhooks' part of `ticketd status`: per configured webhook, the events waiting and those failed."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ticketd.daemon.terminal import safe_line

if TYPE_CHECKING:
    from ticketd.daemon.config import Config
    from ticketd.storage.webhooks import Waiting


async def read(config: Config, now: datetime) -> list[dict[str, Any]]:
    """JSON-ready rows (inside the command's database block); [] without [[webhooks]]."""
    if not config.webhooks:
        return []
    from ticketd.storage import webhooks

    return rows(config, await webhooks.waiting(), now)


def rows(config: Config, waiting: dict[str, Waiting], now: datetime) -> list[dict[str, Any]]:
    out = []
    for hook in config.webhooks:  # the URL's host only: a chat tool's URL path is its token
        found = waiting.get(hook.name)
        oldest = found.oldest_pending if found else None
        out.append({"name": hook.name, "url": hook.where, "pending": found.pending if found else 0,
                    "failed": found.failed if found else 0,
                    "oldest_pending_age_seconds": round((now - oldest).total_seconds(), 3) if oldest else None})
    return out


def lines(data: dict[str, Any]) -> list[str]:
    return [f"webhook {safe_line(h['name'])} ({safe_line(h['url'])}): {h['pending']} pending"
            + (f", the oldest {h['oldest_pending_age_seconds']:.0f} s old" if h["pending"] else "")
            + (f"; {h['failed']} failed" if h["failed"] else "")
            for h in data.get("webhooks", ())]
