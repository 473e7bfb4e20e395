"""daemon.sdnotify against a real datagram socket, as systemd's manager would hold it."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ticketd.daemon.sdnotify import Notifier
from tests.support.notify import NotifySocket


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory whose socket paths fit in sun_path (108 bytes), unlike pytest's tmp_path."""
    path = Path(tempfile.mkdtemp(prefix="sdn-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def manager(short_dir: Path) -> Iterator[NotifySocket]:
    listening = NotifySocket(short_dir / "notify")
    yield listening
    listening.close()


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "2000000"})
    assert notifier.address is None and notifier.watchdog_interval is None
    assert notifier.ready("up") is False


def test_ready_and_status_arrive_as_one_message_with_the_status_on_one_line(manager: NotifySocket) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": manager.address})
    assert notifier.ready("2 of 2 mailboxes\nconnected")
    index = manager.wait_for("READY")
    assert manager.messages(index)[0] == {"READY": "1", "STATUS": "2 of 2 mailboxes connected"}


def test_an_abstract_socket_name_is_used(short_dir: Path) -> None:
    name = f"@ticketd-test-{os.getpid()}-{short_dir.name}"
    listening = NotifySocket(name)
    try:
        assert Notifier.from_environ({"NOTIFY_SOCKET": name}).stopping("bye")
        index = listening.wait_for("STOPPING")
        assert listening.messages(index)[0]["STATUS"] == "bye"
    finally:
        listening.close()


def test_reloading_carries_the_monotonic_time_it_was_sent_at(manager: NotifySocket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    Notifier.from_environ({"NOTIFY_SOCKET": manager.address}).reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    sent = int(manager.messages(manager.wait_for("RELOADING"))[0]["MONOTONIC_USEC"])
    assert before <= sent <= after


def test_the_watchdog_is_half_its_timeout_and_only_for_the_process_it_names(manager: NotifySocket) -> None:
    env = {"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "3000000"}
    assert Notifier.from_environ(env).watchdog_interval == 1.5
    assert Notifier.from_environ(env | {"WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 1.5
    assert Notifier.from_environ(env | {"WATCHDOG_PID": str(os.getppid())}).watchdog_interval is None
    assert Notifier.from_environ(env | {"WATCHDOG_USEC": "0"}).watchdog_interval is None


def test_a_socket_that_is_not_a_unix_path_is_not_used(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "ticketd.systemd")
    assert Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:1234"}).address is None
    assert "not a Unix socket" in caplog.text


def test_a_manager_gone_away_costs_one_warning_and_no_exception(
        short_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "ticketd.systemd")
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(short_dir / "nobody-listens")})
    assert notifier.ready() is False
    assert notifier.status("still here") is False
    assert caplog.text.count("cannot notify systemd") == 1


async def test_keep_alive_pings_from_the_loop_and_a_blocked_loop_stops_the_pings(manager: NotifySocket) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": manager.address, "WATCHDOG_USEC": "200000"})
    done = asyncio.Event()
    pinging = asyncio.create_task(notifier.keep_alive(lambda: "fine", done))
    await asyncio.sleep(0.55)  # pings at 0, 0.1, ... 0.5
    start_block = time.monotonic()
    time.sleep(0.6)  # the loop itself is blocked: no task runs
    end_block = time.monotonic()
    await asyncio.sleep(0.25)
    done.set()
    await pinging
    during = manager.pings(start_block + 0.05, end_block)  # a datagram sent before the block may land just after
    after = manager.pings(end_block, time.monotonic())
    assert during == [] and len(after) >= 2
    assert len(manager.pings(0, start_block)) >= 5
    assert manager.messages()[0] == {"WATCHDOG": "1", "STATUS": "fine"}


async def test_keep_alive_without_a_watchdog_sends_only_the_status(manager: NotifySocket) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": manager.address})
    done = asyncio.Event()
    pinging = asyncio.create_task(notifier.keep_alive(lambda: "fine", done, every=0.05))
    await asyncio.sleep(0.2)
    done.set()
    await pinging
    heard = manager.messages()
    assert len(heard) >= 3 and all(m == {"STATUS": "fine"} for m in heard)
