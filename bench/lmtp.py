"""``--lmtp``: the same N messages pushed over LMTP to a running ``ticketd run``, no IMAP at all.

One client (``smtplib.LMTP`` on the daemon's Unix socket) sends the messages one after another,
each waiting for its 250, which the daemon gives once the raw bytes are committed. Then the
bench polls the database and the sink until every message is processed and every
acknowledgement delivered, sends SIGTERM, and waits for the daemon to stop.
"""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.child import Child, Running, ticketd
from bench.figures import Statements, count_rows
from bench.generate import GeneratedMessage, generate
from bench.history import Cache, prefill
from bench.imaprun import HISTORY_UIDVALIDITY, Before, Loaded, Outcome, fresh, outcome, outcome_problems
from bench.servers import USER, write_lmtp_config
from bench.leansink import LeanSink
from ticketd.storage.models import InboundMessage, InboundStatus

POLL = 0.05


@dataclass
class Pushed:
    """What the LMTP client saw."""

    accepted: int = 0
    refused: list[str] = field(default_factory=list)  # "message 12: 451 ..." per refusal
    seconds: float = 0.0  # from the first MAIL FROM to the last 250


@dataclass
class LmtpResult:
    n: int
    loaded: Loaded
    child: Child
    outcome: Outcome
    pushed: Pushed
    greeting: float | None  # seconds from the spawn to the listener's 220
    processed: float | None  # seconds from the first message to every one in a final state
    acknowledged: float | None  # ... to every acknowledgement received by the sink
    idle: Child | None = None  # ``ticketd run`` again, SIGTERM at its greeting: the fixed cost
    idle_greeting: float | None = None
    idle_statements: Statements | None = None

    def problems(self) -> list[str]:
        found = []
        if self.greeting is None:
            found.append("the LMTP listener never answered")
        for child, what in ((self.child, "ticketd"), (self.idle, "the idle ticketd")):
            if child is not None and child.exit_code != 0:
                found.append(f"{what} exited with {child.exit_code}")
        if self.pushed.refused:
            found.append(f"{len(self.pushed.refused)} refused, first: {self.pushed.refused[0]}")
        if self.processed is None:
            found.append("not every message was processed before the timeout")
        return found + outcome_problems(self.outcome, self.loaded)


def wait_for_greeting(path: Path, running: Running, timeout: float) -> float | None:
    """Seconds from the spawn until ``path`` accepts a connection and says 220; None if never."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and running.alive():
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(str(path))
                if sock.recv(512).startswith(b"220"):
                    return running.elapsed()
        except OSError:
            pass
        time.sleep(0.01)
    return None


def push(path: Path, messages: Iterable[GeneratedMessage], recipient: str = USER) -> Pushed:
    """Send each message in one LMTP session, one after another; count the 250s."""
    pushed = Pushed()
    with smtplib.LMTP(str(path)) as client:
        start = time.perf_counter()
        for index, message in enumerate(messages, start=1):
            try:
                client.sendmail(message.sender, [recipient], message.raw)
                pushed.accepted += 1
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = next(iter(exc.recipients.values()))
                pushed.refused.append(f"message {index}: {code} {text.decode(errors='replace')}")
            except smtplib.SMTPResponseException as exc:
                pushed.refused.append(f"message {index}: {exc.smtp_code} {exc.smtp_error.decode(errors='replace')}")
                client.rset()
        pushed.seconds = time.perf_counter() - start
    return pushed


def wait_until_done(database: Path, sink: LeanSink, before: Before, n: int, acks: int, start: float,
                    deadline: float) -> tuple[float | None, float | None]:
    """Seconds after ``start`` (perf_counter) until all n rows are final, and until all acks came."""
    processed = acknowledged = None
    while time.perf_counter() < deadline and (processed is None or acknowledged is None):
        if processed is None and count_rows(database, InboundMessage, before.inbound, InboundStatus.FINAL) >= n:
            processed = time.perf_counter() - start
        if acknowledged is None and len(sink.messages) >= acks:
            acknowledged = time.perf_counter() - start
        time.sleep(POLL)
    return processed, acknowledged


def run_lmtp(n: int, seed: int, workdir: Path, *, timeout: float = 3600.0, history: int = 0,
             trace: bool = True, cache: Cache | None = None) -> LmtpResult:
    """One LMTP benchmark run in ``workdir``."""
    fresh(workdir)
    socket_path = workdir / "lmtp.sock"
    socket_path.unlink(missing_ok=True)
    sink = LeanSink()
    sink.start()
    try:
        messages = list(generate(n, seed, to=USER))
        loaded = Loaded(messages=n, bytes=sum(len(m.raw) for m in messages))
        for message in messages:
            if not message.is_reply:
                loaded.conversations[message.sender] += 1
        database = workdir / "ticketd.db"
        config = write_lmtp_config(workdir / "ticketd.toml", database, sink, str(socket_path))
        filled = None
        if history:
            filled = (cache.prefill(config, database, history, seed, HISTORY_UIDVALIDITY) if cache
                      else prefill(config, history, seed, HISTORY_UIDVALIDITY))
        before = Before(database)
        counts = workdir / "statements.json"
        counts.unlink(missing_ok=True)
        running = Running(ticketd("-c", str(config), "run", statements=counts if trace else None),
                          workdir / "ticketd.log", timeout)
        try:
            greeting = wait_for_greeting(socket_path, running, min(timeout, 60.0))
            pushed, processed, acknowledged = Pushed(), None, None
            if greeting is not None:
                start = time.perf_counter()
                pushed = push(socket_path, messages)
                processed, acknowledged = wait_until_done(database, sink, before, pushed.accepted,
                                                          sum(loaded.conversations.values()), start,
                                                          start + timeout)
        finally:
            if running.alive():
                running.terminate()
            child = running.wait()
        result = LmtpResult(n, loaded, child, outcome(database, sink, before, counts, filled), pushed, greeting,
                            processed, acknowledged)
        result.idle, result.idle_greeting, result.idle_statements = idle_run(config, socket_path, workdir, timeout,
                                                                             trace)
        return result
    finally:
        sink.stop()


def idle_run(config: Path, socket_path: Path, workdir: Path, timeout: float,
             trace: bool) -> tuple[Child, float | None, Statements | None]:
    """``ticketd run`` again, stopped as soon as it greets: start-up and shutdown, nothing else."""
    counts = workdir / "statements-idle.json"
    counts.unlink(missing_ok=True)
    running = Running(ticketd("-c", str(config), "run", statements=counts if trace else None),
                      workdir / "ticketd-idle.log", timeout)
    try:
        greeting = wait_for_greeting(socket_path, running, min(timeout, 60.0))
    finally:
        if running.alive():
            running.terminate()
        child = running.wait()
    return child, greeting, Statements.load(counts)
