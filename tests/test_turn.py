"""The write turn: inbound transactions alone, outbox sends together, inbound never starved."""

from __future__ import annotations

import asyncio

from ticketd.daemon.turn import WriteTurn


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


async def test_a_lane_goes_send_after_send_in_its_slot_while_a_transaction_waits() -> None:
    turn, log = WriteTurn(hold_for=60), []

    async def inbound(name: str, delay: float, hold: float) -> None:
        await asyncio.sleep(delay)
        async with turn.exclusive():
            log.append(name)
            await asyncio.sleep(hold)

    async def lane() -> None:  # one SMTP connection with three rows to send
        await asyncio.sleep(0.01)
        for i in range(3):
            async with turn.shared():
                log.append(f"send {i}")
                await asyncio.sleep(0.001)

    # tx1 held the turn for 0.3 s, so the sends waiting when it ends get a slot as long:
    # plenty for three, and tx2 (waiting all along) comes after them, not after the first.
    await asyncio.gather(inbound("tx1", 0, 0.3), lane(), inbound("tx2", 0.02, 0))
    assert log == ["tx1", "send 0", "send 1", "send 2", "tx2"]


async def test_a_stream_of_sends_does_not_starve_a_waiting_transaction() -> None:
    turn, log, stop = WriteTurn(min_slot=0.01, hold_for=60), [], asyncio.Event()

    async def lane() -> None:
        while not stop.is_set():
            async with turn.shared():
                log.append("send")
                await asyncio.sleep(0.002)

    async def inbound() -> None:
        for name in ("tx1", "tx2"):
            await asyncio.sleep(0.01)
            async with turn.exclusive():
                log.append(name)
        stop.set()

    await asyncio.wait_for(asyncio.gather(lane(), lane(), inbound()), 10)
    assert log.index("tx1") < log.index("tx2") and "send" in log[log.index("tx1"):log.index("tx2")]


async def test_a_send_in_flight_longer_than_hold_for_stops_holding_transactions() -> None:
    turn, log = WriteTurn(hold_for=0.02), []

    async def hung_send() -> None:  # a server that takes its time over DATA
        async with turn.shared():
            log.append("send in")
            await asyncio.sleep(0.5)
            log.append("send out")

    async def inbound() -> None:
        await asyncio.sleep(0.005)
        async with turn.exclusive():
            log.append("tx")

    await asyncio.gather(hung_send(), inbound())
    assert log == ["send in", "tx", "send out"]


async def test_a_cancelled_waiting_transaction_lets_the_sends_it_held_back_go() -> None:
    turn = WriteTurn(hold_for=60)
    async with turn.shared():  # a send in flight: the transaction must wait
        waiting = asyncio.create_task(_exclusive_once(turn))
        await asyncio.sleep(0.01)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        await asyncio.wait_for(_send_once(turn), 1)  # no longer held back by a writer that left


async def test_an_accepted_send_holds_transactions_until_it_leaves_however_long() -> None:
    turn, log = WriteTurn(hold_for=0.01), []

    async def send() -> None:
        async with turn.shared() as sending:
            sending.accepted()  # the 250 is in: only our commit of "sent" is left
            log.append("send in")
            await asyncio.sleep(0.1)
            log.append("send out")

    async def inbound() -> None:
        await asyncio.sleep(0.005)
        async with turn.exclusive():
            log.append("tx")

    await asyncio.gather(send(), inbound())
    assert log == ["send in", "send out", "tx"]


async def test_the_sends_share_grows_while_transactions_cut_off_lanes_with_rows_and_shrinks_when_idle() -> None:
    turn = WriteTurn(max_share=4)

    async def busy_lane(entered: asyncio.Event) -> None:
        async with turn.lane():  # rows in hand, between sends
            entered.set()
            await asyncio.sleep(0.05)

    for expected in (2, 4, 4):  # each transaction starts while a lane still has rows: doubled, capped
        entered = asyncio.Event()
        lane = asyncio.create_task(busy_lane(entered))
        await entered.wait()
        await _exclusive_once(turn)
        assert turn.share == expected
        await lane
    for expected in (2, 1, 1):  # no lane has anything to send: halved back to 1
        await _exclusive_once(turn)
        assert turn.share == expected
