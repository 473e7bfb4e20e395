"""Printing a run's figures (see bench/README.md for what each one means)."""

from __future__ import annotations

import os
import pstats
import sys
from pathlib import Path

from bench.figures import Latencies, StartUp, Statements, percentiles
from bench.history import History
from bench.imaprun import Loaded, Outcome, Result
from bench.lmtp import LmtpResult

MIB = 1024 * 1024
STARTUP_TARGET = 0.4  # s, spawn to the first IMAP command that reads mail
ACK_P95_TARGET = 1.0  # s, commit to acknowledgement delivered
SHAPES = 8  # statement shapes listed


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def _header(kind: str, n: int, seed: int, loaded: Loaded, history: History | None) -> None:
    conversations = sum(loaded.conversations.values())
    print(f"ticketd benchmark ({kind}): n={n} seed={seed}")
    print(f"  loaded:       {loaded.messages} messages, {loaded.bytes / MIB:.1f} MiB, {conversations} "
          f"conversations" + (f", in {loaded.seconds:.2f} s (not timed)" if loaded.seconds else ""))
    if history is not None:
        how = "copied from this invocation's first fill in" if history.copied else "pre-filled in"
        print(f"  history:      {history.messages} earlier messages, {history.tickets} tickets, "
              f"{history.bytes / MIB:.0f} MiB raw, {how} {history.seconds:.1f} s (not timed)")


def _latency(latencies: Latencies) -> None:
    received, recorded = percentiles(latencies.received), percentiles(latencies.recorded)
    if not received:
        print("  commit->ack:  no acknowledgement matched")
        return
    verdict = "OK" if received[95] <= ACK_P95_TARGET else "over"
    print(f"  commit->ack:  p50 {received[50]:.3f} s, p95 {received[95]:.3f} s, p99 {received[99]:.3f} s, "
          f"max {max(latencies.received):.3f} s over {len(latencies.received)} acks, to the sink's receipt "
          f"(target p95 <= {ACK_P95_TARGET:.0f} s: {verdict})")
    if recorded:
        print(f"                to sent_at in the database: p50 {recorded[50]:.3f} s, p95 {recorded[95]:.3f} s, "
              f"p99 {recorded[99]:.3f} s")


def _cpu(seconds: float, n: int, idle: float | None = None) -> None:
    beyond = f", {(seconds - idle) / n * 1000:.2f} ms beyond an idle run's {idle:.2f} s" if idle is not None else ""
    print(f"  CPU:          {seconds:.2f} s user+system (ticketd and its parse workers), "
          f"{seconds / n * 1000:.2f} ms a message{beyond}")


def _steal(seconds: float, wall: float) -> None:
    cpus = os.cpu_count() or 1
    print(f"  steal:        {seconds:.2f} s of the {cpus} CPUs' time went to other guests of the host during the run "
          f"({seconds / (wall * cpus) * 100:.0f} %; compare only figures taken with little of it)")


def _rss(max_rss: int, tree_rss: int) -> None:
    print(f"  peak RSS:     {max_rss / MIB:.1f} MiB largest process, "
          f"{tree_rss / MIB:.1f} MiB whole process tree (sampled)")


def _statements(total: Statements | None, fixed: Statements | None, n: int, fsyncs: int | None = None) -> None:
    if fsyncs is not None:
        print(f"  fsync:        {fsyncs} fsync/fdatasync calls in the timed run (strace), {fsyncs / n:.3f} a message")
    if total is None:
        print("  SQL:          not counted")
        return
    grown = total.minus(fixed)
    kinds = ", ".join(f"{kind} {count / n:.2f}" for kind, count in grown.kinds.most_common())
    print(f"  SQL:          {total.total} statements, {total.durable_commits} commits that wrote "
          f"(an fsync each) in the timed run")
    label = "beyond an idle run" if fixed is not None else "including start-up"
    print(f"                per message, {label}: {grown.total / n:.2f} statements, "
          f"{grown.durable_commits / n:.3f} fsync'ing commits")
    print(f"                by kind: {kinds}")
    if fixed is not None:
        print(f"                an idle run: {fixed.total} statements, {fixed.durable_commits} commits that wrote")
    print("                most frequent per message:")
    for shape, count in grown.shapes.most_common(SHAPES):
        print(f"                  {count / n:6.2f}  {shape[:110]}")


def _outcome(result_outcome: Outcome, conversations: int) -> None:
    acks = sum(result_outcome.acks.values())
    print(f"  tickets:      {result_outcome.tickets} created for {conversations} conversations")
    print(f"  acks:         {acks} delivered for {conversations} conversations")
    if result_outcome.notifications:
        print(f"  notified:     {result_outcome.notifications} mails to the agent (--notify)")
    print(f"  quarantined:  {result_outcome.quarantined}")


def _startup(startup: StartUp, idle: StartUp | None, idle_seconds: float | None) -> None:
    mail = startup.mail
    verdict = "" if mail is None else f" (target <= {STARTUP_TARGET} s: {'OK' if mail <= STARTUP_TARGET else 'over'})"
    print(f"  start-up:     spawn to first UID SEARCH {_s(startup.first_search)}{verdict}; "
          f"first command after login {_s(startup.logged_in)}, first UID FETCH {_s(startup.first_fetch)}")
    if idle is not None and idle_seconds is not None:
        print(f"                idle run --once on the drained mailbox: {idle_seconds:.3f} s in all "
              f"(an upper bound), first UID SEARCH at {_s(idle.first_search)}")


def report(result: Result, seed: int) -> None:
    """Print one IMAP run's figures."""
    child = result.child
    _header("IMAP, run --once", result.n, seed, result.loaded, result.outcome.history)
    print(f"  run --once:   {child.seconds:.2f} s wall, {result.n / child.seconds:.1f} messages/s, "
          f"exit {child.exit_code}")
    _cpu(child.cpu, result.n, result.idle.cpu if result.idle else None)
    _steal(child.steal, child.seconds)
    _startup(result.startup, result.idle_startup, result.idle.seconds if result.idle else None)
    _latency(result.outcome.latencies)
    _rss(child.max_rss, child.tree_rss)
    _statements(result.outcome.statements, result.idle_statements, result.n, result.outcome.fsyncs)
    _outcome(result.outcome, result.conversations)
    print(f"  \\Seen:        {result.seen} of {result.on_server} messages on the server")


def report_lmtp(result: LmtpResult, seed: int) -> None:
    """Print one LMTP run's figures."""
    pushed, n = result.pushed, result.n
    _header("LMTP, run", n, seed, result.loaded, result.outcome.history)
    idle = f"; an idle run: greeting {_s(result.idle_greeting)}, {result.idle.seconds:.3f} s from spawn to exit" \
        if result.idle else ""
    print(f"  start-up:     spawn to the LMTP greeting {_s(result.greeting)}{idle}")
    if pushed.seconds:
        print(f"  accepted:     {pushed.accepted} in {pushed.seconds:.2f} s, {pushed.accepted / pushed.seconds:.1f} "
              f"messages/s (each 250 after its commit), {len(pushed.refused)} refused")
    for label, seconds in (("processed", result.processed), ("acknowledged", result.acknowledged)):
        rate = f", {n / seconds:.1f} messages/s" if seconds else ""
        print(f"  {label + ':':13} {_s(seconds)} after the first message{rate}")
    print(f"  ticketd:      {result.child.seconds:.2f} s from spawn to exit after SIGTERM, "
          f"exit {result.child.exit_code}")
    _cpu(result.child.cpu, n, result.idle.cpu if result.idle else None)
    _steal(result.child.steal, result.child.seconds)
    _latency(result.outcome.latencies)
    _rss(result.child.max_rss, result.child.tree_rss)
    _statements(result.outcome.statements, result.idle_statements, n)
    _outcome(result.outcome, sum(result.loaded.conversations.values()))


def series_table(rows: list[tuple[int, Result, str]]) -> None:
    print("\n      n    wall s   msg/s  max RSS MiB  tree RSS MiB  ack p95 s  stmts/msg  status")
    for n, result, status in rows:
        child = result.child
        p95 = percentiles(result.outcome.latencies.received).get(95)
        counts = result.outcome.statements
        print(f"{n:7d} {child.seconds:9.2f} {n / child.seconds:7.1f} {child.max_rss / MIB:12.1f} "
              f"{child.tree_rss / MIB:13.1f} {'-' if p95 is None else f'{p95:10.3f}':>10} "
              f"{'-' if counts is None else f'{counts.total / n:10.2f}':>10}  {status}")


def print_profile(path: Path) -> None:
    """The top 25 entries by cumulative time (the main process only; pool workers are not in it)."""
    print("\nprofile of the ticketd main process, top 25 by cumulative time:")
    pstats.Stats(str(path), stream=sys.stdout).sort_stats("cumulative").print_stats(25)


def print_log_tail(log: Path, lines: int = 40) -> None:
    """The end of ticketd's output, for a failed run."""
    if log.exists():
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        print(f"\nlast lines of {log}:")
        print("\n".join(f"  {line}" for line in tail))


def rate(result: Result | LmtpResult) -> float:
    """The headline messages/s: run --once end to end, or LMTP push to the last acknowledgement."""
    if isinstance(result, LmtpResult):
        return result.n / result.acknowledged if result.acknowledged else 0.0
    return result.n / result.child.seconds


def repeat_summary(results: list[Result] | list[LmtpResult]) -> None:
    """One line per run and the medians, for comparing configurations on a noisy machine."""
    print("\n  run   msg/s  CPU ms/msg  ack p95 s  start-up s   (CPU: all of the timed run, start-up included)")
    rows = []
    for i, result in enumerate(results, start=1):
        p95 = percentiles(result.outcome.latencies.received).get(95, float("nan"))
        start = result.greeting if isinstance(result, LmtpResult) else result.startup.mail
        rows.append((rate(result), result.child.cpu / result.n * 1000, p95, float("nan") if start is None else start))
        print(f"  {i:3d} {rows[-1][0]:7.1f} {rows[-1][1]:11.2f} {rows[-1][2]:10.3f} {rows[-1][3]:11.3f}")
    medians = [sorted(column)[len(column) // 2] for column in zip(*rows)]
    print(f"  med {medians[0]:7.1f} {medians[1]:11.2f} {medians[2]:10.3f} {medians[3]:11.3f}")
