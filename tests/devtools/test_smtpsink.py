"""The SMTP sink: recording, failures on demand, outages, and the standalone process."""

from __future__ import annotations

import os
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import aiosmtplib
import pytest

from devtools._process import wait_until
from devtools.smtpsink import Mode, SmtpSink

REPO_ROOT = Path(__file__).resolve().parents[2]
RAW = b"From: desk@example.test\r\nTo: bob@example.test\r\nSubject: Ticket #1\r\n\r\nHello.\r\n"


def send(port: int, raw: bytes = RAW, to: tuple[str, ...] = ("bob@example.test",)) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
        client.sendmail("desk@example.test", list(to), raw)


def test_records_envelope_raw_and_parsed_message(fresh_sink: SmtpSink) -> None:
    send(fresh_sink.port, to=("bob@example.test", "carol@example.test"))

    [message] = fresh_sink.messages
    assert message.mail_from == "desk@example.test"
    assert message.rcpt_tos == ("bob@example.test", "carol@example.test")
    assert message.raw == RAW
    assert message.message["Subject"] == "Ticket #1"
    assert message.received_at.tzinfo is not None


def test_wait_for_counts_messages(fresh_sink: SmtpSink) -> None:
    assert fresh_sink.wait_for(1, timeout=0.05) is False

    send(fresh_sink.port)
    send(fresh_sink.port)

    assert fresh_sink.wait_for(2, timeout=5) is True


def test_clear_forgets_messages(fresh_sink: SmtpSink) -> None:
    send(fresh_sink.port)

    fresh_sink.clear()

    assert fresh_sink.messages == []


def test_tempfail_mode_answers_451_and_keeps_nothing(fresh_sink: SmtpSink) -> None:
    fresh_sink.mode = Mode.TEMPFAIL

    with pytest.raises(smtplib.SMTPDataError) as failure:
        send(fresh_sink.port)

    assert failure.value.smtp_code == 451
    assert fresh_sink.messages == []


def test_permfail_mode_answers_550(fresh_sink: SmtpSink) -> None:
    fresh_sink.mode = Mode.PERMFAIL

    with pytest.raises(smtplib.SMTPDataError) as failure:
        send(fresh_sink.port)

    assert failure.value.smtp_code == 550


def test_fail_next_fails_only_that_many_times(fresh_sink: SmtpSink) -> None:
    fresh_sink.fail_next(2, Mode.TEMPFAIL)

    codes = []
    for _ in range(3):
        try:
            send(fresh_sink.port)
            codes.append(250)
        except smtplib.SMTPDataError as error:
            codes.append(error.smtp_code)

    assert codes == [451, 451, 250]
    assert len(fresh_sink.messages) == 1


def test_down_refuses_connections_and_up_listens_on_the_same_port(fresh_sink: SmtpSink) -> None:
    port = fresh_sink.port

    fresh_sink.down()
    with pytest.raises(OSError):
        send(port)
    fresh_sink.up()
    send(port)

    assert fresh_sink.port == port
    assert len(fresh_sink.messages) == 1


def test_restart_keeps_the_port(fresh_sink: SmtpSink) -> None:
    port = fresh_sink.port

    fresh_sink.restart()
    send(port)

    assert len(fresh_sink.messages) == 1


async def test_asyncio_clients_can_send_from_the_test_loop(fresh_sink: SmtpSink) -> None:
    errors, _ = await aiosmtplib.send(
        RAW, sender="desk@example.test", recipients=["bob@example.test"],
        hostname=fresh_sink.host, port=fresh_sink.port, start_tls=False, timeout=5,
    )

    assert errors == {}
    assert fresh_sink.messages[0].raw == RAW


def test_a_private_sink_picks_its_own_port(smtp_sink: SmtpSink) -> None:
    with SmtpSink() as other:
        send(other.port)

        assert other.port != smtp_sink.port
        assert len(other.messages) == 1


def test_standalone_process_stores_and_prints_each_message(tmp_path: Path) -> None:
    maildir = tmp_path / "outbox"
    proc = subprocess.Popen(
        [sys.executable, "-m", "devtools.smtpsink", "--port", "0", "--maildir", str(maildir)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().rsplit(":", 1)[1])
        send(port)
        line = proc.stdout.readline()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0

    [stored] = list((maildir / "new").iterdir())
    assert stored.read_bytes() == RAW
    assert "desk@example.test -> bob@example.test 'Ticket #1'" in line
    assert str(stored) in line


def test_received_at_is_close_to_now(fresh_sink: SmtpSink) -> None:
    before = time.time()

    send(fresh_sink.port)

    assert before - 1 <= fresh_sink.messages[0].received_at.timestamp() <= time.time() + 1


def test_refuse_mail_answers_every_mail_from_until_cleared(fresh_sink: SmtpSink) -> None:
    fresh_sink.refuse_mail = "530 5.7.0 Must issue a STARTTLS command first"

    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(fresh_sink.port)
    fresh_sink.clear()
    send(fresh_sink.port)

    assert refused.value.smtp_code == 530
    assert len(fresh_sink.messages) == 1


def test_refuse_rcpt_refuses_only_that_recipient(fresh_sink: SmtpSink) -> None:
    fresh_sink.refuse_rcpt["nobody@example.test"] = "550 5.1.1 No such user"

    send(fresh_sink.port, to=("Nobody@example.test", "bob@example.test"))

    [message] = fresh_sink.messages
    assert message.rcpt_tos == ("bob@example.test",)


def test_commands_are_logged_and_a_quit_can_be_waited_for(fresh_sink: SmtpSink) -> None:
    assert fresh_sink.wait_for_command("QUIT", timeout=0.05) is False

    send(fresh_sink.port)

    assert fresh_sink.wait_for_command("QUIT", timeout=5) is True
    assert fresh_sink.commands == ["MAIL", "RCPT", "DATA", "QUIT"]


async def test_smtputf8_is_offered_by_default_and_can_be_turned_off(fresh_sink: SmtpSink) -> None:
    with SmtpSink(smtputf8=False) as plain:
        for sink, offered in ((fresh_sink, True), (plain, False)):
            client = aiosmtplib.SMTP(hostname=sink.host, port=sink.port, start_tls=False, timeout=5)
            await client.connect()
            await client.ehlo()
            assert client.supports_extension("smtputf8") is offered
            await client.quit()

    await aiosmtplib.send(RAW, sender="desk@example.test", recipients=["jörg@exämple.test"],
                          hostname=fresh_sink.host, port=fresh_sink.port, start_tls=False, timeout=5,
                          mail_options=["SMTPUTF8"])
    assert "SMTPUTF8" in fresh_sink.messages[0].mail_options
    assert fresh_sink.messages[0].rcpt_tos == ("jörg@exämple.test",)


@pytest.mark.parametrize(("replies", "heard"), [(0, b""), (2, b"220 hang.test ESMTP\r\n250 hang.test\r\n")])
def test_the_hang_server_answers_its_first_replies_then_falls_silent(replies: int, heard: bytes) -> None:
    import socket

    from devtools.hangserver import HangServer

    with HangServer(replies) as server, socket.create_connection((server.host, server.port), 5) as client:
        client.sendall(b"EHLO me\r\nMAIL FROM:<a@example.test>\r\n")
        client.settimeout(0.3)
        received = b""
        with pytest.raises(TimeoutError):
            while chunk := client.recv(1024):  # EOF (a closed connection) ends the loop and fails
                received += chunk
        assert received == heard
        assert server.connections == 1


def test_sessions_beyond_max_sessions_are_greeted_with_421_and_the_rest_go_on(fresh_sink: SmtpSink) -> None:
    fresh_sink.max_sessions, before = 1, fresh_sink.refused_sessions
    try:
        with smtplib.SMTP(fresh_sink.host, fresh_sink.port, timeout=5) as first:
            with pytest.raises(smtplib.SMTPConnectError) as refused:
                smtplib.SMTP(fresh_sink.host, fresh_sink.port, timeout=5)
            assert refused.value.smtp_code == 421 and fresh_sink.refused_sessions == before + 1
            first.sendmail("a@example.org", ["b@example.org"], b"Subject: one\r\n\r\nbody\r\n")
        assert wait_until(lambda: fresh_sink._sessions == 0, 5)  # the first one's end frees its place
        with smtplib.SMTP(fresh_sink.host, fresh_sink.port, timeout=5) as again:
            again.noop()
    finally:
        fresh_sink.max_sessions = None
    assert len(fresh_sink.messages) == 1
