"""Micro-benchmark: the CPU cost of drafting one new-ticket notification (issue 8).

``python -m bench.notifydraft [--n 20000] [--messages 40] [--repeat 5]`` builds a team config
([signing], [[agents]], [queues.support] notify) like ``bench.run --notify``, parses the first
generated messages (``bench.generate``, the same mix: foreign charsets and non-ASCII names
among them), and times ``Notification(config).run(ctx)`` over them with timeit, in CPU time
(``time.process_time``). It prints the best of ``--repeat`` runs in µs per call: what one draft
costs inside the intake's transaction.
No servers, no database: the config is only read.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import timeit
from pathlib import Path

from bench.generate import generate
from bench.servers import MAILBOX, USER, _team
from ticketd.daemon.config import Config, load_config
from ticketd.daemon.outgoing import one_line
from ticketd.daemon.parsers.model import ParsedMessage
from ticketd.daemon.prepare import parse_or_reason
from ticketd.daemon.responders import Draft, ResponseContext, TicketView
from ticketd.daemon.responders.notification import Notification
from ticketd.daemon.rules import classify


def team_config(directory: Path) -> Config:
    """The benchmark's --notify config, with a second agent so the mail has two recipients."""
    path = directory / "ticketd.toml"
    path.write_text(f"""\
[database]
url = "sqlite:///{directory / 'ticketd.db'}"

[smtp]
host = "127.0.0.1"
port = 2525
security = "none"
from = "Example Support <{USER}>"
{_team(directory)}
[[agents]]
name = "Second Agent"
address = "second@example.test"

[[mailboxes]]
name = "{MAILBOX}"
address = "{USER}"
after_processing = "seen"
[mailboxes.imap]
host = "127.0.0.1"
port = 10143
security = "none"
username = "{USER}"
password = "secret"
""".replace('notify = ["agent@example.test"]', 'notify = ["agent@example.test", "second@example.test"]'))
    return load_config(path, environ={})


def contexts(config: Config, count: int) -> list[ResponseContext]:
    """New-ticket contexts of the first ``count`` generated messages that parse."""
    found = []
    for number, message in enumerate(generate(count, 1, to=USER), start=1001):
        parsed = parse_or_reason(message.raw)
        if not isinstance(parsed, ParsedMessage):
            continue
        rules = classify(parsed, MAILBOX, config.rules)
        sender = parsed.requester
        view = TicketView(number, one_line(parsed.subject, 998) or "(no subject)", "new", rules.priority,
                          rules.category, rules.queue or MAILBOX, (sender.email if sender else "").lower(),
                          one_line(sender.name) if sender else "", tuple(rules.tags), tuple(rules.fired))
        found.append(ResponseContext(view, parsed, True, MAILBOX, first_response=rules.first_response))
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.notifydraft", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="calls per timed run")
    parser.add_argument("--messages", type=int, default=100,
                        help="generated messages drafted in turn (a block of 100 holds the generator's whole mix)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs; the best is shown")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="notifydraft-") as tmp:
        config = team_config(Path(tmp))
        ctxs = contexts(config, args.messages)
        notification = Notification(config)
        for ctx in ctxs:  # every one is drafted (a Withheld or nothing would time something else)
            [draft] = notification.run(ctx)
            assert isinstance(draft, Draft), draft
        calls = [ctxs[i % len(ctxs)] for i in range(args.n)]
        run = notification.run
        # CPU time of this process, not wall time: on a shared machine other work only delays it.
        times = timeit.repeat(lambda: [run(ctx) for ctx in calls], number=1, repeat=args.repeat,
                              timer=time.process_time)
    best, median = min(times) / args.n * 1e6, sorted(times)[len(times) // 2] / args.n * 1e6
    print(f"{len(ctxs)} messages, {args.n} drafts a run, best of {args.repeat}: "
          f"{best:.1f} µs per notification (median {median:.1f})")


if __name__ == "__main__":
    main()
