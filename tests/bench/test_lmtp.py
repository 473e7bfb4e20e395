"""Tests for bench/lmtp.py: the LMTP client half, against aiosmtpd's LMTP server on a Unix socket.

The daemon's own listener is tested where it lives; here only what the bench does: one session,
messages one after another, each 250 counted and each refusal kept with its reply.
"""

from __future__ import annotations

import tomllib
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import UnixSocketController
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from bench.child import Running
from bench.generate import generate
from bench.lmtp import push, wait_for_greeting
from bench.servers import USER, write_lmtp_config
from ticketd.daemon.config import ConfigError, load_config
from tests.support import backend


class _Handler:
    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if b"Subject: " in raw and len(self.envelopes) == 2:  # the third message: a temporary failure
            self.envelopes.append(("refused", [], b""))
            return "451 4.3.0 try again"
        self.envelopes.append((envelope.mail_from or "", list(envelope.rcpt_tos), bytes(raw)))
        return "250 2.0.0 stored"


class _LmtpController(UnixSocketController):
    def factory(self) -> LMTP:
        return LMTP(self.handler)


@pytest.fixture
def lmtp_server(server_dir: Path) -> Iterator[tuple[Path, _Handler]]:
    path, handler = server_dir / "lmtp.sock", _Handler()
    controller = _LmtpController(handler, unix_socket=path)
    controller.start()
    try:
        yield path, handler
    finally:
        controller.stop()


def test_push_sends_each_message_in_one_session_and_counts_the_250s(lmtp_server: tuple[Path, _Handler]) -> None:
    path, handler = lmtp_server
    messages = list(generate(5, seed=1, to=USER))
    pushed = push(path, messages)
    assert pushed.accepted == 4 and pushed.seconds > 0
    assert pushed.refused == ["message 3: 451 4.3.0 try again"]
    stored = [e for e in handler.envelopes if e[0] != "refused"]
    assert [(sender, rcpts) for sender, rcpts, _ in stored] == \
        [(m.sender, [USER]) for i, m in enumerate(messages) if i != 2]
    assert stored[0][2].rstrip(b"\r\n") == messages[0].raw.rstrip(b"\r\n")  # dot-stuffing undone, bytes intact


def test_the_greeting_is_timed_from_the_spawn(lmtp_server: tuple[Path, _Handler], tmp_path: Path) -> None:
    path, _ = lmtp_server
    running = Running(["sleep", "30"], tmp_path / "sleep.log", timeout=60)
    try:
        seconds = wait_for_greeting(path, running, timeout=5)
        assert seconds is not None and 0 <= seconds < 5
    finally:
        running.terminate()
        running.wait()


def test_no_greeting_from_a_process_that_died(tmp_path: Path) -> None:
    running = Running(["true"], tmp_path / "true.log", timeout=60)
    try:
        assert wait_for_greeting(tmp_path / "no.sock", running, timeout=5) is None
    finally:
        running.wait()


def test_the_lmtp_config_names_the_listener_and_the_address_instead_of_a_mailbox(tmp_path: Path) -> None:
    sink = types.SimpleNamespace(port=2525)
    path = write_lmtp_config(tmp_path / "ticketd.toml", backend.url(tmp_path / "ticketd.db"), sink,
                             str(tmp_path / "l.sock"))
    data = tomllib.loads(path.read_text())
    assert data["lmtp"] == {"listen": str(tmp_path / "l.sock")}
    assert data["addresses"] == [{"name": "support", "address": USER}]
    assert "mailboxes" not in data
    try:
        config = load_config(path)
    except ConfigError as exc:
        if "lmtp" in str(exc):
            pytest.skip(f"the daemon has no [lmtp] yet: {exc}")
        raise
    assert [a.address for a in config.addresses] == [USER]
