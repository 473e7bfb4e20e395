"""`ticketd status`: the report made of what the database holds, and its rendering for a person."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from ticketd.daemon.config import load_config
from ticketd.daemon.status_report import render, report
from ticketd.storage.leases import Holding, InstanceRow
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
        "last_error": "", "last_error_at": None, "updated_at": "2026-12-01T08:59:40+00:00", "stale": False,
        "holder": None, "lease_expires": None, "lease_left_seconds": None}
    # A daemon that died left "connected" behind: ten minutes without a heartbeat prove nothing.
    assert (sales["connected"], sales["stale"], sales["last_error"]) == (False, True, "ImapError: connection lost")
    assert (new["connected"], new["stale"], new["updated_at"], new["backlog"]) == (False, True, None, 0)
    assert piped == {"name": "piped", "address": "p@example.test", "via": "mta", "backlog": 2}
    assert data["outbox"] == {"pending": 3, "oldest_pending_at": "2026-12-01T08:58:30+00:00",
                              "oldest_pending_age_seconds": 90.0, "next_try_at": "2026-12-01T09:00:00+00:00"}
    assert data["timers"] == {"due": 1, "next_due_at": "2026-12-01T08:59:00+00:00", "next_kind": "auto_close"}
    assert data["at"] == NOW.isoformat()
    assert data["instances"] == []


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


def test_each_mailbox_names_the_instance_that_holds_it_and_the_instances_say_whether_they_live(
        tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, 10143, 2525, [("support", "s@example.test"),
                                                              ("sales", "x@example.test"), ("new", "n@example.test")],
                                      extra='\n[instance]\nlease_seconds = 20\n'))
    one, dead = "mail1:4242:ab12cd", "mail2:77:\x1b[2Jff"
    held = {"support": Holding("support", one, NOW + timedelta(seconds=15), 15.0),
            "sales": Holding("sales", dead, NOW - timedelta(seconds=5), -5.0)}
    instances = [InstanceRow(one, "mail1", "mail1", 4242, NOW - timedelta(hours=2), NOW - timedelta(seconds=3), 3.0),
                 InstanceRow(dead, "mail2", "mail2", 77, NOW - timedelta(hours=3), NOW - timedelta(seconds=40), 40.0)]
    data = report(config, NOW, {}, {}, Outbox(0, None, None), Timers(0, None, None), STALE, held, instances)
    support, sales, new = data["mailboxes"]
    assert (support["holder"], support["lease_expires"], support["lease_left_seconds"]) == (
        one, "2026-12-01T09:00:15+00:00", 15.0)
    assert (sales["holder"], sales["lease_expires"], sales["lease_left_seconds"]) == (
        None, "2026-12-01T08:59:55+00:00", None)  # ran out: nobody fetches it until another takes it
    assert (new["holder"], new["lease_expires"]) == (None, None)
    assert data["instances"] == [
        {"id": one, "name": "mail1", "host": "mail1", "pid": 4242, "started_at": "2026-12-01T07:00:00+00:00",
         "last_seen": "2026-12-01T08:59:57+00:00", "alive": True, "mailboxes": ["support"]},
        {"id": dead, "name": "mail2", "host": "mail2", "pid": 77, "started_at": "2026-12-01T06:00:00+00:00",
         "last_seen": "2026-12-01T08:59:20+00:00", "alive": False, "mailboxes": []}]
    text = render(data)
    assert "mailbox support (s@example.test): never run by the daemon\n  fetched by instance mail1:4242:ab12cd, " \
           "its lease for 15.0 s more" in text
    assert "  fetched by no instance now (the last lease ran out or was released)" in text
    assert "  fetched by no instance yet" in text
    assert "instance mail1:4242:ab12cd (mail1, pid 4242 on mail1): alive; holds support" in text
    assert "instance mail2:77:\\x1b[2Jff (mail2, pid 77 on mail2): not seen since 40.0 s ago (dead, or cut off); " \
           "holds no mailbox" in text and "\x1b" not in text
