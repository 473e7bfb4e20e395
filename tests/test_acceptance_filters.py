"""Filters and rules end to end: spam, auto-replies, loops, bounces, rules, reload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

from devtools.dovecot import Dovecot, MailUser
from devtools.smtpsink import SmtpSink
from devtools.spamd import Spamd
from ticketd.daemon.config import load_config
from ticketd.daemon.pipeline import Processor
from ticketd.storage import intake
from ticketd.storage.db import database
from ticketd.storage.models import OutboundMessage, Suppression
from tests.support.daemon import PROJECT, cli, cli_json, run_once, ticket, tickets, write_config
from tests.support.mail import simple

EXAMPLES = PROJECT / "examples"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def with_filters(config: Path, text: str) -> Path:
    config.write_text(config.read_text() + "\n" + text)
    return config


async def test_gtube_is_quarantined_with_no_ticket_and_no_reply_while_ordinary_mail_is_answered(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink, spamd: Spamd) -> None:
    dovecot.deliver(fresh_user.address, simple("spammer@spam.example", "You won", "<gtube@spam.example>",
                                               body=GTUBE))
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Printer jammed", "<ok@example.org>",
                                               body="The printer in room 4 is jammed again, can you help?"))
    config = with_filters(write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)]),
                          f'[filters]\npipeline = ["bounce", "autoreply", "senders", "spam"]\n'
                          f'[filters.spam]\nport = {spamd.port}\n')
    assert await run_once(config) == 0

    [t] = await tickets(config)
    assert t["requester"] == "ann@example.org"
    assert [list(m.rcpt_tos) for m in fresh_sink.messages] == [["ann@example.org"]]
    [held] = cli_json(config, "quarantine", "list", "--json")
    assert held["message_id"] == "<gtube@spam.example>" and held["reason"].startswith("spam: spam score")
    shown = cli_json(config, "quarantine", "show", str(held["id"]), "--json")
    [spam] = [v for v in shown["verdicts"] if v[0] == "spam"]
    assert spam[1] == "quarantine" and "GTUBE" in spam[3]["rules"]
    assert all("\\Seen" in flags for _, flags, _ in dovecot.messages(fresh_user.address))


async def test_an_rfc3834_auto_reply_is_stored_but_never_acknowledged(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)])
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Invoice question", "<q@example.org>"))
    await run_once(config)
    ack_id = str(fresh_sink.messages[0].message["Message-ID"])
    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Out of office: Re: Invoice question [#1]",
                                               "<ooo1@example.org>", body="I am away until Monday.",
                                               extra=f"Auto-Submitted: auto-replied\nIn-Reply-To: {ack_id}"))
    dovecot.deliver(fresh_user.address, simple("bob@example.org", "Automatic reply: hello", "<ooo2@example.org>",
                                               extra="Auto-Submitted: auto-replied"))
    assert await run_once(config) == 0

    assert len(fresh_sink.messages) == 1  # only the first, human mail was answered
    first, second = sorted(await tickets(config), key=lambda t: t["number"])
    assert first["article_count"] == 2 and first["status"] == "new"
    assert "auto-reply" in second["tags"]


async def test_two_autoresponders_writing_for_an_hour_get_at_most_three_replies(tmp_path: Path) -> None:
    """A robot that answers every mail with a fresh one (no headers that give it away)."""
    config = load_config(write_config(tmp_path, 10143, 2525, [("support", "support@example.test")],
                                      auto_replies_per_hour=3))
    clock = [datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)]
    async with database(config.database_url):
        processor = Processor(config, clock=lambda: clock[0])
        for minute in range(60):
            raw = simple("robot@autoresponder.example", f"Re: your message {minute}", f"<robot-{minute}@x>")
            row = await intake.store_one(intake.Incoming(raw=raw, size=len(raw)), config.max_message_bytes)
            await processor.process([row], None)
            clock[0] += timedelta(minutes=1)
        replies = await OutboundMessage.filter(recipient="robot@autoresponder.example").count()
    assert replies == 3


async def test_a_dsn_for_our_acknowledgement_joins_its_ticket_and_silences_the_address(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    secret = tmp_path / "bounce.secret"
    secret.write_text("acceptance-bounce-secret-0123456789\n")
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)],
                          extra=f'bounce_secret_file = "{secret}"')
    dovecot.deliver(fresh_user.address, simple("gone@example.org", "Help", "<h1@example.org>"))
    await run_once(config)
    ack_id = str(fresh_sink.messages[0].message["Message-ID"])
    # The MTA sends the DSN to the acknowledgement's signed MAIL FROM: that is what lets it suppress.
    dovecot.deliver(fresh_user.address, dsn(fresh_sink.messages[0].mail_from, "gone@example.org", ack_id))
    assert await run_once(config) == 0

    [t] = await tickets(config)
    assert t["article_count"] == 2 and "bounced" in t["tags"]
    detail = await ticket(config, t["number"])
    assert detail["articles"][1]["internal"] is True
    assert len(fresh_sink.messages) == 1  # the bounce was not answered
    async with database(load_config(config).database_url):
        assert await Suppression.filter(address="gone@example.org").exists()
        assert (await OutboundMessage.get(message_id=ack_id)).status == "bounced"
    dovecot.deliver(fresh_user.address, simple("gone@example.org", "Another one", "<h2@example.org>"))
    await run_once(config)
    assert len(await tickets(config)) == 2 and len(fresh_sink.messages) == 1  # suppressed: no ack


def dsn(mailbox: str, recipient: str, original_id: str) -> bytes:
    boundary = "dsn-boundary-1"
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>", f"To: {mailbox}",
        "Subject: Undelivered Mail Returned to Sender", "Message-ID: <dsn-1@mx.example.org>",
        "Auto-Submitted: auto-replied", "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"', "",
        f"--{boundary}", "Content-Type: text/plain", "", "Your message could not be delivered.", "",
        f"--{boundary}", "Content-Type: message/delivery-status", "",
        "Reporting-MTA: dns; mx.example.org", "", f"Final-Recipient: rfc822; {recipient}",
        "Action: failed", "Status: 5.1.1", "Diagnostic-Code: smtp; 550 5.1.1 user unknown", "",
        f"--{boundary}", "Content-Type: text/rfc822-headers", "",
        f"From: {mailbox}", f"To: {recipient}", "Subject: Re: Help [#1]", f"Message-ID: {original_id}", "",
        f"--{boundary}--", ""]
    return "\r\n".join(lines).encode()


def samples() -> dict[str, dict[str, object]]:
    with (EXAMPLES / "samples" / "expected.toml").open("rb") as fh:
        return tomllib.load(fh)


def rules_config(tmp_path: Path, dovecot_port: int, smtp_port: int, users: list[tuple[str, str]]) -> Path:
    return with_filters(write_config(tmp_path, dovecot_port, smtp_port, users),
                        f'[rules]\nfile = "{EXAMPLES / "rules.toml"}"\n')


async def test_rules_test_and_the_running_daemon_agree_on_the_shipped_samples(
        tmp_path: Path, dovecot: Dovecot, fresh_sink: SmtpSink) -> None:
    support, tech = dovecot.add_user(), dovecot.add_user()
    config = rules_config(tmp_path, dovecot.port, fresh_sink.port, [("support", support.address),
                                                                    ("tech", tech.address)])
    expected = samples()
    dry: dict[str, dict[str, object]] = {}
    for name, want in expected.items():
        done = cli(config, "rules", "test", "--json", "--mailbox", str(want["mailbox"]),
                   str(EXAMPLES / "samples" / name))
        assert done.returncode == 0, done.stderr.decode()
        [result] = json.loads(done.stdout)
        dry[name] = result["classification"]
        assert result["classification"]["fired"] == want["fired"], name
        assert result["classification"]["priority"] == want["priority"], name
        text = cli(config, "rules", "test", "--mailbox", str(want["mailbox"]), str(EXAMPLES / "samples" / name))
        for rule in want["fired"]:  # type: ignore[attr-defined]
            assert rule in text.stdout.decode()
        user = tech if want["mailbox"] == "tech" else support
        dovecot.deliver(user.address, (EXAMPLES / "samples" / name).read_bytes())
    assert await run_once(config) == 0

    by_subject = {t["subject"]: t for t in await tickets(config)}
    assert len(by_subject) == len(expected)
    for name, want in expected.items():
        subject = next(line for line in (EXAMPLES / "samples" / name).read_text().splitlines()
                       if line.startswith("Subject: "))[len("Subject: "):]
        got = by_subject[subject]
        assert (got["priority"], got["queue"], got["fired_rules"]) == (
            dry[name]["priority"], dry[name]["queue"], dry[name]["fired"]), name


def test_a_reload_with_a_broken_rules_file_keeps_the_old_rules_working(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink) -> None:
    rules = tmp_path / "rules.toml"
    good = (EXAMPLES / "rules.toml").read_text().replace('tiers_csv = "vip.csv"',
                                                         f'tiers_csv = "{EXAMPLES / "vip.csv"}"')
    rules.write_text(good)
    config = with_filters(write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)]),
                          f'[rules]\nfile = "{rules}"\n')
    assert cli(config, "check-config").returncode == 0, cli(config, "check-config").stderr.decode()
    daemon = subprocess.Popen([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "run"],
                              env=dict(os.environ, PYTHONPATH=str(PROJECT)), cwd=PROJECT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        rules.write_text(rules.read_text() + '\n[[rule]]\nname = "bad"\nregex = "(unclosed"\npriority = "P1"\n')
        daemon.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        dovecot.deliver(fresh_user.address, (EXAMPLES / "samples" / "outage-p1.eml").read_bytes())
        assert fresh_sink.wait_for(1, timeout=30)
        rules.write_text(good.replace('queue = "Emergency"', 'queue = "Escalations"'))
        daemon.send_signal(signal.SIGHUP)  # a good file is taken at once
        time.sleep(0.5)
        raw = (EXAMPLES / "samples" / "outage-p1.eml").read_bytes()
        dovecot.deliver(fresh_user.address, raw.replace(b"Message-ID: <", b"Message-ID: <second-"))
        assert fresh_sink.wait_for(2, timeout=30)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert b"reload refused" in err and b"invalid regex" in err
    assert b"configuration reloaded" in err
    second, first = cli_json(config, "tickets", "list", "--json")  # newest first
    assert (first["priority"], first["queue"]) == ("P1", "Emergency")  # the old rules held
    assert (second["priority"], second["queue"]) == ("P1", "Escalations")


async def test_spamd_down_with_defer_leaves_the_mail_for_a_later_pass(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink, spamd: Spamd) -> None:
    from devtools._process import free_port

    dovecot.deliver(fresh_user.address, simple("ann@example.org", "Scanner offline", "<defer@example.org>"))
    base = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)]).read_text()
    config = tmp_path / "ticketd.toml"
    spam = '[filters]\npipeline = ["spam"]\n[filters.spam]\non_unreachable = "defer"\ntimeout = 2\nport = {}\n'
    config.write_text(base + spam.format(free_port("127.0.0.1")))  # nothing listens there

    assert await run_once(config) == 1  # not everything could be done
    assert await tickets(config) == []
    [(_, flags, _)] = dovecot.messages(fresh_user.address)
    assert "\\Seen" not in flags

    config.write_text(base + spam.format(spamd.port))
    assert await run_once(config) == 0
    assert len(await tickets(config)) == 1
    [(_, flags, _)] = dovecot.messages(fresh_user.address)
    assert "\\Seen" in flags
