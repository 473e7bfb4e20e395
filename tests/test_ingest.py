"""`ticketd ingest` as an MTA runs it: many at once, beside the daemon, with locks, limits and faults."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from ticketd.daemon import sweeper
from ticketd.daemon.config import load_config
from ticketd.daemon.ingest import ingest, read_message
from ticketd.daemon.pipeline import Processor
from devtools.dovecot import Dovecot, MailUser
from devtools.smtpsink import SmtpSink
from ticketd.storage import intake
from ticketd.storage.db import database
from ticketd.storage.errors import TemporaryFailure
from ticketd.storage.models import InboundMessage, InboundStatus
from tests.support import backend
from tests.support.daemon import PROJECT, cli, cli_json, write_config
from tests.support.mail import simple
from tests.support.locks import hold_write_lock as _hold_write_lock

PIPE = '\n[[addresses]]\nname = "pipe"\naddress = "help@example.test"\n'


def _config(directory: Path, smtp_port: int, imap_port: int = 10143, imap_user: str = "support@example.test",
            busy_timeout: float | None = None, pipe_only: bool = False, extra: str = "", **kwargs: object) -> Path:
    path = write_config(directory, imap_port, smtp_port, [("support", imap_user)], extra=extra + PIPE,
                        **kwargs)  # type: ignore[arg-type]
    text = path.read_text()
    if busy_timeout is not None:
        text = text.replace("\n[database]\n", f"\n[database]\nbusy_timeout = {busy_timeout}\n", 1)
    if pipe_only:  # no IMAP at all: the MTA is the only way in
        text = text[:text.index("[[mailboxes]]")]
    path.write_text(text)
    return path


def _ingest_process(config: Path, raw: bytes, *args: str) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "ingest", *args],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=dict(os.environ, PYTHONPATH=str(PROJECT)), cwd=PROJECT)
    assert process.stdin is not None
    process.stdin.write(raw)
    process.stdin.close()
    return process


def _daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "run"], stdout=out, stderr=out,
                                env=dict(os.environ, PYTHONPATH=str(PROJECT)), cwd=PROJECT)


def _stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(60)


def _one_short_line(stderr: bytes) -> str:
    lines = stderr.decode().splitlines()
    assert len(lines) == 1 and len(lines[0]) <= 240 and "Traceback" not in lines[0], stderr.decode()
    return lines[0]


def test_thirty_parallel_ingests_beside_a_busy_daemon_make_thirty_tickets(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port, dovecot.port, fresh_user.address,
                     extra=f'\n[daemon]\nlog_target = "{tmp_path}/daemon.log"\n')
    assert cli(config, "check-config").returncode == 0  # creates the database before the burst
    daemon = _daemon(config, tmp_path / "daemon.out")
    try:
        for i in range(20):  # the daemon writes its own tickets while the pipes write theirs
            dovecot.deliver(fresh_user.address, simple(f"imap{i}@example.org", f"IMAP {i}", f"<imap{i}@example.org>"))
        pipes = [_ingest_process(config, simple(f"pipe{i}@example.org", f"Piped {i}", f"<pipe{i}@example.org>"),
                                 "--mailbox", "pipe") for i in range(30)]
        results = [(p.wait(120), p.stdout.read(), p.stderr.read()) for p in pipes]  # type: ignore[union-attr]
        for code, out, err in results:
            assert code == 0 and err == b"", err.decode()
            assert json.loads(out)["status"] == "processed"
        assert fresh_sink.wait_for(50, timeout=60), len(fresh_sink.messages)
    finally:
        assert _stop(daemon) == 0
    listed = cli_json(config, "tickets", "list", "--json")
    assert sorted(t["subject"] for t in listed if t["mailbox"] == "pipe") == sorted(f"Piped {i}" for i in range(30))
    assert len(listed) == 50
    assert cli_json(config, "quarantine", "list", "--json") == []


def test_ingest_waits_for_another_writer_then_stores(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port, busy_timeout=20)
    assert cli(config, "check-config").returncode == 0
    cli(config, "tickets", "list")  # creates the tables
    holder = _hold_write_lock(tmp_path / "ticketd.db", 2.0)
    done = cli(config, "ingest", stdin=simple("ann@example.org", "Waited", "<wait@example.org>"))
    holder.join()
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["status"] == "processed"


def test_a_lock_that_outlasts_the_timeout_is_exit_75_with_one_short_line(tmp_path: Path,
                                                                         fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port, busy_timeout=0.5)
    cli(config, "tickets", "list")
    holder = _hold_write_lock(tmp_path / "ticketd.db", 6.0)
    done = cli(config, "ingest", stdin=simple("ann@example.org", "Locked out", "<locked@example.org>"))
    holder.join()
    assert done.returncode == 75
    assert "try again" in _one_short_line(done.stderr)
    again = cli(config, "ingest", stdin=simple("ann@example.org", "Locked out", "<locked@example.org>"))
    assert again.returncode == 0 and json.loads(again.stdout)["ticket"] == 1  # the MTA's retry: one ticket


async def test_a_lock_during_processing_leaves_the_row_received_for_the_daemon(tmp_path: Path,
                                                                               fresh_sink: SmtpSink) -> None:
    config = load_config(_config(tmp_path, fresh_sink.port, busy_timeout=0.3))
    raw = simple("bo@example.org", "Stored first", "<stored@example.org>")
    async with database(config.database_url, config.busy_timeout):
        row = await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), config.max_message_bytes)
        processor = Processor(config)
        prepared = await processor.prepare([row])  # parsed before the lock: only the commit meets it
        holder = await asyncio.to_thread(_hold_write_lock, tmp_path / "ticketd.db", 3.0)
        try:
            await processor.process([row], None, prepared)
        except TemporaryFailure as exc:
            assert backend.LOCKED in str(exc)
        else:
            raise AssertionError("a locked database must be a temporary failure")
        await asyncio.to_thread(holder.join)
        assert (await InboundMessage.get(id=row.id)).status == InboundStatus.RECEIVED
        assert await sweeper.sweep(processor, timedelta(0)) == 1
        stored = await InboundMessage.get(id=row.id)
        assert stored.status == InboundStatus.PROCESSED and stored.ticket_id is not None


def test_over_the_size_limit_only_the_header_is_kept_and_a_warning_logged(tmp_path: Path,
                                                                          fresh_sink: SmtpSink) -> None:
    log = tmp_path / "ticketd.log"
    config = _config(tmp_path, fresh_sink.port, max_bytes=4000, extra=f'\n[daemon]\nlog_target = "{log}"\n')
    raw = simple("big@example.org", "Huge", "<huge@example.org>", body=("y" * 76 + "\r\n") * 200)
    done = cli(config, "ingest", stdin=raw)
    assert done.returncode == 0, done.stderr.decode()
    outcome = json.loads(done.stdout)
    assert outcome["status"] == "quarantined" and "limits.max_message_bytes" in outcome["reason"]
    [held] = cli_json(config, "quarantine", "list", "--json")
    assert held["size"] == len(raw)
    assert "WARNING ticketd.intake: piped message <huge@example.org> quarantined: too large" in log.read_text()


async def test_reading_stdin_over_the_limit_keeps_the_header_block() -> None:
    import io

    raw = b"From: a@example.org\r\nSubject: big\r\n\r\n" + b"z" * 5000
    item = read_message(io.BytesIO(raw), 1000)
    assert item.too_large and item.size == len(raw) and item.raw == b"From: a@example.org\r\nSubject: big\r\n\r\n"
    small = read_message(io.BytesIO(raw[:900]), 1000)
    assert not small.too_large and small.raw == raw[:900]


def test_ingest_mailbox_chooses_the_address_and_an_unknown_one_is_retried(tmp_path: Path,
                                                                          fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port)
    done = cli(config, "ingest", "--mailbox", "pipe", stdin=simple("cy@example.org", "Sales", "<sales@example.org>"))
    assert done.returncode == 0, done.stderr.decode()
    [ticket] = cli_json(config, "tickets", "list", "--json")
    assert (ticket["mailbox"], ticket["queue"]) == ("pipe", "pipe")
    wrong = cli(config, "ingest", "--mailbox", "nosuch", stdin=simple("cy@example.org", "Lost?", "<x@example.org>"))
    assert wrong.returncode == 75
    line = _one_short_line(wrong.stderr)
    assert "nosuch" in line and "pipe" in line


def test_an_unusable_database_or_config_is_75_and_one_line(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port)
    config.write_text(config.read_text().replace(backend.url(tmp_path / "ticketd.db"), backend.unusable_url(tmp_path)))
    done = cli(config, "ingest", stdin=simple("di@example.org", "Nowhere", "<nowhere@example.org>"))
    assert done.returncode == 75
    _one_short_line(done.stderr)
    config.write_text("this is [not toml")
    broken = cli(config, "ingest", stdin=simple("di@example.org", "Nowhere", "<nowhere@example.org>"))
    assert broken.returncode == 75
    assert "configuration error" in _one_short_line(broken.stderr)


def test_a_pipe_only_site_runs_the_sender_alone(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port, pipe_only=True)
    checked = cli(config, "check-config")
    assert checked.returncode == 0, checked.stderr.decode()
    daemon = _daemon(config, tmp_path / "daemon.out")
    try:
        done = cli(config, "ingest", stdin=simple("eve@example.org", "Only pipes", "<only@example.org>"))
        assert done.returncode == 0, done.stderr.decode()
        assert fresh_sink.wait_for(1, timeout=30)  # the daemon finds the row written by ingest
    finally:
        assert _stop(daemon) == 0
    [ack] = fresh_sink.messages
    assert ack.rcpt_tos == ("eve@example.org",) and "[#1]" in str(ack.message["Subject"])


async def test_the_daemon_finishes_rows_that_ingest_stored_but_could_not_process(
        tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = load_config(_config(tmp_path, fresh_sink.port, pipe_only=True))
    raw = simple("fay@example.org", "Left behind", "<left@example.org>")
    async with database(config.database_url):
        await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), config.max_message_bytes)

    from tests.support.daemon import running, tickets

    # Wait on the sink, not on the database: in this process a second database() would close
    # the connection the running daemon shares with it.
    async with running(config.path):
        assert await asyncio.to_thread(fresh_sink.wait_for, 1, 20)  # well before the 30 s re-sweep
    assert [t["subject"] for t in await tickets(config.path)] == ["Left behind"]
    assert fresh_sink.messages[0].rcpt_tos == ("fay@example.org",)


async def test_ingest_in_process_reports_the_ticket(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = load_config(_config(tmp_path, fresh_sink.port))
    from ticketd.storage.intake import Incoming

    raw = simple("gil@example.org", "In process", "<inproc@example.org>")
    outcome = await ingest(config, Incoming(raw=raw, size=len(raw)), "pipe")
    assert outcome["status"] == "processed" and outcome["ticket"] == 1


def test_an_acknowledgement_withheld_by_the_hourly_limit_is_a_warning_and_an_event(
        tmp_path: Path, fresh_sink: SmtpSink) -> None:
    log = tmp_path / "ticketd.log"
    config = _config(tmp_path, fresh_sink.port, auto_replies_per_hour=1,
                     extra=f'\n[daemon]\nlog_target = "{log}"\n')
    for i in (1, 2):
        assert cli(config, "ingest", stdin=simple("hal@example.org", f"Ticket {i}", f"<limit{i}@example.org>")) \
            .returncode == 0
    shown = cli_json(config, "tickets", "show", "2", "--json")
    [withheld] = [e for e in shown["events"] if e["what"] == "withheld"]
    assert withheld["detail"]["recipient"] == "hal@example.org"
    assert "auto_replies_per_hour" in withheld["detail"]["reason"]
    assert not [e for e in cli_json(config, "tickets", "show", "1", "--json")["events"] if e["what"] == "withheld"]
    assert "WARNING ticketd.responders: no acknowledgement for ticket #2" in log.read_text()
    human = cli(config, "tickets", "show", "2").stdout.decode()
    assert "withheld" in human and "auto_replies_per_hour" in human


def test_a_mistyped_ingest_command_line_defers_instead_of_bouncing(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port)
    done = cli(config, "ingest", "--mailbx", "pipe", stdin=simple("ivy@example.org", "Typo", "<typo@example.org>"))
    assert done.returncode == 75
    assert "--mailbx" in _one_short_line(done.stderr)
    assert cli(config, "tickets", "--nosuch").returncode == 2  # elsewhere argparse's usual exit code


def test_rules_test_works_on_a_pipe_only_site(tmp_path: Path, fresh_sink: SmtpSink) -> None:
    config = _config(tmp_path, fresh_sink.port, pipe_only=True)
    sample = tmp_path / "mail.eml"
    sample.write_bytes(simple("joy@example.org", "Dry run", "<dry@example.org>"))
    done = cli(config, "rules", "test", str(sample), "--json")
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)[0]["mailbox"] == "pipe"
