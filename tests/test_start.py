"""`ticketd run` begins IMAP before the daemon has imported (daemon.start), on a real Dovecot.

What it fetches early must serve the first fetch only, be right whatever the database says
afterwards, and fail as the worker's own connection would have.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from devtools.dovecot import Dovecot, MailUser
from ticketd.daemon.config import ImapConfig, load_config
from ticketd.daemon.imap import ImapSession
from ticketd.storage import intake
from ticketd.storage.db import database
from ticketd.storage.peek import folder_positions
from tests.support.daemon import cli, write_config
from tests.support.mail import simple

MAX = 1 << 20


def imap(tmp_path: Path, dovecot: Dovecot, user: MailUser, port: int | None = None) -> ImapConfig:
    config = write_config(tmp_path, port or dovecot.port, 2525, [("support", user.address)])
    return load_config(config).mailboxes[0].imap


def deliver(dovecot: Dovecot, user: MailUser, count: int, first: int = 0) -> None:
    for n in range(first, first + count):
        dovecot.deliver(user.address, simple("c@example.org", f"early {n}", f"<early-{n}@example.org>"))


async def expunge_all(config: ImapConfig) -> None:
    """Another client removes every message: what a session returns afterwards it fetched before."""
    other = ImapSession(config)
    await other.open()
    try:
        uids = await other.uids_after(0)
        if uids:
            await other.delete(uids)
    finally:
        await other.close()


# --- storage.peek: where to start, read before the ORM ----------------------------------------

def test_positions_are_unknown_off_sqlite_and_empty_before_the_database_exists(tmp_path: Path) -> None:
    assert folder_positions("postgresql://u@127.0.0.1/db") is None
    assert folder_positions("sqlite://:memory:") is None
    assert folder_positions(f"sqlite:///{tmp_path}/none-yet.db") == {}


def test_positions_are_what_the_orm_wrote(tmp_path: Path) -> None:
    async def write() -> None:
        async with database(url):
            state = await intake.mailbox_state("support")
            state.uidvalidity, state.last_uid = 1234, 56
            await state.save()
            await intake.mailbox_state("other")

    import asyncio

    url = f"sqlite:///{tmp_path / 'ticketd.db'}"  # "sqlite:////abs/path": the usual spelling
    asyncio.run(write())
    assert folder_positions(url) == {"support": (1234, 56), "other": (None, 0)}
    assert folder_positions("sqlite://" + str(tmp_path / "ticketd.db")) == {"support": (1234, 56), "other": (None, 0)}


def test_positions_of_a_file_that_is_no_ticketd_database_are_unknown(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database at all" * 100)
    assert folder_positions(f"sqlite:///{garbage}") is None
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE unrelated (x)").connection.close()
    assert folder_positions(f"sqlite:///{other}") is None


# --- ImapSession.begin ----------------------------------------------------------------------------

async def test_begin_fetches_the_first_batch_which_serves_the_first_fetch_only(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser) -> None:
    deliver(dovecot, fresh_user, 3)
    config = imap(tmp_path, dovecot, fresh_user)
    session = ImapSession(config)
    session.begin((None, 0), batch=2, max_bytes=MAX)
    try:
        await session.open()
        await expunge_all(config)  # from now on only what was fetched early can be returned
        first = await session.fetch([1, 2, 3], MAX)
        assert [m.uid for m in first] == [1, 2]  # 3 was not in the early batch, and is gone now
        assert b"Subject: early 0" in first[0].raw and b"Subject: early 1" in first[1].raw
        assert await session.fetch([1, 2], MAX) == []  # the early batch is not kept beyond that
    finally:
        await session.close()


async def test_begin_fetches_after_the_known_uid_and_the_rest_is_fetched_then(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser) -> None:
    deliver(dovecot, fresh_user, 4)
    config = imap(tmp_path, dovecot, fresh_user)
    uidvalidity = dovecot.uidvalidity(fresh_user.address)
    session = ImapSession(config)
    session.begin((uidvalidity, 2), batch=1, max_bytes=MAX)  # the database holds 1 and 2
    try:
        await session.open()
        fetched = await session.fetch([3, 4], MAX)  # 3 from the early batch, 4 from the server now
        assert [m.uid for m in fetched] == [3, 4]
        assert b"early 2" in fetched[0].raw and b"early 3" in fetched[1].raw
    finally:
        await session.close()


async def test_another_uidvalidity_begins_from_the_first_uid(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser) -> None:
    # The worker resets the folder to UID 0 when UIDVALIDITY changed (fetcher.sync): so does begin().
    deliver(dovecot, fresh_user, 2)
    config = imap(tmp_path, dovecot, fresh_user)
    session = ImapSession(config)
    session.begin((dovecot.uidvalidity(fresh_user.address) + 1, 2), batch=10, max_bytes=MAX)
    try:
        await session.open()
        await expunge_all(config)
        assert [m.uid for m in await session.fetch([1, 2], MAX)] == [1, 2]
    finally:
        await session.close()


async def test_an_early_batch_fetched_for_another_size_limit_is_not_used(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser) -> None:
    deliver(dovecot, fresh_user, 1)
    config = imap(tmp_path, dovecot, fresh_user)
    session = ImapSession(config)
    session.begin((None, 0), batch=10, max_bytes=10)  # headers only: not what a fetch of MAX wants
    try:
        await session.open()
        fetched = await session.fetch([1], MAX)
        assert b"Hello." in fetched[0].raw  # the whole message, fetched again
    finally:
        await session.close()


async def test_a_failed_begin_is_the_failure_of_open(tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser) -> None:
    from devtools._process import free_port

    session = ImapSession(imap(tmp_path, dovecot, fresh_user, port=free_port("127.0.0.1")))
    session.begin((None, 0), batch=10, max_bytes=MAX)
    try:
        await session.open()
    except OSError:
        pass
    else:
        raise AssertionError("open() of a session begun against a closed port succeeded")
    await session.close()


async def test_a_session_begun_and_closed_unopened_leaves_nothing_running(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser) -> None:
    deliver(dovecot, fresh_user, 1)
    session = ImapSession(imap(tmp_path, dovecot, fresh_user))
    session.begin((None, 0), batch=10, max_bytes=MAX)
    early = session._early
    await session.close()
    assert early is not None and early.done() and session.client is None


# --- the command ----------------------------------------------------------------------------------

def test_run_once_fetches_early_and_makes_every_message_a_ticket(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: object) -> None:
    deliver(dovecot, fresh_user, 3)
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)])  # type: ignore[attr-defined]
    assert cli(config, "run", "--once").returncode == 0
    deliver(dovecot, fresh_user, 2, first=3)  # a second start: the database now says where to begin
    done = cli(config, "run", "--once")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    listed = cli(config, "tickets", "list", "--json")
    assert listed.stdout.count(b'"number"') == 5
    assert all("\\Seen" in flags for _, flags, _ in dovecot.messages(fresh_user.address))


def test_run_reports_a_broken_template_as_a_configuration_error(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser) -> None:
    template = tmp_path / "bad.j2"
    template.write_text("Hello {{ ticket.number ")
    config = write_config(tmp_path, dovecot.port, 2525, [("support", fresh_user.address)],
                          extra=f'\n[acknowledgement]\ntemplate = "{template}"\n')
    done = cli(config, "run", "--once")
    assert done.returncode == 78, done.stderr.decode()
    assert b"configuration error" in done.stderr and b"acknowledgement.template" in done.stderr
