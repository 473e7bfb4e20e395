"""`ticketd run` as systemd's Type=notify service sees it, on real Dovecot and SMTP.

No systemd runs here (and none need run in CI), so the test is the manager's end: it binds the
$NOTIFY_SOCKET datagram socket, sets $WATCHDOG_USEC (and $WATCHDOG_PID, as systemd does), starts
a real `ticketd run` process and checks what it hears and when.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools._process import free_port
from devtools.dovecot import Dovecot, MailUser
from devtools.hangserver import HangServer
from devtools.smtpsink import SmtpSink
from tests.support.daemon import PROJECT, write_config
from tests.support.notify import NotifySocket

WATCHDOG_USEC = 2_000_000  # pings every second
UNIT = PROJECT / "systemd" / "ticketd.service"


def unit_seconds(key: str) -> float:
    """A time of systemd/ticketd.service, in seconds ("40" or "30s")."""
    found = re.search(rf"^{key}=(\d+)s?$", UNIT.read_text(), re.MULTILINE)
    assert found is not None, key
    return float(found.group(1))


@pytest.fixture
def manager() -> Iterator[NotifySocket]:
    directory = Path(tempfile.mkdtemp(prefix="sdn-"))  # sun_path holds 108 bytes; tmp_path may be longer
    listening = NotifySocket(directory / "notify")
    yield listening
    listening.close()
    shutil.rmtree(directory, ignore_errors=True)


def start(config: Path, manager: NotifySocket, stderr: int | None = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    """``ticketd run`` with systemd's variables; the shell's $$ is the pid that exec keeps."""
    env = dict(os.environ, PYTHONPATH=str(PROJECT), NOTIFY_SOCKET=manager.address, WATCHDOG_USEC=str(WATCHDOG_USEC))
    command = 'WATCHDOG_PID=$$ exec "$0" -m ticketd.daemon -c "$1" run'
    return subprocess.Popen(["sh", "-c", command, sys.executable, str(config)], env=env, cwd=PROJECT,
                            stdout=subprocess.DEVNULL, stderr=stderr)


def stopped(daemon: subprocess.Popen[bytes]) -> None:
    if daemon.poll() is None:
        daemon.kill()
        daemon.wait()


def imap_block(name: str, address: str, port: int) -> str:
    return f"""
[[mailboxes]]
name = "{name}"
address = "{address}"
[mailboxes.imap]
host = "127.0.0.1"
port = {port}
security = "none"
username = "{address}"
password = "secret"
timeout = 2
"""


def test_ready_after_the_first_login_then_pings_reloads_and_a_stop_within_the_unit_timeout(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink, manager: NotifySocket) -> None:
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)])
    daemon = start(config, manager)
    try:
        ready = manager.wait_for("READY", timeout=60)
        assert manager.messages(ready)[0]["STATUS"] == "1 of 1 mailboxes connected; outbox: 0 sent, 0 failed"

        since = manager.heard[ready].at
        time.sleep(4.5)
        pings = manager.pings(since, since + 4.5)
        assert len(pings) >= 3, pings  # one a second
        assert max(b - a for a, b in zip(pings, pings[1:])) < WATCHDOG_USEC / 1e6  # what systemd requires

        daemon.send_signal(signal.SIGHUP)
        reloading = manager.wait_for("RELOADING", after=ready + 1)
        sent_at = int(manager.messages(reloading)[0]["MONOTONIC_USEC"])
        assert abs(sent_at / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)) < 5
        again = manager.wait_for("READY", after=reloading)
        assert manager.messages(again)[0]["STATUS"].startswith("1 of 1 mailboxes connected")

        config.write_text(config.read_text().replace('security = "none"', 'security = "sometimes"', 1))
        daemon.send_signal(signal.SIGHUP)  # a broken file: refused, and said so in the status
        refused = manager.wait_for("READY", after=manager.wait_for("RELOADING", after=again + 1))
        assert manager.messages(refused)[0]["STATUS"].startswith("reload refused")

        asked = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        stopping = manager.wait_for("STOPPING", after=refused + 1)
        assert manager.messages(stopping)[0]["STATUS"].startswith("stopping")
        assert daemon.wait(timeout=unit_seconds("TimeoutStopSec")) == 0
        assert time.monotonic() - asked < unit_seconds("TimeoutStopSec")
    finally:
        stopped(daemon)


def test_ready_waits_for_each_mailbox_first_try_but_not_for_servers_that_are_down(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink, manager: NotifySocket) -> None:
    # One server answers, one accepts and never speaks (the login times out after 2 s), one refuses.
    silent = HangServer()
    silent.start()
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)],
                          extra="[daemon]\nstop_grace = 2\n")
    config.write_text(config.read_text() + imap_block("silent", "silent@example.test", silent.port)
                      + imap_block("refused", "refused@example.test", free_port()))
    spawned = time.monotonic()
    daemon = start(config, manager)
    try:
        ready = manager.wait_for("READY", timeout=60)
        assert manager.heard[ready].at - spawned >= 2.0  # it waited for the silent one's timeout
        assert silent.connections >= 1
        assert manager.messages(ready)[0]["STATUS"].startswith("1 of 3 mailboxes connected")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=unit_seconds("TimeoutStopSec")) == 0
    finally:
        stopped(daemon)
        silent.stop()


def test_ready_only_once_the_lmtp_listener_takes_connections(
        tmp_path: Path, fresh_sink: SmtpSink, manager: NotifySocket) -> None:
    socket_path = Path(manager.address).with_name("lmtp.sock")
    config = write_config(tmp_path, 10143, fresh_sink.port, [("support", "support@example.test")])
    text = config.read_text()
    config.write_text(text[:text.index("[[mailboxes]]")] + '[[addresses]]\nname = "support"\n'
                      f'address = "support@example.test"\n[lmtp]\nlisten = "{socket_path}"\n')
    daemon = start(config, manager)
    try:
        ready = manager.wait_for("READY", timeout=60)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:  # at once: no retry, no wait
            client.settimeout(10)
            client.connect(str(socket_path))
            assert client.recv(512).startswith(b"220 ")
        assert manager.messages(ready)[0]["STATUS"] == f"LMTP on {socket_path}; outbox: 0 sent, 0 failed"
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=unit_seconds("TimeoutStopSec")) == 0
    finally:
        stopped(daemon)


class Journal:
    """The read end of the daemon's stderr, as journald holds it; it can stop reading, as a stuck journald does."""

    def __init__(self, size: int = 4096) -> None:
        self.read_end, self.write_end = os.pipe()
        fcntl.fcntl(self.write_end, fcntl.F_SETPIPE_SZ, size)  # a small pipe fills after a few dozen lines
        self.reading = threading.Event()
        self.reading.set()
        self.text = bytearray()
        self._thread = threading.Thread(target=self._read, name="journal", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._thread.join(timeout=10)  # EOF once the daemon and its parse workers are gone
        os.close(self.read_end)

    def _read(self) -> None:
        while self.reading.wait():
            chunk = os.read(self.read_end, 65536)
            if not chunk:
                return
            self.text += chunk


def test_a_loop_blocked_by_a_stuck_log_reader_stops_the_watchdog_pings(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink, manager: NotifySocket) -> None:
    """The event loop blocks for real: a log line is written to a full pipe nobody reads.

    That is how a daemon hangs when journald stops reading its stderr. Each SIGHUP logs a line
    from the loop; once the pipe is full, write(2) blocks there, no task runs, and the pings stop,
    though the process and its other threads live on. The watchdog must notice: no ping for
    longer than WATCHDOG_USEC. When the reader goes on, the loop does too.
    """
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)])
    journal = Journal()
    daemon = start(config, manager, stderr=journal.write_end)
    os.close(journal.write_end)
    try:
        seen = manager.wait_for("READY", timeout=60)
        journal.reading.clear()  # from its next read on, the journal is stuck
        for _ in range(200):  # a reload logs ~100 bytes: the 4 KiB pipe is full after ~40
            daemon.send_signal(signal.SIGHUP)
            seen = manager.wait_for("RELOADING", after=seen + 1)
            try:
                seen = manager.wait_for("READY", after=seen, timeout=5)
            except AssertionError:
                break  # RELOADING came, READY did not: the loop is stuck in the reload's log line
        else:
            raise AssertionError("the daemon never blocked on its full stderr")
        blocked = manager.heard[seen].at
        time.sleep(WATCHDOG_USEC / 1e6 * 1.5)
        assert manager.pings(blocked + 0.1, time.monotonic()) == []  # systemd would fire WatchdogSec now
        assert daemon.poll() is None and _state(daemon.pid) != "T"  # alive, and not merely stopped

        journal.reading.set()
        resumed = manager.wait_for("READY", after=seen, timeout=10)
        time.sleep(1.5)
        assert manager.pings(manager.heard[resumed].at, time.monotonic())
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=unit_seconds("TimeoutStopSec")) == 0
    finally:
        journal.reading.set()
        stopped(daemon)
        journal.close()
    assert b"configuration reloaded" in journal.text


def _state(pid: int) -> str:
    """The process state letter of /proc/PID/stat (S sleeping, T stopped, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
