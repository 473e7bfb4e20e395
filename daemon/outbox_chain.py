"""One pass over claimed outbox rows, and the rows each lane has in flight behind the one before.

With rows waiting, a lane sends the next row's MAIL, RCPT and DATA in the same write as the
content of the row in hand (outbox_pipeline): the next row is then taken from the pass, its
envelope on the wire, and its content waits as ever until the row before is recorded "sent".
Such a row that is never begun (the pass ends first, or the content before it failed) goes
back to the front of the queue; its connection waits in DATA, which only closing ends: dropped.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import aiosmtplib

from ticketd.daemon import outbox_pipeline as pipeline
from ticketd.daemon.outbox_due import Claim, Due
from ticketd.daemon.outbox_envelope import EnvelopeError, plan_envelope
from ticketd.daemon.outbox_lanes import Lanes, Unreachable


@dataclass
class DeliveryReport:
    sent: int = 0
    # Rows still pending after the pass: deferred with backoff, or not reached before a deadline.
    deferred: int = 0
    failed: int = 0
    # Seconds between the server's "250" and our commit of "sent": the only window in which
    # a crash makes us send a message twice.
    windows: list[float] = field(default_factory=list)

    def add(self, other: "DeliveryReport") -> None:
        self.sent += other.sent
        self.deferred += other.deferred
        self.failed += other.failed
        self.windows += other.windows


@dataclass
class Pass:
    """One pass over claimed rows: what every lane takes from and reports to."""

    queue: deque[Due]
    trouble: list[Unreachable]
    report: DeliveryReport
    deadline: float | None
    claim: Claim

    def may_start(self) -> bool:
        """Another row may be begun: no session trouble, before the deadline, inside the claim."""
        return not self.trouble and (self.deadline is None or time.monotonic() < self.deadline) \
            and self.claim.may_start()


@dataclass
class _Chained:
    row: Due
    flight: pipeline.Flight


class Chains:
    """Per lane, the next row whose first flight went behind the content before it."""

    def __init__(self, lanes: Lanes, timeout: float) -> None:
        self.lanes = lanes
        self.timeout = timeout
        self._by_lane: dict[int, _Chained] = {}

    def next_row(self, lane: int, this: Pass) -> Due | None:
        """The lane's next row: the one in flight, else the queue's first; None when the lane is done."""
        if not ((lane in self._by_lane or this.queue) and this.may_start()):
            return None
        chained = self._by_lane.get(lane)
        return chained.row if chained else this.queue.popleft()

    def take_flight(self, lane: int) -> pipeline.Flight | None:
        """The first flight of the lane's row in flight, to land; None if it has none."""
        chained = self._by_lane.pop(lane, None)
        return chained.flight if chained else None

    def give_back(self, lane: int, queue: deque[Due]) -> None:
        """A row in flight but never begun goes back to the front of the queue; its lane is dropped."""
        chained = self._by_lane.pop(lane, None)
        if chained is not None:  # the server may wait for content after a 354: only closing ends that
            self.lanes.drop(lane)
            queue.appendleft(chained.row)

    async def send_content(self, lane: int, smtp: aiosmtplib.SMTP, row: Due, this: Pass) -> None:
        """The row's content, with the next row's first flight behind it where the pass may begin one."""
        following = _following(smtp, this)
        try:
            flight = await pipeline.send_content(smtp, row.raw_bytes, self.timeout,
                                                 following[1] if following else None)
        except BaseException:
            if following:  # its envelope may have gone, never its content: the connection is closed
                this.queue.appendleft(following[0])
            raise
        if following and flight:
            self._by_lane[lane] = _Chained(following[0], flight)


def _following(smtp: aiosmtplib.SMTP, this: Pass) -> tuple[Due, pipeline.Plan] | None:
    """The queue's next row and its first flight, taken from the queue, if the pass may begin it."""
    if not (this.queue and this.may_start()):
        return None
    row = this.queue[0]
    try:
        planned = pipeline.plan(plan_envelope(row.mail_from, list(row.recipients), smtp.supports_extension("smtputf8")))
    except EnvelopeError:  # that row's own trouble: it goes the plain way, and fails there
        return None
    this.queue.popleft()
    return row, planned
