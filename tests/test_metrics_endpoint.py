"""A real `ticketd run` with [metrics], on real Dovecot and SMTP: scraped over HTTP, and `ticketd status`
run beside it as a separate process."""

from __future__ import annotations

import socket
from pathlib import Path

from devtools.dovecot import Dovecot, MailUser
from devtools.smtpsink import SmtpSink
from tests.conftest import ServerFactory
from tests.support.daemon import cli, write_config
from tests.support.mail import simple
from tests.support.scrape import daemon, free_port, scrape, status, until, value, with_metrics

ACK = "ticketd_outbox_sent_total"


def deliver(dovecot: Dovecot, user: MailUser, first: int, count: int) -> None:
    for n in range(first, first + count):
        dovecot.deliver(user.address, simple(f"c{n}@example.org", f"Question {n}", f"<m{n}@example.org>"))


def test_counters_move_as_mail_is_fetched_processed_and_acknowledged(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    port = free_port()
    config = with_metrics(write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)]),
                          port)
    deliver(dovecot, fresh_user, 0, 3)
    with daemon(config, tmp_path / "ticketd.log"):
        first = until(lambda: (s := scrape(port)) and value(s, ACK, kind="acknowledgement") == 3 and s)
        assert first, "three acknowledgements never showed in the metrics"
        assert value(first, "ticketd_messages_fetched_total", mailbox="support") == 3
        assert value(first, "ticketd_messages_processed_total", mailbox="support", outcome="processed") == 3
        assert value(first, "ticketd_acknowledgement_latency_seconds_count") == 3
        assert 0 < value(first, "ticketd_acknowledgement_latency_seconds_sum") < 30  # type: ignore[operator]
        assert value(first, "ticketd_filter_verdicts_total", filter="autoreply", verdict="accept") == 3
        assert value(first, "ticketd_imap_connected", mailbox="support") == 1
        assert fresh_sink.wait_for(3, timeout=10)

        deliver(dovecot, fresh_user, 3, 2)  # IDLE hears of them: the same counters move on
        moved = until(lambda: (s := scrape(port)) and value(s, ACK, kind="acknowledgement") == 5 and s)
        assert moved, "the counters did not move with two more messages"
        assert value(moved, "ticketd_messages_fetched_total", mailbox="support") == 5
        assert value(moved, "ticketd_acknowledgement_latency_seconds_count") == 5
        buckets = {dict(labels)["le"]: v for (name, labels), v in moved.items()
                   if name == "ticketd_acknowledgement_latency_seconds_bucket"}
        assert buckets["+Inf"] == 5 and buckets["0.05"] <= buckets["1.0"] <= 5

        fresh_sink.down()  # the outbox fills up: pending, and how old the oldest row is
        deliver(dovecot, fresh_user, 5, 1)
        waiting = until(lambda: (s := scrape(port)) and value(s, "ticketd_outbox_pending") == 1 and s)
        assert waiting, "the pending acknowledgement never showed in the metrics"
        assert value(waiting, "ticketd_outbox_failures_total", reason="unreachable") >= 1  # type: ignore[operator]
        oldest = "ticketd_outbox_oldest_pending_age_seconds"
        assert until(lambda: value(scrape(port), oldest) > 0.5)  # type: ignore[operator]
        seen = status(config)
        assert seen["outbox"]["pending"] == 1 and seen["outbox"]["oldest_pending_age_seconds"] > 0
        [box] = seen["mailboxes"]
        assert box["connected"] is True and box["backlog"] == 0 and box["stale"] is False
        assert box["last_fetch_at"] is not None and box["last_error"] == ""
        fresh_sink.up()
        assert fresh_sink.wait_for(6, timeout=30)  # the retry (retry_base 0.2 s) delivers it


def test_status_shows_the_backlog_then_a_stopped_imap_server_with_its_error(
        tmp_path: Path, dovecot_factory: ServerFactory[Dovecot], fresh_sink: SmtpSink) -> None:
    server = dovecot_factory()
    user = server.add_user(password="s3cret-Pa55")
    spam = (f'[filters]\npipeline = ["spam"]\n[filters.spam]\non_unreachable = "defer"\ntimeout = 2\n'
            f'port = {free_port()}\n')
    config = write_config(tmp_path, server.port, fresh_sink.port, [("support", user.address)], extra=spam)
    config.write_text(config.read_text().replace('password = "secret"', 'password = "s3cret-Pa55"'))
    port = free_port()
    with_metrics(config, port)
    deliver(server, user, 0, 2)  # nothing answers where spamd should be: both deferred, stored and waiting
    with daemon(config, tmp_path / "ticketd.log"):
        held = until(lambda: (s := status(config)) and s["mailboxes"][0]["backlog"] == 2
                     and s["mailboxes"][0]["connected"] and s)
        assert held, "the deferred messages never showed as backlog of a connected mailbox"
        [box] = held["mailboxes"]
        assert box["via"] == "imap" and box["last_error"] == ""
        assert until(lambda: status(config)["mailboxes"][0]["server_unfetched"] == 0)
        samples = until(lambda: (s := scrape(port)) and value(s, "ticketd_inbound_backlog", mailbox="support") == 2
                        and s)
        assert samples, "the backlog never showed in the metrics"
        assert value(samples, "ticketd_spamd_errors_total", reason="connect") == 2
        assert value(samples, "ticketd_filter_verdicts_total", filter="spam", verdict="defer") == 2

        server.stop()
        down = until(lambda: (s := status(config)) and not s["mailboxes"][0]["connected"] and s)
        assert down, "the stopped IMAP server still shows as connected"
        [box] = down["mailboxes"]
        assert box["last_error"] and box["last_error_at"] is not None
        assert "s3cret-Pa55" not in box["last_error"]
        lost = until(lambda: (s := scrape(port)) and value(s, "ticketd_imap_connected", mailbox="support") == 0 and s)
        assert lost and value(lost, "ticketd_imap_reconnects_total", mailbox="support") >= 1  # type: ignore[operator]
    after = status(config)  # a clean stop: not connected, the last error still there
    assert after["mailboxes"][0]["connected"] is False and after["mailboxes"][0]["last_error"]


def test_an_address_already_taken_stops_the_start_with_one_line(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = with_metrics(write_config(tmp_path, dovecot.port, fresh_sink.port,
                                           [("support", fresh_user.address)]), port)
        assert f"metrics: http://127.0.0.1:{port}/metrics".encode() in cli(config, "check-config").stdout
        done = cli(config, "run", "--once")
    assert done.returncode == 1
    assert f"not starting: metrics.listen 127.0.0.1:{port}: Address already in use".encode() in done.stderr
    assert b"Traceback" not in done.stderr
