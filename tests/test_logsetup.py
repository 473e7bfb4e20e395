"""Where the lines go (the journal, syslog, a file) and what never goes: passwords, at any level."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from logging.handlers import SysLogHandler
from pathlib import Path

import pytest

from ticketd.daemon.config import load_config
from ticketd.daemon.credentials import Secret
from ticketd.daemon.imap import ImapSession
from ticketd.daemon.logformat import build
from ticketd.daemon.logsetup import guard_libraries, lean_records, on_journal
from devtools.dovecot import Dovecot
from devtools.smtpsink import SmtpSink
from tests.support.daemon import PROJECT, write_config
from tests.support.mail import simple

# The part of each password that must never show, whatever a format does to quotes and backslashes.
IMAP_SECRET, SMTP_SECRET = "Zq9imapWr0ng", "Xk7smtpPw"


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound, never listening, held for the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def ticketd(config: Path, *args: str, stderr: Path, journal: bool = False) -> int:
    """``ticketd -c CONFIG ARGS`` as a real process, its stderr in a file (the journal's, if ``journal``)."""
    with stderr.open("w") as err:
        env = dict(os.environ, PYTHONPATH=str(PROJECT))
        env.pop("JOURNAL_STREAM", None)
        if journal:  # what systemd does: the stream's device and inode, of the stderr it gives us
            stat = os.fstat(err.fileno())
            env["JOURNAL_STREAM"] = f"{stat.st_dev}:{stat.st_ino}"
        return subprocess.run([sys.executable, "-m", "ticketd.daemon", "-c", str(config), *args], stderr=err,
                              env=env, cwd=PROJECT, timeout=120).returncode


# -- the journal ---------------------------------------------------------------------------------


def test_the_journal_is_recognised_by_the_device_and_inode_of_the_stream_itself(tmp_path: Path) -> None:
    with (tmp_path / "a").open("w") as ours, (tmp_path / "b").open("w") as other:
        stat = os.fstat(ours.fileno())
        environ = {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
        assert on_journal(environ, ours.fileno())
        assert not on_journal(environ, other.fileno())  # inherited by a child with another stderr
        assert not on_journal({}, ours.fileno())
        assert not on_journal({"JOURNAL_STREAM": ""}, ours.fileno())


def test_on_the_journal_lines_carry_their_priority_and_the_mailbox_and_no_timestamp(
        tmp_path: Path, closed_port: int, fresh_sink: SmtpSink) -> None:
    config = write_config(tmp_path, closed_port, fresh_sink.port, [("support", "support@example.test")],
                          extra='\n[daemon]\nlog_format = "keyvalue"\n')
    journal, plain = tmp_path / "journal", tmp_path / "plain"

    assert ticketd(config, "run", "--once", stderr=journal, journal=True) == 1
    assert ticketd(config, "run", "--once", stderr=plain) == 1

    [line] = [x for x in journal.read_text().splitlines() if "ticketd.intake" in x]
    assert line.startswith('<3>level=error logger=ticketd.intake mailbox=support msg="mailbox support: ')
    assert "Connect call failed" in line
    assert all(x.startswith(("<3>", "<4>", "<6>", "<7>")) for x in journal.read_text().splitlines())
    [line] = [x for x in plain.read_text().splitlines() if "ticketd.intake" in x]
    assert line.startswith("ts=20") and " level=error logger=ticketd.intake mailbox=support " in line


# -- syslog --------------------------------------------------------------------------------------


@pytest.fixture
def syslog_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket where /dev/log would be (a short path: AF_UNIX allows ~100 bytes)."""
    directory = tempfile.mkdtemp(prefix="ticketd-log-", dir="/tmp")
    path = os.path.join(directory, "log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        yield sock, path
    os.unlink(path)
    os.rmdir(directory)


@pytest.mark.parametrize(("level", "priority"), [(logging.DEBUG, 15), (logging.INFO, 14), (logging.WARNING, 12),
                                                 (logging.ERROR, 11), (logging.CRITICAL, 10)])
def test_syslog_gets_the_level_as_the_priority_and_ticketd_pid_as_the_tag(
        syslog_socket: tuple[socket.socket, str], level: int, priority: int) -> None:
    sock, path = syslog_socket
    handler = SysLogHandler(address=path)  # facility "user" (1): priority = 8 + severity
    handler.setFormatter(build("keyvalue", "syslog"))
    logger = logging.getLogger("ticketd.syslog-test")
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.DEBUG
    try:
        logger.log(level, "mailbox %s: down", "support")
    finally:
        logger.removeHandler(handler)
        handler.close()
    name = logging.getLevelName(level).lower()
    assert sock.recv(4096).decode() == (f'<{priority}>ticketd[{os.getpid()}]: level={name} '
                                        f'logger=ticketd.syslog-test msg="mailbox support: down"\x00')


# -- no secrets ----------------------------------------------------------------------------------


async def test_aioimaplib_at_debug_level_shows_no_password_even_one_it_would_quote(
        tmp_path: Path, dovecot: Dovecot, caplog: pytest.LogCaptureFixture) -> None:
    # aioimaplib masks the password as given, but sends it quoted: '"a\"b"' is not 'a"b'.
    password = f'pa"ss\\{IMAP_SECRET}'
    user = dovecot.add_user(password=password)
    imap = load_config(write_config(tmp_path, dovecot.port, 25, [("support", user.address)])).mailboxes[0].imap
    guard_libraries()
    session = ImapSession(replace(imap, password=Secret(password)))

    with caplog.at_level(logging.DEBUG, logger="aioimaplib.aioimaplib"):
        await session.open()
        await session.close()

    lines = [r.getMessage() for r in caplog.records if r.name == "aioimaplib.aioimaplib"]
    assert any("LOGIN ***" in line for line in lines), lines  # the command was logged, masked
    assert not [line for line in lines if IMAP_SECRET in line]


@pytest.mark.parametrize("log_format", ["text", "keyvalue", "json"])
async def test_a_verbose_daemon_with_a_wrong_password_logs_neither_password(
        tmp_path: Path, dovecot: Dovecot, fresh_sink: SmtpSink, log_format: str) -> None:
    good, bad = dovecot.add_user(), dovecot.add_user(password="right")
    dovecot.deliver(good.address, simple("ann@example.org", "Printer", "<p1@example.org>"))
    (tmp_path / "imap.pw").write_text(f'wr"ong\\{IMAP_SECRET}\n')
    (tmp_path / "smtp.pw").write_text(f"{SMTP_SECRET}\n")
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("good", good.address), ("bad", bad.address)],
                          extra=f'username = "support"\npassword_file = "{tmp_path}/smtp.pw"\n'
                                f'\n[daemon]\nlog_format = "{log_format}"\nlog_target = "{tmp_path}/ticketd.log"\n')
    text = config.read_text()
    config.write_text(text[:text.rindex('password = "secret"')] + f'password_file = "{tmp_path}/imap.pw"' +
                      text[text.rindex('password = "secret"') + len('password = "secret"'):])

    assert ticketd(config, "-v", "run", "--once", stderr=tmp_path / "stderr") == 1

    log = (tmp_path / "ticketd.log").read_text()
    assert "LOGIN failed" in log  # the bad mailbox was tried and said so
    assert "SMTP AUTH extension is not supported" in log  # the acknowledgement's session went as far as AUTH
    assert "DEBUG" in log or "level=debug" in log or '"level":"debug"' in log  # -v took effect
    assert IMAP_SECRET not in log and SMTP_SECRET not in log
    assert IMAP_SECRET not in (tmp_path / "stderr").read_text()



@pytest.mark.parametrize("name", ["text", "json", "keyvalue"])
@pytest.mark.parametrize("where", ["stream", "journal", "syslog"])
def test_lean_records_leave_every_format_whole(name: str, where: str) -> None:
    # Records without a caller or thread (lean_records) must still carry all each format prints.
    lean_records()
    logger = logging.getLogger("ticketd.smtp")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        logger.warning("sent %s", "<m@example.test>")
    finally:
        logger.removeHandler(handler)
    [record] = records
    assert record.funcName == "(unknown function)"  # no frame was looked up
    line = build(name, where).format(record)
    assert "sent <m@example.test>" in line and "WARNING" in line.upper()
    assert (f"ticketd[{os.getpid()}]" in line) == (where == "syslog")
