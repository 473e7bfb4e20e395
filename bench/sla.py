"""Benchmark: `ticketd sla run` over N open tickets with SLA steps, and a check that each due step fired once.

Two tickets go through the real pipeline on a simulated clock: one fresh (its first-response and
resolution warnings waiting) and one whose first-response warning has fired (its breach
waiting). Their rows (ticket, participants, events, due steps) are then copied N times with
multi-row INSERTs, each copy shifted in time, so about ``--due`` of the tickets have a step due
at ``--now``. The policy is P1 on the 24x7 calendar, where shifting a ticket shifts its due
times by as much, so every copied step is one the real scheduler would have written.
`python -m ticketd.daemon sla run --now ...` then runs as a process of its own, timed; afterwards the
database must show each due step done, one warning or breach event and one mail per fired
step, nothing else changed, and a second run must fire nothing.

    python -m bench.sla --tickets 10000            # exit 1 if the once-only check fails
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.servers import signing_key

PROJECT = Path(__file__).resolve().parents[1]
SUPPORT, AGENT, CUSTOMER = "support@example.test", "alice@example.test", "ann@example.org"
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # the templates' clock
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # the run's --now
MIN = timedelta(minutes=1)
CHUNK = 500  # rows per INSERT: well under SQLite's 32,766 bound variables
# Ages (minutes at NOW) of the copies. P1: first response 1 h (warned at 45 min), resolution 4 h
# (warned at 3 h). Fresh: warning due at 45..59 (not yet breached, or the warning would fire
# nothing). Warned (at 50): breach due at 60..170, before the resolution warning at 180.
AGES = {("fresh", True): (46, 59), ("fresh", False): (0, 44),
        ("warned", True): (61, 170), ("warned", False): (51, 59)}
FIRES = {"sla_warn": "sla_warning", "sla_breach": "sla_breach"}  # a step's level -> its event and mail kind


def config_text(directory: Path) -> str:
    key = signing_key(directory)
    return f"""
[database]
url = "sqlite://{directory}/ticketd.db"

[smtp]
host = "127.0.0.1"
port = 2525
security = "none"
from = "Example Support <{SUPPORT}>"

[signing]
secret_file = "{key}"

[[agents]]
name = "Alice Agent"
address = "{AGENT}"

[queues.support]
notify = ["{AGENT}"]

[rules]
default_priority = "P1"

[sla]

[sla.policies.P1]
calendar = "24x7"

[[mailboxes]]
name = "support"
address = "{SUPPORT}"
after_processing = "seen"

[mailboxes.imap]
host = "127.0.0.1"
port = 10143
security = "none"
username = "{SUPPORT}"
password = "secret"
"""


def mail(message_id: str) -> bytes:
    return (f"From: Ann <{CUSTOMER}>\r\nTo: {SUPPORT}\r\nSubject: The site is down\r\nMessage-ID: {message_id}\r\n"
            "Date: Tue, 01 Dec 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\nNothing loads since this morning.\r\n").encode()


async def _templates(config_path: Path) -> dict[str, tuple[int, datetime]]:
    """The two template tickets through the real pipeline: {shape: (ticket id, created at)}."""
    from ticketd.daemon import due
    from ticketd.daemon.config import load_config
    from ticketd.daemon.pipeline import Processor
    from ticketd.storage import intake
    from ticketd.storage.db import database
    from ticketd.storage.models import Ticket

    cfg = load_config(config_path)
    now = T0

    async def customer(message_id: str) -> int:
        raw = mail(message_id)
        row = await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), cfg.max_message_bytes)
        [outcome] = await processor.process([row], cfg.mailboxes[0])
        return int((await Ticket.get(number=outcome.ticket_number)).id)

    async with database(cfg.database_url):
        processor = Processor(cfg, clock=lambda: now)
        warned = await customer("<warned@example.org>")
        now = T0 + 50 * MIN
        if await due.run_due(processor, kind_prefix="sla_") != 1:
            raise RuntimeError("the template's first-response warning did not fire")
        fresh = await customer("<fresh@example.org>")
    return {"warned": (warned, T0), "fresh": (fresh, T0 + 50 * MIN)}


def _datetime_columns() -> dict[str, set[str]]:
    from tortoise.fields import DatetimeField

    from ticketd.storage.models import DueStep, Event, Participant, Ticket

    return {model._meta.db_table: {f.source_field or name for name, f in model._meta.fields_map.items()
                                   if isinstance(f, DatetimeField)}
            for model in (Ticket, Participant, Event, DueStep)}


def _shift(value: str | None, by: timedelta) -> str | None:
    if value is None:
        return None
    at = datetime.fromisoformat(value) + by
    return at.isoformat(sep=value[10])  # as stored: "T" or " "


@dataclass
class Filled:
    tickets: int = 0
    due: dict[int, tuple[int, str]] = field(default_factory=dict)  # ticket id -> (step id, kind) due at NOW
    undone: set[int] = field(default_factory=set)  # copied step ids not due: they must stay undone
    seconds: float = 0.0
    max_ids: dict[str, int] = field(default_factory=dict)  # table -> max id before the run


def fill(db: Path, shapes: dict[str, tuple[int, datetime]], tickets: int, due_share: float, seed: int) -> Filled:
    """``tickets`` copies of the templates (the templates themselves removed), written in bulk."""
    started = time.perf_counter()
    dates = _datetime_columns()
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    con.executescript("PRAGMA synchronous = OFF;")
    rows: dict[str, dict[str, list[sqlite3.Row]]] = {}
    for shape, (ticket_id, _) in shapes.items():
        rows[shape] = {
            "ticket": con.execute("SELECT * FROM ticket WHERE id = ?", (ticket_id,)).fetchall(),
            "participant": con.execute("SELECT * FROM participant WHERE ticket_id = ?", (ticket_id,)).fetchall(),
            "event": con.execute("SELECT * FROM event WHERE ticket_id = ? ORDER BY id", (ticket_id,)).fetchall(),
            "due_step": con.execute("SELECT * FROM due_step WHERE ticket_id = ? ORDER BY id", (ticket_id,)).fetchall(),
        }
    for table in ("due_step", "event", "participant", "outbound_message"):
        con.execute(f"DELETE FROM {table}")  # the templates' own rows, acknowledgements included
    con.execute("DELETE FROM ticket")
    ids = {table: 1 for table in ("ticket", "participant", "event", "due_step")}
    out: dict[str, list[tuple[Any, ...]]] = {table: [] for table in ids}
    columns = {table: [row[1] for row in con.execute(f"PRAGMA table_info({table})")] for table in ids}
    rng, filled = random.Random(seed), Filled()
    for n in range(1, tickets + 1):
        shape = "fresh" if n % 2 else "warned"
        is_due = rng.random() < due_share
        low, high = AGES[(shape, is_due)]
        template_id, created = shapes[shape]
        by = NOW - timedelta(minutes=rng.uniform(low, high)) - created
        by = timedelta(seconds=round(by.total_seconds()))
        ticket_id = ids["ticket"]
        for table, template_rows in rows[shape].items():
            for row in template_rows:
                values = dict(row)
                if "id" in values:
                    values["id"] = ids[table]
                    ids[table] += 1
                if table == "ticket":
                    values["number"] = n
                else:
                    values["ticket_id"] = ticket_id
                for name in dates[table] & values.keys():
                    values[name] = _shift(values[name], by)
                if table == "due_step" and values["done_at"] is None:
                    if datetime.fromisoformat(values["due_at"]) <= NOW:
                        if ticket_id in filled.due:
                            raise RuntimeError(f"ticket {ticket_id}: two steps due, the ages are wrong")
                        filled.due[ticket_id] = (values["id"], values["kind"])
                    else:
                        filled.undone.add(values["id"])
                out[table].append(tuple(values[c] for c in columns[table]))
        if bool(ticket_id in filled.due) != is_due:
            raise RuntimeError(f"ticket {ticket_id} ({shape}, {'due' if is_due else 'not due'}): ages are wrong")
    for table in ("ticket", "participant", "event", "due_step"):  # parents first
        names = ", ".join(f'"{c}"' for c in columns[table])
        for i in range(0, len(out[table]), CHUNK):
            chunk = out[table][i:i + CHUNK]
            marks = ", ".join(["(" + ", ".join("?" * len(columns[table])) + ")"] * len(chunk))
            con.execute(f"INSERT INTO {table} ({names}) VALUES {marks}", [v for row in chunk for v in row])
    con.execute("UPDATE counter SET value = ? WHERE name = 'ticket'", (tickets,))
    con.commit()
    for table in ("event", "outbound_message", "due_step"):
        filled.max_ids[table] = con.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
    con.close()
    filled.tickets, filled.seconds = tickets, time.perf_counter() - started
    return filled


def sla_run(config_path: Path) -> tuple[float, int, str]:
    """`ticketd sla run --now NOW` as a process: (wall seconds, steps it says it ran, its output)."""
    env = dict(os.environ, PYTHONPATH=str(PROJECT))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ticketd.daemon", "-c", str(config_path), "sla", "run",
                           "--now", NOW.isoformat()], capture_output=True, text=True, env=env, cwd=PROJECT,
                          timeout=600)
    seconds = time.perf_counter() - started
    output = done.stdout + done.stderr
    found = re.search(r"(\d+) SLA step\(s\) run", done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"sla run failed ({done.returncode}): {output[-2000:]}")
    return seconds, int(found.group(1)), output


def check(db: Path, filled: Filled, fired: int) -> list[str]:
    """What is wrong after the first run: each due step done, fired once; nothing else fired."""
    problems = []
    con = sqlite3.connect(db)
    if fired != len(filled.due):
        problems.append(f"sla run said {fired} step(s), {len(filled.due)} were due")
    done = {row[0] for row in con.execute("SELECT id FROM due_step WHERE done_at IS NOT NULL")}
    if missed := [s for s, _ in filled.due.values() if s not in done]:
        problems.append(f"{len(missed)} due step(s) not done, e.g. {missed[:5]}")
    # A fired ticket's other steps are replaced (done, then written anew); others' must stay undone.
    fired_tickets = set(filled.due)
    touched = {row[0] for row in con.execute("SELECT ticket_id FROM due_step WHERE id > ?",
                                             (filled.max_ids["due_step"],))}
    if stray := touched - fired_tickets:
        problems.append(f"{len(stray)} ticket(s) rescheduled without a due step, e.g. {sorted(stray)[:5]}")
    undone = {row[0] for row in con.execute("SELECT id, ticket_id FROM due_step WHERE done_at IS NULL")
              if row[1] not in fired_tickets}
    if lost := {s for s in filled.undone if s not in undone and _ticket_of(con, s) not in fired_tickets}:
        problems.append(f"{len(lost)} step(s) not due were done, e.g. {sorted(lost)[:5]}")
    events = con.execute("SELECT ticket_id, what FROM event WHERE id > ? AND what IN ('sla_warning', 'sla_breach')",
                         (filled.max_ids["event"],)).fetchall()
    mails = con.execute("SELECT ticket_id, kind FROM outbound_message WHERE id > ?",
                        (filled.max_ids["outbound_message"],)).fetchall()
    for name, found in (("event", events), ("mail", mails)):
        per_ticket = Counter(ticket for ticket, _ in found)
        wrong = [t for t in fired_tickets | set(per_ticket) if per_ticket[t] != 1]
        if wrong:
            problems.append(f"{len(wrong)} ticket(s) without exactly one {name}, e.g. "
                            f"{[(t, per_ticket[t]) for t in sorted(wrong)[:5]]}")
        kinds = {ticket: kind for ticket, kind in found}
        mismatched = [t for t, (_, step) in filled.due.items()
                      if t in kinds and kinds[t] != FIRES[step.partition(":")[0]]]
        if mismatched:
            problems.append(f"{len(mismatched)} ticket(s) whose {name} is not their step's, e.g. {mismatched[:5]}")
    left = con.execute("SELECT count(*) FROM due_step WHERE done_at IS NULL AND due_at <= ?",
                       (_stored(con, NOW),)).fetchone()[0]
    if left:
        problems.append(f"{left} step(s) still due after the run")
    con.close()
    return problems


def _ticket_of(con: sqlite3.Connection, step_id: int) -> int:
    return int(con.execute("SELECT ticket_id FROM due_step WHERE id = ?", (step_id,)).fetchone()[0])


def _stored(con: sqlite3.Connection, at: datetime) -> str:
    """``at`` as the due_step rows store it, so the text comparison in SQL is a time comparison."""
    sample = con.execute("SELECT due_at FROM due_step LIMIT 1").fetchone()[0]
    return at.isoformat(sep=sample[10])


def counts(db: Path) -> tuple[int, int, int]:
    con = sqlite3.connect(db)
    found = tuple(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                  for table in ("event", "outbound_message", "due_step"))
    con.close()
    return found  # type: ignore[return-value]


def run(tickets: int, due_share: float, seed: int, directory: Path, profile: bool = False) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "ticketd.toml"
    config_path.write_text(config_text(directory))
    db = directory / "ticketd.db"
    shapes = asyncio.run(_templates(config_path))
    filled = fill(db, shapes, tickets, due_share, seed)
    steps = filled.tickets and len(filled.due) + len(filled.undone)
    print(f"filled: {filled.tickets} open tickets, {steps} SLA steps ({len(filled.due)} due at "
          f"{NOW:%Y-%m-%d %H:%M} UTC) in {filled.seconds:.2f} s", flush=True)
    if profile:
        _profile(config_path)
        return 0
    seconds, fired, _ = sla_run(config_path)
    print(f"sla run: {seconds:.3f} s wall (the whole process), {fired} step(s) fired", flush=True)
    problems = check(db, filled, fired)
    before = counts(db)
    again, fired_again, _ = sla_run(config_path)
    print(f"sla run again at the same --now: {again:.3f} s, {fired_again} step(s) fired")
    if fired_again or counts(db) != before:
        problems.append(f"the second run fired {fired_again} step(s) and changed {before} to {counts(db)}")
    for problem in problems:
        print(f"FAILED: {problem}")
    if not problems:
        print(f"once-only: OK ({fired} due step(s) done, one event and one mail each, nothing else)")
    return 1 if problems else 0


def _profile(config_path: Path) -> None:
    """The run in this process under cProfile; the top of the cumulative list."""
    import cProfile
    import pstats

    from ticketd.daemon.cli import main

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        main(["-c", str(config_path), "sla", "run", "--now", NOW.isoformat()])
    finally:
        profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sla", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=10_000)
    parser.add_argument("--due", type=float, default=0.05, help="the share of tickets with a step due (0.05)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, help="keep the database here (default: a temporary directory)")
    parser.add_argument("--profile", action="store_true", help="profile one run in this process instead")
    args = parser.parse_args(argv)
    if args.dir is not None:
        return run(args.tickets, args.due, args.seed, args.dir, args.profile)
    with tempfile.TemporaryDirectory(prefix="bench-sla-") as tmp:
        return run(args.tickets, args.due, args.seed, Path(tmp), args.profile)


if __name__ == "__main__":
    sys.exit(main())
