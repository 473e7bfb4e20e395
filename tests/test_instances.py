"""Several `ticketd run` processes on one database, against the real Dovecot: on PostgreSQL each mailbox
is fetched by one instance and a SIGKILLed holder's mailboxes are taken over within the lease; on
SQLite a second instance is refused, while `status` and `ingest` work beside the first."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.dovecot import Dovecot, MailUser
from devtools.smtpsink import SmtpSink
from ticketd.daemon.config import load_config
from ticketd.storage import leases, queries
from ticketd.storage.db import database
from ticketd.storage.models import InboundMessage, MailboxLease
from tests.support.backend import POSTGRES, sqlite_only
from tests.support.daemon import PROJECT, cli, cli_json, write_config
from tests.support.mail import simple

LEASE = 2.0
INSTANCE = f"[instance]\nlease_seconds = {LEASE}\n[daemon]\nstop_grace = 3\n"


class Daemon:
    """``ticketd run`` as a real process, its log in a file of its own."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        env = dict(os.environ, PYTHONPATH=str(PROJECT))
        with log.open("wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "ticketd.daemon", "-c", str(config), "run"],
                                         env=env, cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=out)

    @property
    def said(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()


async def until(check, timeout: float = 20.0) -> float:  # type: ignore[no-untyped-def]
    """Seconds until the async ``check()`` is true; fails after ``timeout``."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout, "not within the time"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def holders() -> dict[str, str]:
    """Mailbox -> the instance id whose lease is live now."""
    run, clock = leases.tortoise_run()
    return {name: h.holder for name, h in (await leases.holdings(run, clock)).items() if h.seconds_left > 0}


def instance_of(daemon: Daemon) -> str:
    """The id ``daemon`` runs under (host:pid:random), from the database's instance rows."""
    return f":{daemon.proc.pid}:"


async def subjects() -> list[str]:
    return sorted(t["subject"] for t in await queries.ticket_list())


@pytest.mark.skipif(not POSTGRES, reason="PostgreSQL only: SQLite serves one instance (its test is below)")
async def test_each_mailbox_has_one_instance_and_a_killed_ones_are_taken_over_within_the_lease(
        tmp_path: Path, dovecot: Dovecot, fresh_sink: SmtpSink, daemons: list[Daemon]) -> None:
    support, sales = dovecot.add_user(), dovecot.add_user()
    config = write_config(tmp_path, dovecot.port, fresh_sink.port,
                          [("support", support.address), ("sales", sales.address)], extra=INSTANCE)
    expected = []
    for user in (support, sales):
        for n in range(3):
            subject = f"{user.address} before {n}"
            dovecot.deliver(user.address, simple(f"c{n}@example.org", subject, f"<b{n}.{user.address}>"))
            expected.append(subject)
    async with database(load_config(config).database_url):
        first = Daemon(config, tmp_path / "first.log")
        daemons.append(first)
        await until(lambda: _all_held_by(instance_of(first)))
        second = Daemon(config, tmp_path / "second.log")
        daemons.append(second)
        run, clock = leases.tortoise_run()

        async def second_running() -> bool:
            return any(instance_of(second) in i.id for i in await leases.instances(run, clock))
        await until(second_running)
        await until(lambda: _tickets(expected))
        # Two alive share the two mailboxes: the first hands one over, each mailbox has one instance.
        await until(lambda: _one_each(instance_of(first), instance_of(second)), timeout=3 * LEASE)
        assert "held by instance" in second.said and "lease taken by this instance" in second.said

        # A burst, and the holder killed in the midst of it: the other finishes what it left.
        for user in (support, sales):
            for n in range(8):
                subject = f"{user.address} burst {n}"
                dovecot.deliver(user.address, simple(f"d{n}@example.org", subject, f"<c{n}.{user.address}>"))
                expected.append(subject)
        await until(lambda: _any_stored(1))
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        killed = time.monotonic()
        ran_out = {name: h.expires_at for name, h in (await leases.holdings(run, clock)).items()
                   if instance_of(first) in h.holder}
        await until(lambda: _all_held_by(instance_of(second)), timeout=3 * LEASE)
        assert time.monotonic() - killed <= LEASE + 1.0  # within the lease (and this test's polling, a busy machine)
        assert ran_out  # the killed one held a mailbox, taken over by the database's clock at its lease's end
        for name, lease in (await leases.holdings(run, clock)).items():
            if name not in ran_out:
                continue
            taken = await MailboxLease.get(mailbox=name)
            assert 0 <= (taken.acquired_at - ran_out[name]).total_seconds() < 0.5, (name, lease)
        await until(lambda: _tickets(expected))
        assert await subjects() == sorted(expected)  # every message exactly one ticket: none lost, none twice
        assert "lease taken by this instance" in second.said
        status = cli_json(config, "status", "--json")
        assert {box["name"]: instance_of(second) in (box["holder"] or "") for box in status["mailboxes"]} == {
            "support": True, "sales": True}
        alive = {i["id"]: i["alive"] for i in status["instances"]}
        assert [alive[i] for i in alive if instance_of(second) in i] == [True]
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(30) == 0
        assert await holders() == {}  # released at the clean stop: a restart takes them at once


async def _one_each(one: str, other: str) -> bool:
    held = await holders()
    return set(held) == {"support", "sales"} and sorted(sum(m in h for h in held.values()) for m in (one, other)) == [1, 1]


async def _all_held_by(marker: str) -> bool:
    held = await holders()
    return set(held) == {"support", "sales"} and all(marker in holder for holder in held.values())


async def _tickets(expected: list[str]) -> bool:
    return len(await queries.ticket_list()) >= len(expected)


async def _any_stored(count: int) -> bool:
    """At least ``count`` of the burst stored (after the six before it)."""
    return await InboundMessage.all().count() >= 6 + count


@sqlite_only("the instance lock beside the SQLite file: PostgreSQL takes several instances (the test above)")
async def test_a_second_instance_on_one_sqlite_file_is_refused_and_a_killed_ones_lock_is_gone(
        tmp_path: Path, dovecot: Dovecot, fresh_user: MailUser, fresh_sink: SmtpSink, daemons: list[Daemon]) -> None:
    config = write_config(tmp_path, dovecot.port, fresh_sink.port, [("support", fresh_user.address)],
                          extra=INSTANCE)
    first = Daemon(config, tmp_path / "first.log")
    daemons.append(first)
    async with database(load_config(config).database_url):
        await until(lambda: _held_by_one(instance_of(first)))
        refused = cli(config, "run")
        said = refused.stderr.decode().strip()
        assert refused.returncode == 75, said
        assert said == (f"ticketd: not starting: the database {tmp_path / 'ticketd.db'} is in use by another "
                        f"`ticketd run` (pid {first.proc.pid} on {os.uname().nodename!r}, instance "
                        f"{_instance_id(tmp_path)!r}): SQLite serves one instance; stop that one first, or use "
                        "PostgreSQL for several")
        assert cli(config, "run", "--once").returncode == 75  # --once fetches too: refused as well

        piped = cli(config, "ingest", stdin=simple("ann@example.org", "Piped beside", "<p@example.org>"))
        assert piped.returncode == 0, piped.stderr.decode()  # only `run` takes the lock
        status = cli_json(config, "status", "--json")
        [box] = status["mailboxes"]
        assert box["holder"] == _instance_id(tmp_path) and 0 < box["lease_left_seconds"] <= LEASE
        [me] = status["instances"]
        assert (me["id"], me["pid"], me["alive"], me["mailboxes"]) == (box["holder"], first.proc.pid, True,
                                                                        ["support"])
        text = cli(config, "status").stdout.decode()
        assert f"fetched by instance {box['holder']}" in text and f"pid {first.proc.pid}" in text

        first.proc.send_signal(signal.SIGKILL)  # the kernel drops its flock: a new run starts at once
        first.proc.wait()
        again = Daemon(config, tmp_path / "again.log")
        daemons.append(again)
        await until(lambda: _held_by_one(instance_of(again)), timeout=3 * LEASE)  # its lease had time left
        dovecot.deliver(fresh_user.address, simple("bo@example.org", "After the kill", "<k@example.org>"))
        await until(lambda: _tickets(["Piped beside", "After the kill"]))
        again.proc.send_signal(signal.SIGTERM)
        assert again.proc.wait(30) == 0


async def _held_by_one(marker: str) -> bool:
    held = await holders()
    return marker in held.get("support", "")


def _instance_id(directory: Path) -> str:
    return str(json.loads((directory / "ticketd.db.lock").read_text())["id"])
