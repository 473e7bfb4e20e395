"""daemon/prepare.py parse_all: messages go to the parse pool a few per task, and come back in order."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any, Callable

from ticketd.daemon import prepare
from ticketd.daemon.parsers.model import ParsedMessage


def mail(n: int) -> bytes:
    return f"From: c{n}@example.org\r\nSubject: number {n}\r\nMessage-ID: <m{n}@example.org>\r\n\r\nhi\r\n".encode()


class Counting(Executor):
    """A real process pool that counts the tasks it is given."""

    def __init__(self) -> None:
        self.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
        self._max_workers = 1
        self.tasks = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.tasks += 1
        return self.pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.pool.shutdown(wait, cancel_futures=cancel_futures)


async def test_twenty_messages_are_three_tasks_and_keep_their_order_and_gaps() -> None:
    raws: list[bytes | None] = [mail(n) for n in range(20)]
    raws[5] = None  # not to be parsed (already processed)
    pool = Counting()
    try:
        parsed, broken = await prepare.parse_all(raws, pool)
    finally:
        pool.shutdown()
    assert not broken
    assert pool.tasks == -(-20 // prepare.PER_TASK)
    assert parsed[5] == ""
    subjects = [p.subject for p in parsed if isinstance(p, ParsedMessage)]
    assert subjects == [f"number {n}" for n in range(20) if n != 5]
