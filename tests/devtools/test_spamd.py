"""The private spamd: it answers PING and flags GTUBE, offline."""

from __future__ import annotations

import socket

from devtools.spamd import Spamd

# The Generic Test for Unsolicited Bulk Email: every SpamAssassin scores it as spam.
GTUBE = (
    b"From: spammer@example.test\r\nTo: support@example.test\r\nSubject: Buy now\r\n"
    b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <gtube@example.test>\r\n\r\n"
    b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n"
)
HAM = (
    b"From: alice@example.test\r\nTo: support@example.test\r\nSubject: Printer on floor 2\r\n"
    b"Date: Mon, 01 Jan 2024 10:00:00 +0000\r\nMessage-ID: <ham@example.test>\r\n\r\n"
    b"Hello, the printer on the second floor jams again. Could someone look at it?\r\n"
    b"Thanks, Alice\r\n"
)


def check(spamd: Spamd, raw: bytes) -> bytes:
    """The spamd reply to a spamc CHECK (the 'Spam: True ; 1005.0 / 5.0' line)."""
    request = b"CHECK SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(raw) + raw
    with socket.create_connection((spamd.host, spamd.port), timeout=30) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: sock.recv(4096), b""))


def test_spamd_answers_ping(spamd: Spamd) -> None:
    assert spamd.running
    assert spamd.ping()


def test_gtube_is_spam(spamd: Spamd) -> None:
    assert b"Spam: True" in check(spamd, GTUBE)


def test_an_ordinary_message_is_not_spam(spamd: Spamd) -> None:
    assert b"Spam: False" in check(spamd, HAM)
