"""LMTP intake against `ticketd run`: a reply per recipient, 550/552/451, two mailboxes, SIGKILL mid-burst."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools._process import free_port, wait_until
from devtools.lmtpclient import LmtpClient, message
from devtools.smtpsink import SmtpSink
from ticketd.storage.db import database
from ticketd.storage.models import InboundMessage
from tests.support import backend
from tests.support.daemon import PROJECT, cli, cli_json, running, tickets, write_config
from tests.support.mail import simple
from tests.support.locks import hold_write_lock
from tests.support.scrape import Samples, scrape, until, value
from tests.support.scrape import free_port as metrics_port

ADDRESSES = {"support": "support@example.test", "sales": "Sales@Example.TEST"}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket's path may not exceed 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="lmtp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def lmtp_config(directory: Path, smtp_port: int, listen: str | None = None, extra: str = "",
                busy_timeout: float | None = None, **kwargs: object) -> Path:
    """A site without IMAP: [[addresses]] support and sales, LMTP on ``directory``/lmtp.sock."""
    listen = listen or str(directory / "lmtp.sock")
    path = write_config(directory, 10143, smtp_port, [("support", "support@example.test")],
                        extra=f'{extra}\n[daemon]\nlog_target = "{directory}/daemon.log"\n',
                        **kwargs)  # type: ignore[arg-type]
    text = path.read_text()
    text = text[:text.index("[[mailboxes]]")]
    if busy_timeout is not None:
        text = text.replace("\n[database]\n", f"\n[database]\nbusy_timeout = {busy_timeout}\n", 1)
    text += "".join(f'\n[[addresses]]\nname = "{n}"\naddress = "{a}"\n' for n, a in ADDRESSES.items())
    path.write_text(text + f'\n[lmtp]\nlisten = "{listen}"\n')
    return path


async def deliver(target: str | tuple[str, int], recipients: list[str], raw: bytes,
                  mail_options: tuple[str, ...] = ()) -> list[tuple[int, str]]:
    def send() -> list[tuple[int, str]]:
        with LmtpClient(target) as client:
            return client.deliver("customer@example.org", recipients, raw, mail_options)
    return await asyncio.to_thread(send)


async def stored_rows(config: Path) -> list[InboundMessage]:
    from ticketd.daemon.config import load_config

    async with database(load_config(config).database_url):
        return await InboundMessage.all().order_by("id").prefetch_related("mailbox", "source")


async def test_each_recipient_hears_250_and_the_message_becomes_a_ticket_and_an_acknowledgement(
        short_dir: Path, fresh_sink: SmtpSink) -> None:
    config = lmtp_config(short_dir, fresh_sink.port)
    sock = short_dir / "lmtp.sock"
    raw = simple("ann@example.org", "Printer on fire", "<fire@example.org>")
    async with running(config):
        assert await asyncio.to_thread(wait_until, sock.exists, 10)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660  # the default: owner and group only
        # A signed reply address (support+TAG@) reaches its mailbox, in any case of the domain.
        replies = await deliver(str(sock), ["support+t42-3f9a@EXAMPLE.test"], raw)
        assert [code for code, _ in replies] == [250]
        assert await asyncio.to_thread(fresh_sink.wait_for, 1, 30)
    assert not sock.exists()  # removed at the stop
    [ticket] = await tickets(config)
    assert (ticket["subject"], ticket["mailbox"]) == ("Printer on fire", "support")
    [ack] = fresh_sink.messages
    assert ack.rcpt_tos == ("ann@example.org",) and "[#1]" in str(ack.message["Subject"])
    [row] = await stored_rows(config)
    # The final delivery's trace lines (RFC 5321 4.4): what the bounce filter reads.
    assert row.source.content.startswith(b"Return-Path: <customer@example.org>\r\n"
                                    b"Delivered-To: support+t42-3f9a@EXAMPLE.test\r\n" + raw[:20])
    assert replies[0][1] == f"2.0.0 OK, inbound {row.id}"


async def test_an_unknown_recipient_is_550_at_rcpt_and_the_known_one_is_served(short_dir: Path,
                                                                               fresh_sink: SmtpSink) -> None:
    config = lmtp_config(short_dir, fresh_sink.port)
    raw = simple("bo@example.org", "Who is there", "<who@example.org>")
    async with running(config):
        assert await asyncio.to_thread(wait_until, (short_dir / "lmtp.sock").exists, 10)
        replies = await deliver(str(short_dir / "lmtp.sock"), ["nobody@example.test", "support@example.test",
                                                               "support@elsewhere.test"], raw)
        assert await asyncio.to_thread(fresh_sink.wait_for, 1, 30)
    assert replies[0] == (550, "5.1.1 No such mailbox here") and replies[2][0] == 550
    assert replies[1][0] == 250
    assert len(await stored_rows(config)) == 1


async def test_over_the_size_limit_is_552_for_each_recipient_and_nothing_is_stored(
        short_dir: Path, fresh_sink: SmtpSink) -> None:
    config = lmtp_config(short_dir, fresh_sink.port, max_bytes=4000)
    sock = str(short_dir / "lmtp.sock")
    big = simple("cy@example.org", "Huge", "<huge@example.org>", body=("y" * 76 + "\r\n") * 200)
    one_line = simple("cy@example.org", "Long line", "<line@example.org>", body="z" * 9000)
    async with running(config):
        assert await asyncio.to_thread(wait_until, (short_dir / "lmtp.sock").exists, 10)
        after_data = await deliver(sock, ["support@example.test", "sales@example.test"], big)
        declared = await deliver(sock, ["support@example.test"], big, (f"SIZE={len(big)}",))
        long_line = await deliver(sock, ["support@example.test", "sales@example.test"], one_line)
        small = await deliver(sock, ["support@example.test"], simple("cy@example.org", "Small", "<s@example.org>"))
        assert await asyncio.to_thread(fresh_sink.wait_for, 1, 30)
    # RFC 2033: one reply per accepted recipient, or the client would read the next one wrong.
    assert after_data == [(552, "5.3.4 Message exceeds the size limit of this mailbox")] * 2
    assert declared == [(552, "5.3.4 Message exceeds the size limit of this mailbox")]
    assert [code for code, _ in long_line] == [552, 552]
    assert small[0][0] == 250
    assert [r.message_id for r in await stored_rows(config)] == ["<s@example.org>"]


async def test_a_database_locked_past_its_timeout_is_451_and_nothing_is_lost(short_dir: Path,
                                                                             fresh_sink: SmtpSink) -> None:
    config = lmtp_config(short_dir, fresh_sink.port, busy_timeout=0.5)
    sock = str(short_dir / "lmtp.sock")
    first = simple("di@example.org", "Before the lock", "<before@example.org>")
    second = simple("di@example.org", "During the lock", "<during@example.org>")
    async with running(config):
        assert await asyncio.to_thread(wait_until, (short_dir / "lmtp.sock").exists, 10)
        assert [c for c, _ in await deliver(sock, ["support@example.test"], first)] == [250]
        # Taken at once: processing the first message (after the intake pauses) meets it too.
        holder = await asyncio.to_thread(hold_write_lock, short_dir / "ticketd.db", 3.0)
        refused = await deliver(sock, ["support@example.test", "sales@example.test"], second)
        await asyncio.to_thread(holder.join)
        again = await deliver(sock, ["support@example.test", "sales@example.test"], second)  # the MTA's retry
        assert await asyncio.to_thread(fresh_sink.wait_for, 2, 30)
    assert refused == [(451, "4.3.0 Not stored, try again later")] * 2
    assert [c for c, _ in again] == [250, 250]
    assert sorted(t["subject"] for t in await tickets(config)) == ["Before the lock", "During the lock"]
    rows = await stored_rows(config)
    assert [r.message_id for r in rows] == ["<before@example.org>", "<during@example.org>", "<during@example.org>"]
    assert not [r for r in rows if r.status == "quarantined"]  # a condition of the system, never the message's


async def test_one_message_for_two_mailboxes_is_a_row_in_each_and_a_reply_per_recipient(
        short_dir: Path, fresh_sink: SmtpSink) -> None:
    config = lmtp_config(short_dir, fresh_sink.port)
    raw = simple("eve@example.org", "For both of you", "<both@example.org>")
    async with running(config):
        assert await asyncio.to_thread(wait_until, (short_dir / "lmtp.sock").exists, 10)
        replies = await deliver(str(short_dir / "lmtp.sock"),
                                ["support@example.test", "sales@example.test", "support+x@example.test"], raw)
        assert await asyncio.to_thread(fresh_sink.wait_for, 1, 30)
    assert [code for code, _ in replies] == [250, 250, 250]
    support, sales = await stored_rows(config)
    assert [r.mailbox.name if r.mailbox else None for r in (support, sales)] == ["support", "sales"]
    assert replies[0][1] == replies[2][1] == f"2.0.0 OK, inbound {support.id}"
    assert replies[1][1] == f"2.0.0 OK, inbound {sales.id}"
    assert b"Delivered-To: support@example.test\r\nDelivered-To: support+x@example.test\r\n" in support.source.content
    assert b"Delivered-To: sales@example.test\r\n" in sales.source.content
    # The same mail to two mailboxes is one ticket: the second copy is its duplicate.
    assert (support.status, sales.status) == ("processed", "duplicate")
    assert sales.ticket_id == support.ticket_id and len(await tickets(config)) == 1  # type: ignore[attr-defined]


async def test_each_mailbox_a_delivery_reached_is_counted_in_the_metrics(short_dir: Path, fresh_sink: SmtpSink) -> None:
    port = metrics_port()
    config = lmtp_config(short_dir, fresh_sink.port, extra=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    async with running(config):
        assert await asyncio.to_thread(wait_until, (short_dir / "lmtp.sock").exists, 10)
        await deliver(str(short_dir / "lmtp.sock"), ["support@example.test", "sales@example.test"],
                      simple("eve@example.org", "Counted", "<counted@example.org>"))

        def counted() -> Samples | None:
            samples = scrape(port)
            return samples if value(samples, "ticketd_outbox_sent_total", kind="acknowledgement") == 1 else None

        samples = await asyncio.to_thread(until, counted)
    assert samples, "the acknowledgement never showed in the metrics"
    assert value(samples, "ticketd_lmtp_messages_total", mailbox="support") == 1
    assert value(samples, "ticketd_lmtp_messages_total", mailbox="sales") == 1
    assert value(samples, "ticketd_messages_processed_total", mailbox="support", outcome="processed") == 1
    assert value(samples, "ticketd_messages_processed_total", mailbox="sales", outcome="duplicate") == 1


async def test_a_stop_right_after_a_burst_processes_what_was_answered_250(short_dir: Path,
                                                                          fresh_sink: SmtpSink) -> None:
    config = lmtp_config(short_dir, fresh_sink.port)
    sock = str(short_dir / "lmtp.sock")

    def burst() -> list[int]:
        with LmtpClient(sock) as client:
            return [client.deliver("s@customer.test", ["support@example.test"], message(n, tag="stop"))[0][0]
                    for n in range(20)]
    async with running(config):
        assert await asyncio.to_thread(wait_until, (short_dir / "lmtp.sock").exists, 10)
        assert await asyncio.to_thread(burst) == [250] * 20
    # Stopped at once: the backlog was processed on the way out, not left for the next start.
    assert sorted(t["subject"] for t in await tickets(config)) == sorted(f"stop {n}" for n in range(20))


async def test_a_loopback_port_serves_as_the_socket_does(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    port = free_port()
    config = lmtp_config(tmp_path, fresh_sink.port, listen=f"127.0.0.1:{port}")
    raw = simple("fay@example.org", "Over TCP", "<tcp@example.org>")
    async with running(config):
        assert await asyncio.to_thread(wait_until, lambda: _connects(port), 10)
        assert [c for c, _ in await deliver(("127.0.0.1", port), ["sales@example.test"], raw)] == [250]
        assert await asyncio.to_thread(fresh_sink.wait_for, 1, 30)
    assert [t["mailbox"] for t in await tickets(config)] == ["sales"]


def test_a_socket_another_daemon_listens_on_is_refused_and_a_stale_one_replaced(short_dir: Path,
                                                                                 fresh_sink: SmtpSink) -> None:
    config = lmtp_config(short_dir, fresh_sink.port)
    sock = short_dir / "lmtp.sock"
    assert cli(config, "check-config").returncode == 0
    first = _daemon(config, short_dir / "first.out")
    try:
        assert wait_until(sock.exists, 30)
        # Another database: on the same SQLite file the instance lock would refuse it first (test_instances).
        other = short_dir / "other.toml"
        other.write_text(config.read_text().replace(backend.url(short_dir / "ticketd.db"),
                                                    backend.url(short_dir / "other.db"), 1))
        second = cli(other, "run", timeout=60)
        assert second.returncode == 1
        assert "another process is listening on it" in (short_dir / "daemon.log").read_text()
        assert _deliver_one(sock, "Still served") == 250  # the first daemon's socket is untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert sock.exists()  # left behind by the kill
    restarted = _daemon(config, short_dir / "restarted.out")
    try:
        assert wait_until(lambda: _deliver_one(sock, "After the restart") == 250, 30)
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(60) == 0
    sock.write_text("not a socket")
    refused = cli(config, "run", timeout=60)
    assert refused.returncode == 1 and "exists and is not a socket" in (short_dir / "daemon.log").read_text()


async def test_a_socket_that_cannot_be_made_stops_the_start_with_one_line(
        tmp_path: Path, fresh_sink: SmtpSink, caplog: pytest.LogCaptureFixture) -> None:
    from ticketd.daemon import app
    from ticketd.daemon.config import load_config

    config = load_config(lmtp_config(tmp_path, fresh_sink.port, listen="/nonexistent-dir/lmtp.sock"))
    assert await app.run_forever(config, asyncio.Event(), parse_workers=0) == 1
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert line == "not starting: lmtp.listen /nonexistent-dir/lmtp.sock: No such file or directory"


@pytest.mark.slow
def test_sigkill_mid_burst_loses_nothing_that_was_answered_250_and_makes_nothing_twice(
        short_dir: Path, fresh_sink: SmtpSink) -> None:
    config = lmtp_config(short_dir, fresh_sink.port)
    sock = short_dir / "lmtp.sock"
    assert cli(config, "check-config").returncode == 0
    daemon = _daemon(config, short_dir / "first.out")
    assert wait_until(sock.exists, 30)
    accepted: list[str] = []
    refused: list[int] = []
    # Killed from the client's side at the 300th 250: the next message is in flight.
    try:
        with LmtpClient(str(sock)) as client:
            for n in range(1000):
                [(code, _)] = client.deliver("sender@customer.test", ["support@example.test"], message(n))
                if code != 250:
                    refused.append(code)
                    break
                accepted.append(f"burst {n}")
                if len(accepted) == 300:
                    daemon.send_signal(signal.SIGKILL)
    except OSError:  # smtplib's disconnect, a reset or a broken pipe: the daemon is gone
        pass
    assert refused == []
    daemon.wait(30)
    assert len(accepted) >= 300
    restarted = _daemon(config, short_dir / "restarted.out")
    try:
        assert wait_until(lambda: len(_ticket_subjects(config)) >= len(accepted), 120, interval=1.0), \
            (short_dir / "daemon.log").read_text()[-3000:]
    finally:
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(60) == 0
    subjects = _ticket_subjects(config)
    assert len(subjects) == len(set(subjects))  # none twice
    in_flight = {f"burst {len(accepted)}"}  # stored or not: the MTA had no answer and sends it again
    assert set(accepted) <= set(subjects) <= set(accepted) | in_flight
    assert cli_json(config, "quarantine", "list", "--json") == []


def _daemon(config: Path, out: Path) -> subprocess.Popen[bytes]:
    with out.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "run"], stdout=log, stderr=log,
                                env=dict(os.environ, PYTHONPATH=str(PROJECT)), cwd=PROJECT)


def _deliver_one(sock: Path, subject: str) -> int:
    try:
        with LmtpClient(str(sock), timeout=10) as client:
            [(code, _)] = client.deliver("gil@example.org", ["support@example.test"],
                                         simple("gil@example.org", subject, f"<{subject.replace(' ', '.')}@x>"))
            return code
    except OSError:
        return 0


def _ticket_subjects(config: Path) -> list[str]:
    done = cli(config, "tickets", "list", "--json")
    return [t["subject"] for t in json.loads(done.stdout)] if done.returncode == 0 else []


def _connects(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
