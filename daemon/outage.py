"""A server that is down is logged once per backoff step, not once per message that meets it.

spamd is asked for every message and the outbox tries each row when it is due: while the
server is down, a line per try would be hundreds a second (spamd at 300 messages/s) or one
per row (rows fall due at different times). So the first failure is logged, then one line
per step of a doubling interval with the number of tries that failed since the last line,
and one line when the server answers again.
"""

from __future__ import annotations

import time
from typing import Callable


class Outage:
    """Counts the failed tries of one server; says which of them get a line."""

    def __init__(self, first: float = 1.0, cap: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.first, self.cap, self.clock = first, cap, clock
        self.failures = 0  # tries failed since the server last answered
        self._unlogged = 0
        self._step = first
        self._next = 0.0  # no line before this time, unless the server answered in between

    def failed(self) -> int:
        """Count a failed try; the tries the line to write now stands for, or 0 for no line."""
        self.failures += 1
        self._unlogged += 1
        now = self.clock()
        if self.failures > 1 and now < self._next:
            return 0
        self._next, self._step = now + self._step, min(self.cap, self._step * 2)
        told, self._unlogged = self._unlogged, 0
        return told

    def answered(self) -> int:
        """The server works again: the number of tries the outage cost (0: there was none)."""
        failures, self.failures = self.failures, 0
        self._unlogged, self._step, self._next = 0, self.first, 0.0
        return failures
