"""`ticketd status`: the report made of what the database holds, and its rendering for a person."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from ticketd.daemon.config import load_config
from ticketd.daemon.status_report import render, report
from ticketd.storage.status import MailboxRow, Outbox, Timers
from tests.support.daemon import write_config

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
STALE = 90.0


def row(name: str, connected: bool, written: datetime, error: str = "") -> MailboxRow:
    return MailboxRow(name, connected, NOW - timedelta(hours=1), NOW - timedelta(seconds=4), NOW - timedelta(minutes=2),
                      error, NOW - timedelta(minutes=1) if error else None, 40, 3, written)


def test_each_mailbox_says_whether_the_daemon_holds_it_connected_now(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, 10143, 2525, [("support", "s@example.test"),
                                                              ("sales", "x@example.test"), ("new", "n@example.test")],
                                      extra='\n[[addresses]]\nname = "piped"\naddress = "p@example.test"\n'))
    rows = {"support": row("support", True, NOW - timedelta(seconds=20)),
            "sales": row("sales", True, NOW - timedelta(minutes=10), "ImapError: connection lost")}
    data = report(config, NOW, rows, {"support": 5, "piped": 2}, Outbox(3, NOW - timedelta(seconds=90), NOW),
                  Timers(1, NOW - timedelta(minutes=1), "auto_close"), STALE)
    support, sales, new, piped = data["mailboxes"]
    assert support == {
        "name": "support", "address": "s@example.test", "via": "imap", "connected": True,
        "since": "2026-12-01T08:00:00+00:00", "last_check_at": "2026-12-01T08:59:56+00:00",
        "last_fetch_at": "2026-12-01T08:58:00+00:00", "backlog": 5, "server_messages": 40, "server_unfetched": 3,
        "last_error": "", "last_error_at": None, "updated_at": "2026-12-01T08:59:40+00:00", "stale": False}
    # A daemon that died left "connected" behind: ten minutes without a heartbeat prove nothing.
    assert (sales["connected"], sales["stale"], sales["last_error"]) == (False, True, "ImapError: connection lost")
    assert (new["connected"], new["stale"], new["updated_at"], new["backlog"]) == (False, True, None, 0)
    assert piped == {"name": "piped", "address": "p@example.test", "via": "mta", "backlog": 2}
    assert data["outbox"] == {"pending": 3, "oldest_pending_at": "2026-12-01T08:58:30+00:00",
                              "oldest_pending_age_seconds": 90.0, "next_try_at": "2026-12-01T09:00:00+00:00"}
    assert data["timers"] == {"due": 1, "next_due_at": "2026-12-01T08:59:00+00:00", "next_kind": "auto_close"}
    assert data["at"] == NOW.isoformat()


def test_the_rendering_names_each_state_and_escapes_what_a_server_said(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, 10143, 2525, [("support", "s@example.test"),
                                                              ("sales", "x@example.test")]))
    rows = {"support": row("support", False, NOW - timedelta(seconds=5), "ImapError: NO \x1b[31mdown\x1b[0m"),
            "sales": row("sales", True, NOW - timedelta(minutes=10))}
    text = render(report(config, NOW, rows, {}, Outbox(0, None, None), Timers(0, None, None), STALE))
    assert "mailbox support (s@example.test): not connected since 1.0 h ago" in text
    assert "last check 4.0 s ago, last fetch 2.0 min ago" in text
    assert "backlog 0 stored, not processed; 3 on the server not fetched yet (of 40)" in text
    assert "last error 1.0 min ago: ImapError: NO \\x1b[31mdown\\x1b[0m" in text and "\x1b" not in text
    assert "mailbox sales (x@example.test): no word from the daemon since 10.0 min ago" in text
    assert text.endswith("outbox: 0 pending\ntimers: 0 due now")
