"""One IMAP benchmark run: N messages in a private Dovecot, ``ticketd run --once``, an SMTP sink."""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.child import Child, count_fsyncs, run_child, ticketd
from bench.figures import (Latencies, StartUp, Statements, ack_latencies, count_rows, max_id, read_outbox,
                           read_rawlog, start_up)
from bench.generate import generate
from bench.history import Cache, History, prefill
from bench.scrape import Watch, free_port, watched_run
from bench.servers import AGENT, PASSWORD, USER, RawlogDovecot, continue_uids, write_imap_config
from devtools.dovecot import Dovecot
from bench.leansink import LeanSink
from ticketd.storage.models import InboundMessage, InboundStatus, Ticket

_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
HISTORY_UIDVALIDITY = 1_700_000_000  # the folder's UIDVALIDITY when it held the history


@dataclass
class Loaded:
    """What was put into the INBOX (or pushed over LMTP), and so what the run should produce."""

    messages: int = 0
    bytes: int = 0
    seconds: float = 0.0
    conversations: Counter[str] = field(default_factory=Counter)  # sender -> conversations


@dataclass
class Outcome:
    """What a run produced, from the database and the sink; shared by the IMAP and LMTP modes."""

    tickets: int
    quarantined: int
    acks: Counter[str]  # recipient -> acknowledgements
    latencies: Latencies
    statements: Statements | None  # the timed process's SQL
    history: History | None
    fsyncs: int | None = None  # fsync + fdatasync calls of the timed process tree (--strace)
    notifications: int = 0  # mails to the agent (--notify)


@dataclass
class Result:
    """One IMAP benchmark run."""

    n: int
    loaded: Loaded
    child: Child
    outcome: Outcome
    seen: int
    on_server: int
    startup: StartUp  # the timed run, seen by Dovecot
    idle: Child | None = None  # ``run --once`` again on the drained mailbox: start-up and exit
    idle_startup: StartUp | None = None
    idle_statements: Statements | None = None
    watch: Watch | None = None  # --scrape: the endpoint's counters during the run, and `status` once

    @property
    def conversations(self) -> int:
        return sum(self.loaded.conversations.values())

    def problems(self) -> list[str]:
        """Everything that is missing or wrong; empty when the run is complete."""
        found = []
        if self.child.exit_code != 0:
            found.append(f"ticketd exited with {self.child.exit_code}")
        if self.idle is not None and self.idle.exit_code != 0:
            found.append(f"the idle run --once exited with {self.idle.exit_code}")
        if self.on_server != self.n:
            found.append(f"{self.on_server} messages on the server, {self.n} loaded")
        if self.seen != self.n:
            found.append(f"{self.n - self.seen} messages not flagged \\Seen")
        if self.watch is not None:
            found += self.watch.problems()
        return found + outcome_problems(self.outcome, self.loaded)


def outcome_problems(outcome: Outcome, loaded: Loaded) -> list[str]:
    found = []
    conversations = sum(loaded.conversations.values())
    if outcome.tickets != conversations:
        found.append(f"{outcome.tickets} tickets for {conversations} conversations")
    acks = sum(outcome.acks.values())
    if acks != conversations:
        found.append(f"{acks} acks for {conversations} conversations")
    elif outcome.acks != loaded.conversations:
        found.append("acks went to other recipients than the conversations' senders")
    if outcome.notifications and outcome.notifications != conversations:
        found.append(f"{outcome.notifications} notifications for {conversations} new tickets")
    if outcome.latencies.unmatched:
        found.append(f"{outcome.latencies.unmatched} acks match no outbox row")
    return found


def load(dovecot: Dovecot, n: int, seed: int) -> Loaded:
    """Deliver n generated messages into the INBOX, one at a time, and let Dovecot index them."""
    loaded = Loaded()
    start = time.perf_counter()
    for message in generate(n, seed, to=USER):
        dovecot.deliver(USER, message.raw)
        loaded.messages += 1
        loaded.bytes += len(message.raw)
        if not message.is_reply:
            loaded.conversations[message.sender] += 1
    server_flags(dovecot)  # the first SELECT indexes new/ mail: not part of the figure
    loaded.seconds = time.perf_counter() - start
    return loaded


def server_flags(dovecot: Dovecot) -> list[bytes]:
    """The FLAGS of every INBOX message, read-only (no bodies are fetched)."""
    with dovecot.imap(USER) as imap:
        typ, _ = imap.select("INBOX", readonly=True)
        if typ != "OK":
            raise RuntimeError("cannot select INBOX")
        typ, data = imap.uid("FETCH", "1:*", "(FLAGS)")
    lines = [item[0] if isinstance(item, tuple) else item for item in data or []]
    return [m.group(1) for line in lines if isinstance(line, bytes)
            for m in [_FLAGS.search(line)] if m]


def fresh(workdir: Path) -> None:
    """``workdir`` without the mail and database of an earlier run (a reused --keep directory)."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir / "dovecot", ignore_errors=True)
    for path in workdir.glob("ticketd.db*"):
        path.unlink()


class Before:
    """The largest ids before the timed run: what lies above them is this run's."""

    def __init__(self, database: Path) -> None:
        self.ticket = max_id(database, Ticket)
        self.inbound = max_id(database, InboundMessage)


def outcome(database: Path, sink: LeanSink, before: Before, statements: Path,
            history: History | None) -> Outcome:
    """Tickets, quarantine, acknowledgements and their latencies, after the run."""
    customers = [m for m in sink.messages if AGENT not in m.rcpt_tos]
    delivered = [(str(m.message.get("Message-ID", "")), m.received_at) for m in customers]
    return Outcome(
        notifications=len(sink.messages) - len(customers),
        tickets=count_rows(database, Ticket, before.ticket),
        quarantined=count_rows(database, InboundMessage, before.inbound, (InboundStatus.QUARANTINED,)),
        acks=Counter(rcpt for message in customers for rcpt in message.rcpt_tos),
        latencies=ack_latencies(delivered, read_outbox(database)),
        statements=Statements.load(statements), history=history)


def run_one(n: int, seed: int, workdir: Path, *, profile: bool = False, timeout: float = 3600.0,
            history: int = 0, idle: bool = True, trace: bool = True, strace: bool = False,
            cache: Cache | None = None, samples: bool = False, notify: bool = False, scrape: bool = False) -> Result:
    """One complete benchmark run in ``workdir``; ``scrape``: with [metrics], watched from outside."""
    fresh(workdir)
    dovecot = RawlogDovecot(workdir / "dovecot", users={USER: PASSWORD})
    sink = LeanSink()
    dovecot.start()
    sink.start()
    try:
        if history:  # before anything is delivered: the new mail gets the UIDs after the history's
            continue_uids(dovecot, USER, HISTORY_UIDVALIDITY, history + 1)
        loaded = load(dovecot, n, seed)
        database = workdir / "ticketd.db"
        port = free_port() if scrape else None
        config = write_imap_config(workdir / "ticketd.toml", database, dovecot, sink, notify=notify, metrics_port=port)
        filled = None
        if history:
            filled = (cache.prefill(config, database, history, seed, HISTORY_UIDVALIDITY) if cache
                      else prefill(config, history, seed, HISTORY_UIDVALIDITY))
        before = Before(database)
        counts, idle_counts = workdir / "statements.json", workdir / "statements-idle.json"
        syncs = workdir / "fsyncs.strace"
        for stale in (counts, idle_counts, syncs):  # from an earlier run in a --keep directory
            stale.unlink(missing_ok=True)
        stats = workdir / "profile.out" if profile else None
        command = ticketd("-c", str(config), "run", "--once", profile=stats, statements=counts if trace else None,
                          fsyncs=syncs if strace else None, samples=workdir / "py-spy.txt" if samples else None)
        watch = None
        if port is not None:
            child, watch = watched_run(command, workdir / "ticketd.log", timeout, port, config, n)
        else:
            child = run_child(command, workdir / "ticketd.log", timeout)
        sink.wait_for(sum(loaded.conversations.values()), timeout=10)
        flags = server_flags(dovecot)
        result = Result(n, loaded, child, outcome(database, sink, before, counts, filled),
                        sum(b"\\Seen" in f for f in flags), len(flags), StartUp(None, None, None), watch=watch)
        result.outcome.fsyncs = count_fsyncs(syncs)
        if idle:
            result.idle = run_child(ticketd("-c", str(config), "run", "--once",
                                            statements=idle_counts if trace else None),
                                    workdir / "ticketd-idle.log", timeout)
            result.idle_statements = Statements.load(idle_counts)
        commands = read_rawlog(dovecot.rawlog_dir)
        result.startup = start_up(commands, child.started_at, child.started_at + child.seconds)
        if result.idle is not None:
            result.idle_startup = start_up(commands, result.idle.started_at,
                                           result.idle.started_at + result.idle.seconds)
        return result
    finally:
        sink.stop()
        dovecot.stop()
