"""devtools.startup: the relay that timestamps a client's IMAP commands."""

from __future__ import annotations

import imaplib
import os

from devtools.dovecot import Dovecot, MailUser
from devtools.startup import Relay, cpu_seconds


def test_the_relay_passes_a_session_through_and_notes_each_command(dovecot: Dovecot, fresh_user: MailUser) -> None:
    relay = Relay((dovecot.host, dovecot.port))
    relay.pid = os.getpid()
    relay.start()
    try:
        imap = imaplib.IMAP4("127.0.0.1", relay.port, timeout=10)
        imap.login(fresh_user.address, fresh_user.password)
        assert imap.select("INBOX")[0] == "OK"
        assert imap.uid("SEARCH", "ALL")[0] == "OK"
        imap.logout()
    finally:
        relay.close()
    commands = [command for _, command, _ in relay.commands]
    assert commands[-4:] == ["LOGIN", "SELECT", "UID SEARCH", "LOGOUT"]
    times = [at for at, _, _ in relay.commands]
    assert times == sorted(times)
    assert all(0 <= cpu <= cpu_seconds(os.getpid()) for _, _, cpu in relay.commands)
