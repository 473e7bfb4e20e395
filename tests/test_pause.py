"""daemon.pause: a sleep that an event cuts short."""

from __future__ import annotations

import asyncio

from ticketd.daemon.pause import pause


async def test_the_time_runs_out_when_nothing_is_set() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await pause(asyncio.Event(), 0.05) is False
    assert loop.time() - began >= 0.05


async def test_an_event_set_meanwhile_ends_it_at_once() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, stop.set)
    began = loop.time()
    assert await pause(stop, 30) is True
    assert loop.time() - began < 5  # long before the 30 s


async def test_an_event_set_before_returns_without_waiting() -> None:
    stop = asyncio.Event()
    stop.set()
    assert await pause(stop, 30) is True
