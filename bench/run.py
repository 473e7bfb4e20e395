"""Benchmark: N generated mails through a private Dovecot, ``ticketd run --once``, an SMTP sink."""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.generate import generate
from devtools.dovecot import Dovecot
from devtools.smtpsink import SmtpSink

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = "support@example.test", "secret"
MIB = 1024 * 1024
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Loaded:
    """What was put into the INBOX, and so what the run should produce."""

    messages: int = 0
    bytes: int = 0
    seconds: float = 0.0
    conversations: Counter[str] = field(default_factory=Counter)  # sender -> conversations


@dataclass
class Child:
    """How the ticketd process went."""

    exit_code: int
    seconds: float
    max_rss: int  # bytes, largest single process (ru_maxrss of the child and its waited children)
    tree_rss: int  # bytes, largest sampled sum over the child's whole process tree


@dataclass
class Result:
    """One benchmark run."""

    n: int
    loaded: Loaded
    child: Child
    tickets: int
    quarantined: int
    acks: Counter[str]  # recipient -> acknowledgements
    seen: int
    on_server: int

    @property
    def conversations(self) -> int:
        return sum(self.loaded.conversations.values())

    def problems(self) -> list[str]:
        """Everything that is missing or wrong; empty when the run is complete."""
        found = []
        if self.child.exit_code != 0:
            found.append(f"ticketd exited with {self.child.exit_code}")
        if self.on_server != self.n:
            found.append(f"{self.on_server} messages on the server, {self.n} loaded")
        if self.seen != self.n:
            found.append(f"{self.n - self.seen} messages not flagged \\Seen")
        if self.tickets != self.conversations:
            found.append(f"{self.tickets} tickets for {self.conversations} conversations")
        if sum(self.acks.values()) != self.conversations:
            found.append(f"{sum(self.acks.values())} acks for {self.conversations} conversations")
        elif self.acks != self.loaded.conversations:
            found.append("acks went to other recipients than the conversations' senders")
        return found


# ---------------------------------------------------------------- the steps


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


def write_config(path: Path, database: Path, dovecot: Dovecot, sink: SmtpSink) -> Path:
    """The ticketd configuration for this run."""
    # The loop guard (3 automatic mails per recipient an hour by default) is lifted: generated
    # customers open several tickets within minutes, and each one must be acknowledged.
    path.write_text(f"""\
[limits]
auto_replies_per_hour = 100000

[database]
url = "sqlite:///{database.resolve()}"

[smtp]
host = "127.0.0.1"
port = {sink.port}
security = "none"
from = "Example Support <{USER}>"

[[mailboxes]]
name = "support"
address = "{USER}"
after_processing = "seen"
[mailboxes.imap]
host = "{dovecot.host}"
port = {dovecot.port}
security = "none"
username = "{USER}"
password = "{PASSWORD}"
folder = "INBOX"
""")
    return path


def ticketd(*args: str, profile: Path | None = None) -> list[str]:
    """The ticketd command line from this venv (the console script, else ``-m daemon``)."""
    if profile is not None:
        return [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "daemon", *args]
    script = Path(sys.executable).parent / "ticketd"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "daemon", *args]


def child_env() -> dict[str, str]:
    """The environment for ticketd: this checkout importable even when not installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_child(command: list[str], log: Path, timeout: float) -> Child:
    """Run command to its end; wall time, peak RSS of the largest process and of the tree."""
    with log.open("wb") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=child_env(),
                                cwd=log.parent)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        watchdog = threading.Timer(timeout, proc.kill)
        watchdog.start()
        # wait4 rather than proc.wait(): it gives this child's own rusage, not every child's.
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        watchdog.cancel()
        sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Child(proc.returncode, seconds, usage.ru_maxrss * 1024, sampler.peak)


class TreeSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, tree_rss(self.pid))

    def stop(self) -> None:
        self._done.set()
        self.join()


def tree_rss(root: int) -> int:
    """Summed resident bytes of ``root`` and its descendants, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    family, grew = {root}, True
    while grew:
        new = {pid for pid, ppid in parents.items() if ppid in family} - family
        family |= new
        grew = bool(new)
    return sum(_rss(pid) for pid in family)


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def cli_json(config: Path, *args: str) -> list[dict[str, object]]:
    """Run a ``ticketd -c CONFIG ... --json`` listing and return the parsed array."""
    result = subprocess.run(ticketd("-c", str(config), *args, "--json"), capture_output=True,
                            env=child_env(), check=False, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"ticketd {' '.join(args)} failed: {result.stderr.decode()[-2000:]}")
    listing = json.loads(result.stdout)
    assert isinstance(listing, list)
    return listing


def run_one(n: int, seed: int, workdir: Path, *, profile: bool = False,
            timeout: float = 3600.0) -> Result:
    """One complete benchmark run in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    dovecot = Dovecot(workdir / "dovecot", users={USER: PASSWORD})
    sink = SmtpSink()
    dovecot.start()
    sink.start()
    try:
        loaded = load(dovecot, n, seed)
        config = write_config(workdir / "ticketd.toml", workdir / "ticketd.db", dovecot, sink)
        stats = workdir / "profile.out" if profile else None
        child = run_child(ticketd("-c", str(config), "run", "--once", profile=stats),
                          workdir / "ticketd.log", timeout)
        sink.wait_for(sum(loaded.conversations.values()), timeout=10)
        flags = server_flags(dovecot)
        acks = Counter(rcpt for message in sink.messages for rcpt in message.rcpt_tos)
        return Result(n, loaded, child, len(cli_json(config, "tickets", "list")),
                      len(cli_json(config, "quarantine", "list")), acks,
                      sum(b"\\Seen" in f for f in flags), len(flags))
    finally:
        sink.stop()
        dovecot.stop()


# ---------------------------------------------------------------- reporting


def report(result: Result, seed: int) -> None:
    """Print one run's figures."""
    loaded, child = result.loaded, result.child
    acks = sum(result.acks.values())
    print(f"ticketd benchmark: n={result.n} seed={seed}")
    print(f"  loaded:      {loaded.messages} messages, {loaded.bytes / MIB:.1f} MiB, "
          f"{result.conversations} conversations, in {loaded.seconds:.2f} s (not timed)")
    print(f"  run --once:  {child.seconds:.2f} s wall, {result.n / child.seconds:.1f} messages/s, "
          f"exit {child.exit_code}")
    print(f"  peak RSS:    {child.max_rss / MIB:.1f} MiB largest process, "
          f"{child.tree_rss / MIB:.1f} MiB whole process tree (sampled)")
    print(f"  tickets:     {result.tickets} created for {result.conversations} conversations")
    print(f"  acks:        {acks} delivered for {result.conversations} conversations")
    print(f"  \\Seen:       {result.seen} of {result.on_server} messages on the server")
    print(f"  quarantined: {result.quarantined}")


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


def series(ns: list[int], seed: int, root: Path, timeout: float) -> int:
    """Run several N and print peak RSS per N."""
    rows, failed = [], False
    for n in ns:
        result = run_one(n, seed, root / f"n{n}", timeout=timeout)
        problems = result.problems()
        failed |= bool(problems)
        rows.append((n, result, "OK" if not problems else "; ".join(problems)))
        print(f"  n={n}: {result.child.seconds:.2f} s, "
              f"{result.child.max_rss / MIB:.1f} MiB", flush=True)
    print("\n      n    wall s   msg/s  max RSS MiB  tree RSS MiB  status")
    for n, result, status in rows:
        child = result.child
        print(f"{n:7d} {child.seconds:9.2f} {n / child.seconds:7.1f} {child.max_rss / MIB:12.1f} "
              f"{child.tree_rss / MIB:13.1f}  {status}")
    return 1 if failed else 0


def single(n: int, seed: int, root: Path, profile: bool, timeout: float) -> int:
    """One run, reported; non-zero if anything is missing."""
    workdir = root / f"n{n}"
    result = run_one(n, seed, workdir, profile=profile, timeout=timeout)
    report(result, seed)
    if profile and (workdir / "profile.out").exists():
        print_profile(workdir / "profile.out")
    problems = result.problems()
    if problems:
        print("FAILED: " + "; ".join(problems))
        print_log_tail(workdir / "ticketd.log")
        return 1
    print("OK")
    return 0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="messages to load (default 1000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR and keep it (Dovecot, database, config, logs)")
    parser.add_argument("--profile", action="store_true",
                        help="run ticketd under cProfile and print the top 25 cumulative entries")
    parser.add_argument("--rss-series", metavar="N,N,...",
                        help="run each N in turn and print peak RSS per N")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="kill ticketd after this many seconds")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    with tempfile.TemporaryDirectory(prefix="ticketd-bench-") as scratch:
        os.chmod(scratch, 0o755)  # Dovecot's unprivileged processes must reach the Maildirs
        root = args.keep.resolve() if args.keep else Path(scratch)
        if args.rss_series:
            ns = [int(part) for part in args.rss_series.split(",") if part.strip()]
            return series(ns, args.seed, root, args.timeout)
        return single(args.n, args.seed, root, args.profile, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
