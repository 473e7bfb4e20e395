"""Benchmark: spamd's own rate (Debian spamc) next to ticketd's SpamFilter on the same generated mail.

    python -m bench.spam --n 200 [--seed 1] [--children 4] [--rounds 3] [--no-end-to-end]

Starts a private offline spamd on 127.0.0.1 and measures, in messages/s:
  1. spamd's own rate: ``spamc -y`` (SYMBOLS, the request the filter sends) over all N messages,
     one at a time and 4 in parallel;
  2. ``SpamFilter.check`` over the same messages with 1, 4 and 8 checks in flight (parsing is done
     beforehand, so this isolates the filter's client overhead over spamd's own cost).
  3. end to end, as bench.run does (a private Dovecot, ``ticketd run --once``, an SMTP sink):
     ticketd with its default filter pipeline, and with "spam" added against the same spamd.
It also checks that spamc and the filter saw the same rules on every message, that the end-to-end
runs are complete and that spamd scored every message of the spam run; non-zero exit if not.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.generate import generate
from bench.run import PASSWORD, USER, Result, cli_json, load, run_child, server_flags, ticketd, write_config
from ticketd.daemon.filters import FilterContext, Verdict
from ticketd.daemon.filters.registry import DEFAULT_PIPELINE
from ticketd.daemon.filters.spam import SpamFilter, SpamSettings
from ticketd.daemon.parsers import parse_message
from devtools._process import find_program
from devtools.dovecot import Dovecot
from devtools.smtpsink import SmtpSink
from devtools.spamd import Spamd

WARM_UP = 8  # messages checked before any timing: spamd's children load lazily
PROBE_TIMEOUT = 120.0  # seconds for one spamc call before the benchmark gives up
RUN_TIMEOUT = 1800.0  # seconds for one `ticketd run --once` before it is killed
WITHOUT, WITH = "ticketd run --once, no spam", "ticketd run --once, spam on"


@dataclass(frozen=True)
class Rate:
    """One timed pass over all messages."""

    label: str
    messages: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds


def spamc_pass(spamd: Spamd, messages: list[bytes], parallel: int) -> tuple[Rate, list[frozenset[str]]]:
    """Run ``spamc -y`` once per message, ``parallel`` at a time; the rate and each message's rules."""
    command = [find_program("spamc"), "-d", spamd.host, "-p", str(spamd.port), "-y",
               "-s", str(SpamSettings().max_size)]

    def one(raw: bytes) -> frozenset[str]:
        done = subprocess.run(command, input=raw, capture_output=True, check=False, timeout=PROBE_TIMEOUT)
        if done.returncode != 0:
            raise RuntimeError(f"spamc exited with {done.returncode}: {done.stderr.decode(errors='replace')}")
        return frozenset(name.strip() for name in done.stdout.decode().split(",") if name.strip())

    with ThreadPoolExecutor(parallel) as pool:
        start = time.perf_counter()
        rules = list(pool.map(one, messages))
        seconds = time.perf_counter() - start
    label = "spamc, one at a time" if parallel == 1 else f"spamc, {parallel} in parallel"
    return Rate(label, len(messages), seconds), rules


async def filter_pass(settings: SpamSettings, contexts: list[FilterContext],
                      in_flight: int) -> tuple[Rate, list[Verdict], int]:
    """SpamFilter.check over every message, at most ``in_flight`` at once, started in order."""
    spam_filter = SpamFilter(settings)
    window = asyncio.Semaphore(in_flight)

    async def one(ctx: FilterContext) -> Verdict:
        async with window:
            return await spam_filter.check(ctx)

    start = time.perf_counter()
    verdicts = await asyncio.gather(*(one(ctx) for ctx in contexts))
    seconds = time.perf_counter() - start
    label = "SpamFilter, one at a time" if in_flight == 1 else f"SpamFilter, {in_flight} in flight"
    return Rate(label, len(contexts), seconds), list(verdicts), spam_filter.unreachable_count


def contexts_for(messages: list[bytes]) -> list[FilterContext]:
    now = datetime.now(UTC)
    own = frozenset({"support@example.test"})
    return [FilterContext(parse_message(raw), raw, "support", own, now) for raw in messages]


def disagreements(spamc_rules: list[frozenset[str]], verdicts: list[Verdict]) -> int:
    """Messages whose rule names differ between spamc and the filter (skipped ones: both empty)."""
    return sum(frozenset(v.details.get("rules", ())) != rules for rules, v in zip(spamc_rules, verdicts))


def end_to_end(n: int, seed: int, workdir: Path, spamd: Spamd | None) -> tuple[Result, int]:
    """bench.run's measurement (Dovecot, ``ticketd run --once``, SMTP sink), with or without the spam
    filter after the default pipeline; also how many messages spamd scored meanwhile."""
    workdir.mkdir(parents=True)
    dovecot = Dovecot(workdir / "dovecot", users={USER: PASSWORD})
    sink = SmtpSink()
    dovecot.start()
    sink.start()
    try:
        loaded = load(dovecot, n, seed)
        config = write_config(workdir / "ticketd.toml", workdir / "ticketd.db", dovecot, sink)
        if spamd is not None:
            pipeline = ", ".join(f'"{name}"' for name in (*DEFAULT_PIPELINE, "spam"))
            with config.open("a") as toml:
                toml.write(f'\n[filters]\npipeline = [{pipeline}]\n\n'
                           f'[filters.spam]\nhost = "{spamd.host}"\nport = {spamd.port}\n')
        scored = spamd_results(spamd)
        child = run_child(ticketd("-c", str(config), "run", "--once"), workdir / "ticketd.log", RUN_TIMEOUT)
        scored = spamd_results(spamd) - scored
        sink.wait_for(sum(loaded.conversations.values()), timeout=10)
        flags = server_flags(dovecot)
        acks = Counter(rcpt for message in sink.messages for rcpt in message.rcpt_tos)
        result = Result(n, loaded, child, len(cli_json(config, "tickets", "list")),
                        len(cli_json(config, "quarantine", "list")), acks,
                        sum(b"\\Seen" in f for f in flags), len(flags))
        return result, scored
    finally:
        sink.stop()
        dovecot.stop()


def spamd_results(spamd: Spamd | None) -> int:
    """Messages spamd has scored so far, from its log (one "result:" line each)."""
    if spamd is None or not spamd.log_path.exists():
        return 0
    return spamd.log_path.read_text(errors="replace").count("spamd: result:")


def run(n: int, seed: int, children: int, rounds: int, root: Path, say: Callable[[str], None],
        whole: bool = True) -> int:
    messages = [message.raw for message in generate(n, seed)]
    size = sum(map(len, messages))
    too_large = sum(len(raw) > SpamSettings().max_size for raw in messages)
    say(f"spam benchmark: n={n} seed={seed}, {size / 1024 / 1024:.1f} MiB, {too_large} over "
        f"{SpamSettings().max_size // 1024} KiB (not sent, by spamc nor by the filter); "
        f"spamd --max-children={children} on {os.cpu_count()} CPUs")
    contexts = contexts_for(messages)
    rates: dict[str, list[float]] = {}
    failures = 0
    with Spamd(root / "spamd", children=children) as spamd:
        settings = SpamSettings(host=spamd.host, port=spamd.port)
        spamc_pass(spamd, messages[:WARM_UP], min(4, children))
        # Rounds interleave spamc and the filter, so that load from elsewhere hits both alike.
        for number in range(1, rounds + 1):
            if rounds > 1:
                say(f" round {number}")
            reference: list[frozenset[str]] = []
            for parallel in (1, 4):
                rate, reference = spamc_pass(spamd, messages, parallel)
                rates.setdefault(rate.label, []).append(rate.per_second)
                say(f"  {rate.label:28s} {rate.seconds:7.2f} s  {rate.per_second:6.1f} messages/s")
            for in_flight in (1, 4, 8):
                rate, verdicts, unreachable = asyncio.run(filter_pass(settings, contexts, in_flight))
                rates.setdefault(rate.label, []).append(rate.per_second)
                actions = Counter(v.action for v in verdicts)
                skipped = sum(v.details.get("skipped") == "too large" for v in verdicts)
                differ = disagreements(reference, verdicts)
                failures += unreachable + differ
                say(f"  {rate.label:28s} {rate.seconds:7.2f} s  {rate.per_second:6.1f} messages/s"
                    f"  ({', '.join(f'{a} {c}' for a, c in sorted(actions.items()))}; skipped {skipped}, "
                    f"unreachable {unreachable}, rules differ from spamc on {differ})")
            if whole:
                for label, server in ((WITHOUT, None), (WITH, spamd)):
                    result, scored = end_to_end(n, seed, root / f"round{number}-{'spam' if server else 'plain'}",
                                                server)
                    problems = result.problems()
                    if server is not None and scored != n - too_large:
                        problems.append(f"spamd scored {scored} messages, expected {n - too_large}")
                    failures += len(problems)
                    rate = Rate(label, n, result.child.seconds)
                    rates.setdefault(label, []).append(rate.per_second)
                    say(f"  {label:28s} {rate.seconds:7.2f} s  {rate.per_second:6.1f} messages/s"
                        f"  ({result.tickets} tickets, {result.quarantined} quarantined, spamd scored {scored}; "
                        f"{'; '.join(problems) or 'OK'})")
    best = {label: max(values) for label, values in rates.items()}
    if rounds > 1:
        say(f" best of {rounds} rounds (median in brackets), messages/s")
        for label, values in rates.items():
            say(f"  {label:28s} {best[label]:6.1f}  ({statistics.median(values):.1f})")
    spamd_rate = best["spamc, 4 in parallel"]
    say(f"  SpamFilter vs spamc 4 in parallel: {best['SpamFilter, 4 in flight'] / spamd_rate:.0%} "
        f"with 4 in flight, {best['SpamFilter, 8 in flight'] / spamd_rate:.0%} with 8")
    if whole:
        say(f"  ticketd with spam checks vs spamc 4 in parallel: {best[WITH] / spamd_rate:.0%} "
            f"(without spam checks: {best[WITHOUT]:.1f} messages/s)")
    if failures:
        say("FAILED: see the lines above (unreachable spamd, rules unlike spamc's, or an incomplete run)")
        return 1
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.spam", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="messages (default 200)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--children", type=int, default=4, help="spamd --max-children (default 4)")
    parser.add_argument("--no-end-to-end", dest="whole", action="store_false",
                        help="skip the bench.run-style runs of ticketd with and without spam checks")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat every pass, interleaved, and report the best and the median")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    # spamd's children run as nobody when we are root: their home must be reachable.
    root = Path(tempfile.mkdtemp(prefix="ticketd-bench-spamd-", dir="/tmp" if os.geteuid() == 0 else None))
    root.chmod(0o755)
    try:
        return run(args.n, args.seed, args.children, args.rounds, root, lambda line: print(line, flush=True),
                   args.whole)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
