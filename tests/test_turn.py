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


async def test_sends_waiting_when_a_transaction_ends_go_before_the_next_transaction() -> None:
    turn, log = WriteTurn(), []

    async def inbound(name: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async with turn.exclusive():
            log.append(name)
            await asyncio.sleep(0.02)

    async def send(delay: float) -> None:
        await asyncio.sleep(delay)
        async with turn.shared():
            log.append("send")
            await asyncio.sleep(0.005)

    # tx1 holds the turn; a send and tx2 queue behind it; the send must not wait for tx2 too.
    await asyncio.gather(inbound("tx1", 0), send(0.005), inbound("tx2", 0.01))
    assert log == ["tx1", "send", "tx2"]


async def test_a_cancelled_send_does_not_block_transactions_forever() -> None:
    turn = WriteTurn()
    async with turn.exclusive():
        waiting = asyncio.create_task(_send_once(turn))
        await asyncio.sleep(0.01)
        waiting.cancel()
    await asyncio.wait_for(_exclusive_once(turn), 1)


async def _send_once(turn: WriteTurn) -> None:
    async with turn.shared():
        pass


async def _exclusive_once(turn: WriteTurn) -> None:
    async with turn.exclusive():
        pass
