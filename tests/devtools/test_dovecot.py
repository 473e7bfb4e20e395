"""The private Dovecot helper: delivery, inspection, restarts, UIDVALIDITY, IDLE, TLS, clean-up."""

from __future__ import annotations

import asyncio
import imaplib
import os
import time
from collections.abc import Callable
from pathlib import Path

import aioimaplib
import pytest

from devtools.dovecot import Dovecot, MailUser, client_tls_context


def make_raw(subject: str, body: str = "Hello.\n") -> bytes:
    return (f"From: alice@example.test\nTo: support@example.test\nSubject: {subject}\n"
            f"Message-ID: <{subject.replace(' ', '-')}@example.test>\n\n{body}").encode()


def crlf(raw: bytes) -> bytes:
    return raw.replace(b"\n", b"\r\n")


def test_delivered_message_is_visible_over_imap(dovecot: Dovecot, fresh_user: MailUser) -> None:
    raw = make_raw("first")

    dovecot.deliver(fresh_user.address, raw)

    assert dovecot.messages(fresh_user.address) == [(1, frozenset(), crlf(raw))]


def test_many_quick_deliveries_all_arrive_in_order(
    dovecot: Dovecot, fresh_user: MailUser,
) -> None:
    for n in range(50):
        dovecot.deliver(fresh_user.address, make_raw(f"n{n}"))

    messages = dovecot.messages(fresh_user.address)

    assert [uid for uid, _, _ in messages] == list(range(1, 51))
    assert {raw for _, _, raw in messages} == {crlf(make_raw(f"n{n}")) for n in range(50)}


def test_reading_messages_changes_no_flags(dovecot: Dovecot, fresh_user: MailUser) -> None:
    dovecot.deliver(fresh_user.address, make_raw("unread"))

    dovecot.messages(fresh_user.address)

    assert dovecot.messages(fresh_user.address)[0][1] == frozenset()


def test_flags_set_by_a_client_are_reported(dovecot: Dovecot, fresh_user: MailUser) -> None:
    dovecot.deliver(fresh_user.address, make_raw("flag me"))
    with dovecot.imap(fresh_user.address) as imap:
        imap.select("INBOX")
        imap.uid("STORE", "1", "+FLAGS", r"(\Seen \Flagged)")

    assert dovecot.messages(fresh_user.address)[0][1] == {r"\Seen", r"\Flagged"}


def test_delivery_into_a_new_folder_creates_it(dovecot: Dovecot, fresh_user: MailUser) -> None:
    dovecot.deliver(fresh_user.address, make_raw("filed"), folder="Processed")

    assert sorted(dovecot.folders(fresh_user.address)) == ["INBOX", "Processed"]
    assert len(dovecot.messages(fresh_user.address, "Processed")) == 1
    assert dovecot.messages(fresh_user.address) == []


def test_create_folder_makes_an_empty_folder(dovecot: Dovecot, fresh_user: MailUser) -> None:
    dovecot.create_folder(fresh_user.address, "Archive/2024")

    assert "Archive/2024" in dovecot.folders(fresh_user.address)
    assert dovecot.messages(fresh_user.address, "Archive/2024") == []


def test_a_client_can_move_into_a_created_folder(dovecot: Dovecot, fresh_user: MailUser) -> None:
    dovecot.create_folder(fresh_user.address, "Processed")
    dovecot.deliver(fresh_user.address, make_raw("move me"))
    with dovecot.imap(fresh_user.address) as imap:
        imap.select("INBOX")
        typ, _ = imap.uid("MOVE", "1", "Processed")

    assert typ == "OK"
    assert dovecot.messages(fresh_user.address) == []
    assert len(dovecot.messages(fresh_user.address, "Processed")) == 1


def test_fresh_users_do_not_share_mail(dovecot: Dovecot) -> None:
    first, second = dovecot.add_user(), dovecot.add_user()

    dovecot.deliver(first.address, make_raw("private"))

    assert len(dovecot.messages(first.address)) == 1
    assert dovecot.messages(second.address) == []


def test_the_default_user_exists(dovecot: Dovecot) -> None:
    assert dovecot.users["support@example.test"] == "secret"
    dovecot.messages("support@example.test")


def test_a_wrong_password_is_refused_at_once(dovecot: Dovecot, fresh_user: MailUser) -> None:
    started = time.monotonic()
    with imaplib.IMAP4(dovecot.host, dovecot.port) as imap:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login(fresh_user.address, "wrong")

    assert time.monotonic() - started < 1.0


def test_reset_uidvalidity_changes_it_and_keeps_messages(
    dovecot: Dovecot, fresh_user: MailUser,
) -> None:
    dovecot.deliver(fresh_user.address, make_raw("survivor"))
    before = dovecot.uidvalidity(fresh_user.address)

    dovecot.reset_uidvalidity(fresh_user.address)

    assert dovecot.uidvalidity(fresh_user.address) > before
    assert [raw for _, _, raw in dovecot.messages(fresh_user.address)] == [
        crlf(make_raw("survivor"))]


def test_reset_uidvalidity_drops_clients_that_have_the_folder_selected(
    dovecot: Dovecot, fresh_user: MailUser,
) -> None:
    imap = dovecot.imap(fresh_user.address)
    imap.select("INBOX")

    dovecot.reset_uidvalidity(fresh_user.address)

    with pytest.raises(imaplib.IMAP4.abort, match="inconsistent"):
        imap.noop()
    imap.shutdown()


async def test_idle_reports_a_delivered_message(dovecot: Dovecot, fresh_user: MailUser) -> None:
    client = aioimaplib.IMAP4(dovecot.host, dovecot.port, timeout=10)
    await client.wait_hello_from_server()
    await client.login(fresh_user.address, fresh_user.password)
    await client.select("INBOX")
    idle = await client.idle_start(timeout=10)
    started = time.monotonic()

    dovecot.deliver(fresh_user.address, make_raw("wake up"))
    push = await client.wait_server_push(timeout=5)

    assert b"1 EXISTS" in push
    assert time.monotonic() - started < 2.0  # inotify on new/, not the 30 s default poll
    client.idle_done()
    await asyncio.wait_for(idle, 5)
    await client.logout()


def test_restart_keeps_port_and_mail(dovecot_factory: Callable[..., Dovecot]) -> None:
    server = dovecot_factory()
    user = server.add_user()
    server.deliver(user.address, make_raw("before restart"))
    port, before = server.port, server.messages(user.address)

    server.restart()

    assert server.port == port
    assert server.messages(user.address) == before


def test_clients_are_disconnected_by_a_restart(dovecot_factory: Callable[..., Dovecot]) -> None:
    server = dovecot_factory()
    imap = server.imap("support@example.test")
    imap.select("INBOX")

    server.restart()

    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        imap.noop()
    imap.shutdown()


def test_two_instances_run_side_by_side(
    dovecot: Dovecot, dovecot_factory: Callable[..., Dovecot],
) -> None:
    other = dovecot_factory(users={"other@example.test": "pw"})

    other.deliver("other@example.test", make_raw("elsewhere"))

    assert other.port != dovecot.port
    assert len(other.messages("other@example.test")) == 1
    assert "other@example.test" not in dovecot.users


def test_stop_leaves_no_process_behind(dovecot_factory: Callable[..., Dovecot]) -> None:
    server = dovecot_factory()
    server.messages("support@example.test")  # spawns login and imap processes
    group = server._proc.pid if server._proc else 0

    server.stop()
    server.stop()

    assert not server.running
    assert _live_processes_in_group(group) == []


def test_tls_serves_imaps_and_starttls(dovecot_factory: Callable[..., Dovecot]) -> None:
    server = dovecot_factory(tls=True)
    context = client_tls_context(server)

    with imaplib.IMAP4_SSL(server.host, server.tls_port, ssl_context=context) as imap:
        assert imap.login("support@example.test", "secret")[0] == "OK"
    with imaplib.IMAP4(server.host, server.port) as imap:
        imap.starttls(context)
        assert imap.login("support@example.test", "secret")[0] == "OK"


def test_a_failed_start_raises_with_the_log(server_dir: Path) -> None:
    (server_dir / "run").mkdir()
    (server_dir / "run" / "master.pid").write_text(str(os.getpid()))  # "already running"
    server = Dovecot(server_dir)

    with pytest.raises(RuntimeError, match="already running"):
        server.start()
    assert not server.running


def test_a_private_root_works_unless_mail_goes_to_another_uid(tmp_path: Path) -> None:
    """pytest's tmp_path is mode 0700: fine for a normal user, unreachable for nobody."""
    tmp_path.chmod(0o700)
    server = Dovecot(tmp_path / "dovecot")
    if os.geteuid() == 0:
        with pytest.raises(PermissionError, match="world-searchable"):
            server.start()
    else:
        with server:
            assert server.messages("support@example.test") == []


def _live_processes_in_group(pgid: int) -> list[int]:
    """Pids of non-zombie processes in process group `pgid` (from /proc)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, process_group = fields[0], int(fields[2])
        if process_group == pgid and state != "Z":
            live.append(int(stat.parent.name))
    return live
