"""The log line's format, with its timestamp worked out once a second instead of once a line.

At a thousand messages a second the daemon writes a few thousand lines (opened, sent...);
``logging.Formatter.formatTime`` calls localtime and strftime for each, a third of what a
line costs the event loop. The text is the same as the standard formatter's.
"""

from __future__ import annotations

import logging
import time


class Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(self.default_time_format, self.converter(second))
        return self.default_msec_format % (self._stamp, record.msecs)
