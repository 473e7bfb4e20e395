"""``--scrape``: the benchmark's ticketd with [metrics], scraped while it runs, and `ticketd status` once.

Off by default: each scrape and the status process take CPU from the two cores the daemon
runs on, so the figures of a scraped run are not comparable with the others'.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.child import REPO, Child, Running, child_env

INTERVAL = 0.5  # seconds between scrapes
# (column, metric, labels): what the table shows of each scrape.
COLUMNS = (("fetched", "ticketd_messages_fetched_total", {"mailbox": "support"}),
           ("processed", "ticketd_messages_processed_total", {"mailbox": "support", "outcome": "processed"}),
           ("acked", "ticketd_outbox_sent_total", {"kind": "acknowledgement"}),
           ("timed", "ticketd_acknowledgement_latency_seconds_count", {}),
           ("pending", "ticketd_outbox_pending", {}),
           ("backlog", "ticketd_inbound_backlog", {"mailbox": "support"}))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Watch:
    """What was seen of the running daemon from outside."""

    port: int
    scrapes: list[tuple[float, dict[str, float]]] = field(default_factory=list)  # (seconds since spawn, columns)
    failed: int = 0  # scrapes that got no answer (before the endpoint is up, after the exit)
    status: dict[str, Any] | None = None  # `ticketd status --json`, once, mid-run
    status_at: float | None = None
    status_error: str = ""

    def problems(self) -> list[str]:
        moved = {column: {round(s.get(column, 0)) for _, s in self.scrapes} for column, *_ in COLUMNS[:3]}
        found = [f"the {column} counter never moved across {len(self.scrapes)} scrapes"
                 for column, seen in moved.items() if len(seen) < 2]
        if self.status is None:
            found.append(f"ticketd status --json gave nothing: {self.status_error or 'never run'}")
        return found


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    return {column: samples.get((name, frozenset(labels.items())), 0.0) for column, name, labels in COLUMNS}


def watched_run(command: list[str], log: Path, timeout: float, port: int, config: Path, n: int) -> tuple[Child, Watch]:
    """Run ticketd to its end, scraping it every INTERVAL and asking `status` once half is fetched."""
    watch = Watch(port)
    running = Running(command, log, timeout)
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(running, watch, done, config, n), daemon=True)
    watcher.start()
    child = running.wait()
    done.set()
    watcher.join()
    return child, watch


def _watch(running: Running, watch: Watch, done: threading.Event, config: Path, n: int) -> None:
    while not done.wait(INTERVAL):
        try:
            seen = scrape(watch.port)
        except OSError:
            watch.failed += 1
            continue
        watch.scrapes.append((running.elapsed(), seen))
        if watch.status_at is None and seen["fetched"] >= n / 2:
            watch.status_at = running.elapsed()
            _status(watch, config)


def _status(watch: Watch, config: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "status", "--json"],
                          capture_output=True, timeout=60, env=child_env(), cwd=REPO)
    if done.returncode == 0:
        watch.status = json.loads(done.stdout)
    else:
        watch.status_error = done.stderr.decode(errors="replace").strip()[-300:]


def report_watch(watch: Watch) -> None:
    """How the main counters moved, scrape by scrape, and the backlog `ticketd status` saw."""
    print(f"  scrapes:      {len(watch.scrapes)} of http://127.0.0.1:{watch.port}/metrics every {INTERVAL} s "
          f"({watch.failed} unanswered: before the endpoint was up or after the exit)")
    print("                   t s " + "".join(f"{column:>10}" for column, *_ in COLUMNS))
    for at, seen in watch.scrapes:
        print(f"                {at:6.2f} " + "".join(f"{seen[column]:10.0f}" for column, *_ in COLUMNS))
    if watch.status is None:
        print(f"  status:       failed: {watch.status_error}")
        return
    print(f"  status:       `ticketd status --json` at {watch.status_at:.2f} s:")
    for box in watch.status["mailboxes"]:
        print(f"                mailbox {box['name']}: connected {box.get('connected')}, backlog {box['backlog']} "
              f"stored not processed, {box.get('server_unfetched')} on the server not fetched yet")
    outbox = watch.status["outbox"]
    print(f"                outbox: {outbox['pending']} pending, "
          f"the oldest {outbox['oldest_pending_age_seconds']} s old")
