"""`ticketd status [--json]`: the running daemon's state, read from the database alone.

So it works from any shell, as any user who may read the database, while the daemon runs (or
after it stopped: then the mailboxes read "not connected", or stale if it died). The daemon
writes each mailbox's connection (daemon.health); backlog, outbox and timers are the rows
themselves.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any, Sequence

from ticketd.daemon.config_instance import InstanceConfig
from ticketd.daemon.terminal import emit, safe_line

if TYPE_CHECKING:
    from ticketd.daemon.config import Config
    from ticketd.storage.leases import Holding, InstanceRow
    from ticketd.storage.status import MailboxRow, Outbox, Timers

# Imported by the command line's parser: the database and daemon.health are imported when it runs.


def add_command(sub: Any) -> None:
    status = sub.add_parser("status", help="per mailbox: connected, last fetch, backlog, last error; "
                                           "the outbox and the timers (reads the database only)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=status_command)


async def status_command(config: Config, args: argparse.Namespace) -> int:
    from ticketd.daemon import webhook_status
    from ticketd.daemon.health import HEARTBEAT
    from ticketd.storage import clock, leases, status
    from ticketd.storage.db import database

    now = clock.now()
    async with database(config.database_url, config.busy_timeout):
        rows, backlog = await status.mailboxes(), await status.backlog()
        outbox, timers = await status.outbox(), await status.timers(now)
        hooks = await webhook_status.read(config, now)
        run, db_clock = leases.tortoise_run()
        held, instances = await leases.holdings(run, db_clock), await leases.instances(run, db_clock)
    # Three missed heartbeats: the daemon is not running, or hangs.
    data = report(config, now, rows, backlog, outbox, timers, 3 * HEARTBEAT, held, instances)
    if hooks:
        data["webhooks"] = hooks
    return emit(data, args.json, render)


def report(config: Config, now: datetime, rows: dict[str, MailboxRow], backlog: dict[str, int],
           outbox: Outbox, timers: Timers, stale_after: float, held: dict[str, Holding] | None = None,
           instances: Sequence[InstanceRow] = ()) -> dict[str, Any]:
    """The status as JSON-ready data (README "Metrics and status" lists the fields)."""
    held = held or {}
    boxes = [_mailbox(box.name, box.address, rows.get(box.name), backlog.get(box.name, 0), now, stale_after)
             | _lease(held.get(box.name)) for box in config.mailboxes]
    boxes += [{"name": a.name, "address": a.address, "via": "mta", "backlog": backlog.get(a.name, 0)}
              for a in config.addresses]
    oldest = outbox.oldest_pending
    return {
        "at": now.isoformat(),
        "mailboxes": boxes,
        "outbox": {"pending": outbox.pending, "oldest_pending_at": _iso(oldest),
                   "oldest_pending_age_seconds": round((now - oldest).total_seconds(), 3) if oldest else None,
                   "next_try_at": _iso(outbox.next_try)},
        "timers": {"due": timers.due, "next_due_at": _iso(timers.next_due), "next_kind": timers.next_kind},
        "instances": [_instance(row, held, config) for row in instances],
    }


def _lease(holding: Holding | None) -> dict[str, Any]:
    """Who fetches the mailbox: the instance holding its lease now (None: free, or it ran out)."""
    live = holding is not None and holding.seconds_left > 0
    return {"holder": holding.holder if live and holding else None,
            "lease_expires": _iso(holding.expires_at) if holding else None,
            "lease_left_seconds": round(holding.seconds_left, 3) if live and holding else None}


def _instance(row: InstanceRow, held: dict[str, Holding], config: Config) -> dict[str, Any]:
    """A `ticketd run` as it last recorded itself; alive while seen within a lease (the database's clock)."""
    lease = (config.instance or InstanceConfig()).lease_seconds
    return {"id": row.id, "name": row.name, "host": row.host, "pid": row.pid, "started_at": _iso(row.started_at),
            "last_seen": _iso(row.last_seen), "alive": row.seconds_since_seen <= lease,
            "mailboxes": sorted(h.mailbox for h in held.values() if h.holder == row.id and h.seconds_left > 0)}


def _mailbox(name: str, address: str, row: MailboxRow | None, backlog: int, now: datetime,
             stale_after: float) -> dict[str, Any]:
    """One IMAP mailbox; without a row the daemon never ran with it."""
    stale = row is None or row.updated_at is None or (now - row.updated_at).total_seconds() > stale_after
    return {
        "name": name, "address": address, "via": "imap",
        # A daemon that died (kill -9, power cut) left "connected" behind: a stale row proves nothing.
        "connected": bool(row and row.connected and not stale),
        "since": _iso(row.since if row else None),
        "last_check_at": _iso(row.last_check_at if row else None),
        "last_fetch_at": _iso(row.last_fetch_at if row else None),
        "backlog": backlog,
        "server_messages": row.server_messages if row else None,
        "server_unfetched": row.server_unfetched if row else None,
        "last_error": row.last_error if row else "",
        "last_error_at": _iso(row.last_error_at if row else None),
        "updated_at": _iso(row.updated_at if row else None),
        "stale": stale,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def render(data: dict[str, Any]) -> str:
    """For a person: a few lines per mailbox, then the outbox and the timers (peer text escaped)."""
    now = datetime.fromisoformat(data["at"])
    lines = [line for box in data["mailboxes"] for line in _box_lines(box, now)]
    outbox = data["outbox"]
    oldest = outbox["oldest_pending_age_seconds"]
    lines.append(f"outbox: {outbox['pending']} pending" + (f", the oldest {_span(oldest)} old" if oldest is not None
                                                          else ""))
    timers = data["timers"]
    upcoming = (f"; next {_ago(timers['next_due_at'], now)} ({safe_line(timers['next_kind'])})"
                if timers["next_due_at"] else "")
    lines.append(f"timers: {timers['due']} due now{upcoming}")
    from ticketd.daemon.webhook_status import lines as webhook_lines

    lines += [_instance_line(one, now) for one in data["instances"]]
    return "\n".join(lines + webhook_lines(data))


def _instance_line(one: dict[str, Any], now: datetime) -> str:
    state = "alive" if one["alive"] else f"not seen since {_ago(one['last_seen'], now)} (dead, or cut off)"
    boxes = ", ".join(safe_line(name) for name in one["mailboxes"]) or "no mailbox"
    return (f"instance {safe_line(one['id'])} ({safe_line(one['name'])}, pid {one['pid']} on "
            f"{safe_line(one['host'])}): {state}; holds {boxes}")


def _box_lines(box: dict[str, Any], now: datetime) -> list[str]:
    head = f"mailbox {safe_line(box['name'])} ({safe_line(box['address'])})"
    if box["via"] == "mta":
        return [f"{head}: delivered by the MTA; backlog {box['backlog']}"]
    if box["updated_at"] is None:
        state = "never run by the daemon"
    elif box["stale"]:
        state = f"no word from the daemon since {_ago(box['updated_at'], now)}"
    else:
        state = ("connected" if box["connected"] else "not connected") + \
            (f" since {_ago(box['since'], now)}" if box["since"] else "")
    lines = [f"{head}: {state}", _holder_line(box),
             f"  last check {_ago(box['last_check_at'], now)}, last fetch {_ago(box['last_fetch_at'], now)}",
             f"  backlog {box['backlog']} stored, not processed" + _server(box)]
    if box["last_error"]:
        lines.append(f"  last error {_ago(box['last_error_at'], now)}: {safe_line(box['last_error'])}")
    return lines


def _holder_line(box: dict[str, Any]) -> str:
    if box["holder"] is not None:
        return f"  fetched by instance {safe_line(box['holder'])}, its lease for {_span(box['lease_left_seconds'])} more"
    if box["lease_expires"] is not None:
        return "  fetched by no instance now (the last lease ran out or was released)"
    return "  fetched by no instance yet"


def _server(box: dict[str, Any]) -> str:
    if box["server_unfetched"] is None:
        return ""
    return f"; {box['server_unfetched']} on the server not fetched yet (of {box['server_messages']})"


def _ago(stamp: str | None, now: datetime) -> str:
    if stamp is None:
        return "never"
    seconds = (now - datetime.fromisoformat(stamp)).total_seconds()
    return f"{_span(seconds)} ago" if seconds >= 0 else f"in {_span(-seconds)}"


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"
