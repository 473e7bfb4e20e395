"""bench/scrape.py (``--scrape``): the benchmark's config with and without [metrics], and a real daemon watched."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from bench.scrape import COLUMNS, Watch, free_port, watched_run
from bench.servers import write_imap_config
from ticketd.daemon.config import load_config
from devtools.dovecot import Dovecot, MailUser
from devtools.smtpsink import SmtpSink
from tests.support.daemon import write_config
from tests.support.mail import simple
from tests.support.scrape import with_metrics


def test_the_default_benchmark_serves_no_metrics_and_scrape_adds_a_loopback_endpoint(
        tmp_path: Path, dovecot: Dovecot, fresh_sink: SmtpSink) -> None:
    plain = write_imap_config(tmp_path / "plain.toml", tmp_path / "t.db", dovecot, fresh_sink)
    assert load_config(plain).metrics is None
    scraped = write_imap_config(tmp_path / "scraped.toml", tmp_path / "t.db", dovecot, fresh_sink, metrics_port=9199)
    assert load_config(scraped).metrics.listen == "127.0.0.1:9199"


def test_a_watch_whose_counters_stood_still_or_that_got_no_status_is_a_problem() -> None:
    still = Watch(1, scrapes=[(0.5, {c: 10.0 for c, *_ in COLUMNS}), (1.0, {c: 10.0 for c, *_ in COLUMNS})])
    assert [p.split(" counter")[0] for p in still.problems()[:3]] == ["the fetched", "the processed", "the acked"]
    assert still.problems()[-1].startswith("ticketd status --json gave nothing")
    moving = Watch(1, scrapes=[(0.5, {c: 0.0 for c, *_ in COLUMNS}), (1.0, {c: 5.0 for c, *_ in COLUMNS})],
                   status={"mailboxes": []})
    assert moving.problems() == []


def test_a_running_daemon_is_scraped_as_it_works_and_its_status_read_once(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    port = free_port()
    config = with_metrics(write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)]),
                          port)

    def deliver(first: int) -> None:
        for n in range(first, first + 4):
            dovecot.deliver(fresh_user.address, simple(f"c{n}@example.org", f"Q {n}", f"<w{n}@example.org>"))

    deliver(0)
    later = threading.Timer(3.0, deliver, args=(4,))  # while it runs: the counters must move on
    later.start()
    try:
        # `run` never ends by itself: the run's timeout (Running's watchdog) kills it after 7 s.
        child, watch = watched_run([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "run"],
                                   tmp_path / "ticketd.log", 7.0, port, config, n=8)
    finally:
        later.cancel()
    assert child.exit_code != 0  # killed, as planned
    assert watch.problems() == [], watch
    assert watch.scrapes[-1][1]["fetched"] == 8 and watch.scrapes[-1][1]["acked"] == 8
    assert watch.status is not None and watch.status["mailboxes"][0]["name"] == "support"
