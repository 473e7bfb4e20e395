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
