"""Several ticketd instances on one PostgreSQL: throughput by instance count, and a SIGKILL midway.

``python -m bench.scaleout --n 2000 --instances 1,2 --repeat 2`` loads N generated mails into
four mailboxes of a private Dovecot (N/4 each), starts K daemons (``ticketd run``) on one
private PostgreSQL database and times them from the first start to the moment every message is
processed and every acknowledgement delivered to the sink. The counts alternate (1, 2, 1, 2,
...) so that a busy machine slows them alike.

``--kill`` (with ``--instances 3``): once half the mail is processed, one instance that holds a
mailbox is killed with SIGKILL. The run then checks what issue 11 asks: every message processed
once, every acknowledgement sent once (apart from the rows the dead instance had handed to the
SMTP server without committing "sent": at most ``smtp.connections``), every timer fired once,
and the dead instance's mailboxes taken over within the lease time. ``--timers M`` first makes
M tickets three days in the past (``ticketd ingest --now``) under ``[sla]``'s defaults, so their
SLA warnings and breaches are due when the daemons start: they race for them.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.child import child_env, ticketd
from bench.generate import generate
from bench.leansink import LeanSink
from bench.servers import PASSWORD
from devtools.dovecot import Dovecot
from devtools.postgres import Postgres, SyncConnection

MAILBOXES = 4
LEASE = 6.0  # seconds: the lease time the takeover is held to
# A killed instance's outbox claims last 3 x the SMTP timeout (daemon.outbox_due): 15 s here, not
# the 3 minutes of the default 60 s, so the run need not wait that long for its last acknowledgements.
SMTP_TIMEOUT = 5.0
USERS = [f"box{i}@example.test" for i in range(1, MAILBOXES + 1)]


@dataclass
class Run:
    instances: int
    n: int
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    killed: str = ""  # the instance id killed
    takeover: float | None = None  # seconds from the kill until its mailboxes were held again
    gap: float | None = None  # by the database's clock: the latest new lease's start after the old one's end
    duplicates: int = 0  # acknowledgements delivered twice (the dead instance's SMTP window)
    timers: int = 0  # due steps due at the start
    fired: int = 0  # SLA events they made

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds else 0.0


def config_text(url: str, dovecot: Dovecot, sink: LeanSink, sla: bool) -> str:
    boxes = "".join(f"""
[[mailboxes]]
name = "box{i}"
address = "{user}"
after_processing = "seen"
poll_interval = 1
[mailboxes.imap]
host = "{dovecot.host}"
port = {dovecot.port}
security = "none"
username = "{user}"
password = "{PASSWORD}"
""" for i, user in enumerate(USERS, start=1))
    return f"""
[limits]
auto_replies_per_hour = 100000

[database]
url = "{url}"

[instance]
lease_seconds = {LEASE:g}

[smtp]
host = "127.0.0.1"
port = {sink.port}
security = "none"
timeout = {SMTP_TIMEOUT:g}
from = "Example Support <{USERS[0]}>"
{"[sla]" if sla else ""}
{boxes}"""


def load(dovecot: Dovecot, n: int, seed: int) -> Counter[str]:
    """N/4 generated mails into each mailbox; the conversations (new tickets) by sender."""
    conversations: Counter[str] = Counter()
    for i, user in enumerate(USERS):
        for message in generate(n // MAILBOXES, seed + i, to=user):
            dovecot.deliver(user, message.raw)
            if not message.is_reply:
                conversations[message.sender] += 1
    return conversations


def old_tickets(config: Path, count: int, seed: int) -> int:
    """``count`` tickets made three days ago through ``ticketd ingest --now``: their SLA steps are due."""
    when = (datetime.now(timezone.utc) - timedelta(days=3)).isoformat()
    made = 0
    for message in generate(count, seed + 100, to=USERS[0]):
        if message.is_reply:
            continue
        done = subprocess.run(ticketd("-c", str(config), "ingest", "--mailbox", "box1", "--now", when),
                              input=message.raw, capture_output=True, env=child_env())
        if done.returncode != 0:
            raise RuntimeError(f"ingest failed: {done.stderr.decode()[-500:]}")
        made += 1
    return made


class Watch:
    """What the database says while the instances run."""

    def __init__(self, url: str) -> None:
        self.db = SyncConnection(url)

    def processed(self) -> int:
        return int(self.db.fetchval("SELECT count(*) FROM inbound_message WHERE status <> 'received'"))

    def pending_mail(self) -> int:
        return int(self.db.fetchval("SELECT count(*) FROM outbound_message WHERE status = 'pending'"))

    def due_timers(self) -> int:
        return int(self.db.fetchval("SELECT count(*) FROM due_step WHERE done_at IS NULL AND due_at <= now()"))

    def holders(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.db.fetch("SELECT mailbox, holder FROM mailbox_lease WHERE expires_at > now()")}

    def leases(self) -> dict[str, tuple[str, datetime, datetime]]:
        """Each mailbox's holder, lease start and end."""
        return {r[0]: (r[1], r[2], r[3]) for r in self.db.fetch(
            "SELECT mailbox, holder, acquired_at, expires_at FROM mailbox_lease")}

    def close(self) -> None:
        self.db.close()


def run(k: int, n: int, seed: int, root: Path, postgres: Postgres, kill: bool, timers: int,
        timeout: float) -> Run:
    result = Run(k, n)
    name = f"scale{k}_{int(time.time() * 1000) % 10**9}"
    url = postgres.create_database(name)
    dovecot = Dovecot(root / f"{name}-dovecot", users={user: PASSWORD for user in USERS})
    sink = LeanSink()
    dovecot.start()
    sink.start()
    procs: list[subprocess.Popen[bytes]] = []
    watch: Watch | None = None
    try:
        conversations = load(dovecot, n, seed)
        config = root / f"{name}.toml"
        config.write_text(config_text(url, dovecot, sink, sla=timers > 0))
        made = subprocess.run(ticketd("-c", str(config), "db", "upgrade"), capture_output=True, env=child_env())
        if made.returncode != 0:  # the tables, before anything reads them
            raise RuntimeError(f"db upgrade failed: {made.stderr.decode()[-500:]}")
        expected_acks = sum(conversations.values()) + (old_tickets(config, timers, seed) if timers else 0)
        watch = Watch(url)
        due_before = watch.due_timers()
        start = time.perf_counter()
        procs = [subprocess.Popen(ticketd("-c", str(config), "run"), env=child_env(), cwd=root,
                                  stdout=(root / f"{name}-{i}.log").open("wb"), stderr=subprocess.STDOUT)
                 for i in range(k)]
        killed_at = None
        lost: set[str] = set()
        ended: dict[str, datetime] = {}
        while time.perf_counter() - start < timeout:
            done = watch.processed()
            if kill and killed_at is None and done >= n // 2:
                killed_at, lost = _kill_one(procs, watch, result)
                ended = {box: lease[2] for box, lease in watch.leases().items() if box in lost}
            if killed_at is not None and result.takeover is None and lost and \
                    lost <= {box for box, who in watch.holders().items() if who != result.killed}:
                result.takeover = time.perf_counter() - killed_at
                now = watch.leases()
                result.gap = max((now[box][1] - ended[box]).total_seconds() for box in lost)
            if done >= n and watch.pending_mail() == 0 and len(sink.messages) >= expected_acks \
                    and watch.due_timers() == 0 and (killed_at is None or result.takeover is not None):
                break
            time.sleep(0.05)
        result.seconds = time.perf_counter() - start
        result.timers = due_before
        result.problems = _check(url, sink, conversations, expected_acks, n, result, kill)
        return result
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if watch is not None:
            watch.close()
        sink.stop()
        dovecot.stop()
        postgres.drop_database(name)


def _kill_one(procs: list[subprocess.Popen[bytes]], watch: Watch, result: Run) -> tuple[float, set[str]]:
    """SIGKILL the instance holding the most mailboxes; the mailboxes it held."""
    holders = watch.holders()
    by_pid = {int(who.split(":")[1]): who for who in holders.values()}
    victim = max((p for p in procs if p.pid in by_pid),
                 key=lambda p: sum(1 for who in holders.values() if who == by_pid[p.pid]))
    result.killed = by_pid[victim.pid]
    os.kill(victim.pid, signal.SIGKILL)
    return time.perf_counter(), {box for box, who in holders.items() if who == result.killed}


def _check(url: str, sink: LeanSink, conversations: Counter[str], expected_acks: int, n: int, result: Run,
           kill: bool) -> list[str]:
    found = []
    db = SyncConnection(url)
    try:
        states = dict(db.fetch("SELECT status, count(*) FROM inbound_message GROUP BY status"))
        if sum(states.values()) != n + (expected_acks - sum(conversations.values())):
            found.append(f"inbound rows by status {states}, {n} loaded")
        if states.get("received"):
            found.append(f"{states['received']} messages never processed")
        twice = db.fetchval("SELECT count(*) FROM (SELECT mailbox_id, uid FROM inbound_message WHERE uid IS NOT NULL "
                            "GROUP BY mailbox_id, uidvalidity, uid HAVING count(*) > 1) AS t")
        if twice:
            found.append(f"{twice} IMAP messages stored twice")
        tickets = int(db.fetchval("SELECT count(*) FROM ticket"))
        if tickets != expected_acks:
            found.append(f"{tickets} tickets for {expected_acks} conversations")
        if db.fetchval("SELECT count(*) FROM due_step WHERE done_at IS NULL AND due_at <= now()"):
            found.append("due timers left undone")
        fired = db.fetchval("SELECT count(*) FROM event WHERE what LIKE 'sla%'")
        again = db.fetchval("SELECT count(*) FROM (SELECT 1 FROM event WHERE what LIKE 'sla%' "
                            "GROUP BY ticket_id, what, detail HAVING count(*) > 1) AS t")
        result.fired = int(fired)
        if again:
            found.append(f"{again} SLA events fired twice")
    finally:
        db.close()
    delivered = Counter(str(m.message.get("Message-ID", "")) for m in sink.messages)
    result.duplicates = sum(c - 1 for c in delivered.values() if c > 1)
    if len(delivered) != expected_acks:
        found.append(f"{len(delivered)} distinct acknowledgements for {expected_acks} tickets")
    if result.duplicates and (not kill or result.duplicates > 8):
        found.append(f"{result.duplicates} acknowledgements delivered twice")
    if kill and (result.takeover is None or result.takeover > LEASE + 2):
        found.append(f"the dead instance's mailboxes taken over after {result.takeover} s (lease {LEASE:g} s)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--instances", default="1,2", help="instance counts, comma-separated (default 1,2)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--kill", action="store_true", help="SIGKILL one instance once half is processed")
    parser.add_argument("--timers", type=int, default=0, metavar="M", help="M tickets with due SLA timers first")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    counts = [int(k) for k in args.instances.split(",")]
    failed = False
    with tempfile.TemporaryDirectory(prefix="ticketd-scale-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK)
                                     else None) as scratch:
        root = Path(scratch)
        root.chmod(0o755)  # PostgreSQL and Dovecot run as other users: they must reach their directories
        postgres = Postgres(root / "pg")
        postgres.start()
        try:
            rows = []
            for attempt in range(args.repeat):
                for k in counts:
                    r = run(k, args.n, args.seed, root, postgres, args.kill, args.timers, args.timeout)
                    rows.append(r)
                    failed |= bool(r.problems)
                    extra = (f", killed {r.killed}, mailboxes held again {r.takeover:.2f} s after the kill "
                             f"(lease {LEASE:g} s; the new lease began {r.gap:.2f} s after the old one's end), "
                             f"{r.duplicates} acknowledgement(s) twice" if args.kill and r.takeover is not None else "")
                    print(f"  {k} instance(s), run {attempt + 1}: {r.seconds:.2f} s, {r.rate:.1f} msg/s, "
                          f"{r.timers} due timers ({r.fired} SLA events, none twice){extra}: {'OK' if not r.problems else '; '.join(r.problems)}",
                          flush=True)
        finally:
            postgres.stop()
    if len(counts) > 1 and not failed:
        base = [r.rate for r in rows if r.instances == counts[0]]
        for k in counts[1:]:
            rates = [r.rate for r in rows if r.instances == k]
            print(f"  {k} instances vs {counts[0]}: {sorted(rates)[len(rates) // 2] / sorted(base)[len(base) // 2]:.2f}x "
                  f"(medians {sorted(rates)[len(rates) // 2]:.1f} vs {sorted(base)[len(base) // 2]:.1f} msg/s)")
    print("FAILED" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
