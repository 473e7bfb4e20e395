"""The write turn: inbound transactions alone, outbox sends together, inbound never starved."""

from __future__ import annotations

import asyncio

from daemon.turn import WriteTurn


async def test_sends_share_the_turn() -> None:
    turn, inside = WriteTurn(), []

    async def send(i: int) -> None:
        async with turn.shared():
            inside.append(i)
            await asyncio.sleep(0.01)
            assert len(inside) == 3  # all three are in at once
            await asyncio.sleep(0.01)

    await asyncio.gather(*(send(i) for i in range(3)))


async def test_an_inbound_transaction_waits_for_sends_in_progress_and_excludes_new_ones() -> None:
    turn, log = WriteTurn(), []

    async def send(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async with turn.shared():
            log.append(f"{name} in")
            await asyncio.sleep(0.02)
            log.append(f"{name} out")

    async def inbound() -> None:
        await asyncio.sleep(0.005)
        async with turn.exclusive():
            log.append("tx in")
            await asyncio.sleep(0.02)
            log.append("tx out")

    await asyncio.gather(send("early", 0), inbound(), send("late", 0.01))
    assert log == ["early in", "early out", "tx in", "tx out", "late in", "late out"]
