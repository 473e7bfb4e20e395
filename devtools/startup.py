"""Start-up time of ``ticketd run --once``: process spawn to its first IMAP commands, and import time.

``python -m devtools.startup [--runs 5]`` starts a private Dovecot and an SMTP sink, puts a
relay between ticketd and Dovecot that timestamps every command ticketd sends, and runs
``ticketd -c CONFIG run --once`` several times. Before each timed run one new message is
delivered, so every run logs in, selects, searches and fetches it with an existing database,
as a restarted daemon would (a warm-up run first creates the database and fills the .pyc cache).
It prints the median, in seconds from spawn, of LOGIN, the first command after it (SELECT)
and the first UID FETCH, the CPU time ticketd had used by that FETCH (less sensitive to a busy
machine than wall time), and the median import time of ``daemon.cli`` and ``daemon.app``.
``--repo DIR`` (repeatable) measures other checkouts, their runs interleaved with this one's
so that a busy machine slows them alike: ``git archive REV | tar -x -C DIR`` makes one.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from devtools.dovecot import Dovecot
from devtools.smtpsink import SmtpSink

REPO = Path(__file__).resolve().parents[1]
USER, PASSWORD = "support@example.test", "secret"
# A tagged client command: "A123 UID FETCH ..." -> "UID FETCH"; LOGIN's arguments are never kept.
_COMMAND = re.compile(rb"^[A-Za-z0-9.]+ (UID [A-Za-z]+|[A-Za-z]+)")
STAGES = ("LOGIN", "SELECT", "UID FETCH")


class Relay(threading.Thread):
    """A TCP relay on 127.0.0.1 to ``target`` that notes when each client command passes.

    One client at a time (ticketd opens one IMAP connection per mailbox); the clock is
    ``time.perf_counter()``, so the times compare with the moment the parent spawned ticketd.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        super().__init__(daemon=True)
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.commands: list[tuple[float, str, float]] = []  # (when, command, CPU seconds of `pid` then)
        self.pid = 0  # the client process, whose CPU time is read as each command passes

    def run(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:  # closed: we are done
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()
            self._pipe(client, server, True)

    def _pipe(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        pending = b""
        try:
            while data := source.recv(65536):
                if from_client:
                    now = time.perf_counter()
                    pending += data
                    *lines, pending = pending.split(b"\r\n")
                    for line in lines:
                        if match := _COMMAND.match(line):
                            self.commands.append((now, match.group(1).decode().upper(), cpu_seconds(self.pid)))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of ``pid`` so far (its own, not its children's), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (proc(5) fields 14, 15)


def child_env(repo: Path) -> dict[str, str]:
    """``repo`` importable first, and .pyc files written so that warm runs read them."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(repo), env.get("PYTHONPATH")]))
    return env


def write_config(path: Path, database: Path, imap_port: int, smtp_port: int) -> Path:
    path.write_text(f"""\
[limits]
auto_replies_per_hour = 100000

[database]
url = "sqlite:///{database.resolve()}"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
from = "Example Support <{USER}>"

[[mailboxes]]
name = "support"
address = "{USER}"
after_processing = "seen"
[mailboxes.imap]
host = "127.0.0.1"
port = {imap_port}
security = "none"
username = "{USER}"
password = "{PASSWORD}"
folder = "INBOX"
""")
    return path


def message(n: int) -> bytes:
    return (f"From: Customer {n} <customer{n}@example.org>\r\nTo: {USER}\r\n"
            f"Subject: start-up probe {n}\r\nMessage-ID: <startup-{n}-{time.time_ns()}@example.org>\r\n"
            f"Date: Mon, 1 Jun 2026 10:00:00 +0000\r\n\r\nPlease help, run {n}.\r\n").encode()


def _niceness(nice: int) -> Callable[[], None] | None:
    """A preexec_fn giving the child that niceness (below 0 needs root), or None for 0."""
    return (lambda: os.setpriority(os.PRIO_PROCESS, 0, nice)) if nice else None


def timed_run(repo: Path, relay: Relay, config: Path, log: Path, nice: int = 0) -> dict[str, float]:
    """Seconds from spawn to each stage's first command, and to exit ("exit")."""
    relay.commands.clear()
    with log.open("ab") as out:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "run", "--once"],
                                stdout=out, stderr=subprocess.STDOUT, env=child_env(repo), cwd=repo,
                                preexec_fn=_niceness(nice))
        relay.pid = proc.pid
        code = proc.wait(timeout=120)
        end = time.perf_counter()
    if code != 0:
        raise RuntimeError(f"ticketd exited with {code}; see {log}")
    times = {"exit": end - start}
    for at, command, cpu in relay.commands:
        if command in STAGES and command not in times:
            times[command] = at - start
            if command == "UID FETCH":
                times["CPU"] = cpu
    missing = [stage for stage in STAGES if stage not in times]
    if missing:
        raise RuntimeError(f"ticketd sent no {', '.join(missing)}; see {log}")
    return times


def import_time(repo: Path, modules: str, nice: int = 0) -> tuple[float, float]:
    """Wall and CPU seconds to import ``modules`` in a fresh interpreter, its own start excluded."""
    code = ("import time; t, c = time.perf_counter(), time.process_time(); "
            f"import {modules}; print(time.perf_counter() - t, time.process_time() - c)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=child_env(repo), cwd=repo, timeout=60, preexec_fn=_niceness(nice))
    wall, cpu = out.stdout.split()
    return float(wall), float(cpu)


IMPORTS = ("ticketd.daemon.cli", "daemon.cli, daemon.app")


def measure(repos: list[Path], runs: int, scratch: Path, nice: int = 0) -> dict[Path, dict[str, list[float]]]:
    """Per checkout: import times and spawn-to-command times, the checkouts' runs interleaved."""
    results: dict[Path, dict[str, list[float]]] = {repo: {} for repo in repos}
    for repo in repos:
        import_time(repo, IMPORTS[-1])  # warm-up: writes the .pyc files
    for _ in range(runs):
        for repo in repos:
            for modules in IMPORTS:
                wall, cpu = import_time(repo, modules, nice)
                results[repo].setdefault(f"import {modules}", []).append(wall)
                results[repo].setdefault(f"import {modules} (CPU)", []).append(cpu)
    with Dovecot(scratch / "dovecot", users={USER: PASSWORD}) as dovecot, SmtpSink() as sink:
        relay = Relay((dovecot.host, dovecot.port))
        relay.start()
        configs = {repo: write_config(scratch / f"ticketd-{i}.toml", scratch / f"ticketd-{i}.db", relay.port,
                                      sink.port) for i, repo in enumerate(repos)}
        try:
            for n in range(runs + 1):
                for repo in repos:
                    dovecot.deliver(USER, message(n))
                    dovecot.messages(USER)  # Dovecot indexes new/ mail on the first SELECT: not ours to time
                    times = timed_run(repo, relay, configs[repo], scratch / "ticketd.log", nice)
                    if n:  # run 0 creates the database and warms the caches
                        for stage, seconds in times.items():
                            results[repo].setdefault(stage, []).append(seconds)
        finally:
            relay.close()
    return results


LABELS = {"LOGIN": "spawn -> LOGIN", "SELECT": "spawn -> SELECT (first after login)",
          "UID FETCH": "spawn -> first UID FETCH", "CPU": "CPU by the first UID FETCH (main process)",
          "exit": "spawn -> exit"}
ORDER = [f"import {modules}{cpu}" for modules in IMPORTS for cpu in ("", " (CPU)")] + list(LABELS)


def report(results: dict[Path, dict[str, list[float]]], runs: int, nice: int) -> None:
    print(f"median of {runs} runs, seconds ({sys.executable}, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.2f}, niceness {nice})")
    for repo, figures in results.items():
        print(f"{repo}:")
        for key in ORDER:
            values = figures[key]
            label = LABELS.get(key, key)
            print(f"  {label:38} {statistics.median(values):.3f}  ({' '.join(f'{v:.3f}' for v in values)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.startup", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each kind (default 5)")
    parser.add_argument("--repo", type=Path, action="append",
                        help="a checkout to measure (repeatable, runs interleaved; default this one)")
    parser.add_argument("--nice", type=int, default=0,
                        help="run ticketd at this niceness, e.g. -20 (as root) so that other load on a "
                             "shared machine stretches the figures less")
    args = parser.parse_args(argv)
    repos = [repo.resolve() for repo in args.repo or [REPO]]
    with tempfile.TemporaryDirectory(prefix="ticketd-startup-") as scratch:
        os.chmod(scratch, 0o755)  # Dovecot's unprivileged processes must reach the Maildirs
        results = measure(repos, args.runs, Path(scratch), args.nice)
    report(results, args.runs, args.nice)
    return 0


if __name__ == "__main__":
    sys.exit(main())
