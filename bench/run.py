"""Benchmark: N generated mails through a private Dovecot (or LMTP), ticketd, an SMTP sink."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench.history import Cache
from bench.imaprun import Result, run_one
from bench.lmtp import run_lmtp
from bench.pairs import notify_pairs, summary
from bench.report import (MIB, print_log_tail, print_profile, repeat_summary, report, report_lmtp,
                          series_table)
from bench.scrape import report_watch


def series(ns: list[int], seed: int, root: Path, timeout: float, history: int, trace: bool, cache: Cache) -> int:
    """Run several N and print wall time, peak RSS, ack p95 and statements per N."""
    rows, failed = [], False
    for n in ns:
        result = run_one(n, seed, root / f"n{n}", timeout=timeout, history=history, idle=False, trace=trace,
                         cache=cache)
        problems = result.problems()
        failed |= bool(problems)
        rows.append((n, result, "OK" if not problems else "; ".join(problems)))
        print(f"  n={n}: {result.child.seconds:.2f} s, {result.child.max_rss / MIB:.1f} MiB", flush=True)
    series_table(rows)
    return 1 if failed else 0


def single(args: argparse.Namespace, root: Path, cache: Cache) -> int:
    """One run (or --repeat of them), reported; non-zero if anything is missing."""
    workdir = root / (f"lmtp-n{args.n}" if args.lmtp else f"n{args.n}")
    results: list = []
    for attempt in range(1, args.repeat + 1):
        if args.repeat > 1:
            print(f"\n=== run {attempt} of {args.repeat}", flush=True)
        if args.lmtp:
            result = run_lmtp(args.n, args.seed, workdir, timeout=args.timeout, history=args.history,
                              trace=not args.no_trace, cache=cache)
            report_lmtp(result, args.seed)
        else:
            result = run_one(args.n, args.seed, workdir, profile=args.profile, timeout=args.timeout,
                             history=args.history, trace=not args.no_trace, strace=args.strace, cache=cache,
                             samples=args.py_spy, notify=args.notify, scrape=args.scrape)
            report(result, args.seed)
            if result.watch is not None:
                report_watch(result.watch)
            if args.profile and (workdir / "profile.out").exists():
                print_profile(workdir / "profile.out")
        problems = result.problems()
        if problems:
            print("FAILED: " + "; ".join(problems))
            print_log_tail(workdir / "ticketd.log")
            return 1
        results.append(result)
    if args.repeat > 1:
        repeat_summary(results)
    print("OK")
    return 0


def pairs(args: argparse.Namespace, root: Path, cache: Cache) -> int:
    """--notify-pairs K: K runs without and K with notifications, in turns; their ratios."""
    def one(notify: bool) -> Result:
        return run_one(args.n, args.seed, root / ("notify" if notify else "plain"), timeout=args.timeout,
                       history=args.history, trace=not args.no_trace, cache=cache, notify=notify)

    print(f"ticketd benchmark: {args.notify_pairs} pairs of run --once, n={args.n} seed={args.seed}, "
          f"without and with an agent notified of every new ticket", flush=True)
    results, problems = notify_pairs(args.notify_pairs, one)
    summary(results)
    if problems:
        print("FAILED: " + "; ".join(problems))
        return 1
    print("OK")
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="messages to load (default 1000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--history", type=int, default=0, metavar="N",
                        help="pre-fill the database with N earlier messages first (not timed)")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="run K times (fresh server and database each) and print the medians")
    parser.add_argument("--notify", action="store_true",
                        help="an agent is notified of every new ticket (issue 8: within 15 %% of without)")
    parser.add_argument("--notify-pairs", type=int, default=0, metavar="K",
                        help="K runs without and K with --notify, in turns: each pair's ratio, the medians and "
                             "each run's steal (issue 8's figure on a shared host)")
    parser.add_argument("--lmtp", action="store_true",
                        help="push the messages over LMTP to a running `ticketd run` instead of IMAP")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR and keep it (Dovecot, database, config, logs)")
    parser.add_argument("--profile", action="store_true",
                        help="run ticketd under cProfile and print the top 25 cumulative entries (IMAP)")
    parser.add_argument("--py-spy", action="store_true",
                        help="sample ticketd and its parse workers with py-spy into DIR/n*/py-spy.txt (IMAP; "
                             "needs py-spy on PATH or in the venv)")
    parser.add_argument("--rss-series", metavar="N,N,...",
                        help="run each N in turn and print peak RSS per N (IMAP)")
    parser.add_argument("--no-trace", action="store_true",
                        help="run the console script itself: no SQL statement counts")
    parser.add_argument("--strace", action="store_true",
                        help="count the timed run's fsync/fdatasync calls with strace (IMAP)")
    parser.add_argument("--scrape", action="store_true",
                        help="serve [metrics] and scrape it every 0.5 s during the run, run `ticketd status --json` "
                             "once half the mail is fetched, and print how the counters moved (IMAP; takes CPU "
                             "from ticketd: not for comparing figures)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="kill ticketd after this many seconds")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat needs 1 or more")
    if args.lmtp and (args.profile or args.rss_series or args.strace or args.py_spy or args.scrape):
        parser.error("--lmtp goes with none of --profile, --py-spy, --rss-series, --strace, --scrape")
    if args.notify_pairs and (args.notify or args.lmtp or args.rss_series or args.repeat > 1 or args.profile
                              or args.py_spy or args.strace or args.scrape):
        parser.error("--notify-pairs goes with none of --notify, --lmtp, --rss-series, --repeat, --profile, "
                     "--py-spy, --strace, --scrape")
    if args.scrape and args.rss_series:
        parser.error("--scrape goes with one run, not --rss-series")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    with tempfile.TemporaryDirectory(prefix="ticketd-bench-", dir="/tmp" if os.geteuid() == 0 else None) as scratch:
        os.chmod(scratch, 0o755)  # Dovecot's unprivileged processes must reach the Maildirs
        root = args.keep.resolve() if args.keep else Path(scratch)
        cache = Cache(root / "history-cache")  # one fill per invocation, whatever the runs
        try:
            if args.notify_pairs:
                return pairs(args, root, cache)
            if args.rss_series:
                ns = [int(part) for part in args.rss_series.split(",") if part.strip()]
                return series(ns, args.seed, root, args.timeout, args.history, not args.no_trace, cache)
            return single(args, root, cache)
        finally:
            cache.clear()


if __name__ == "__main__":
    sys.exit(main())
