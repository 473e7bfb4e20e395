"""The cached-timestamp log formatter writes what logging's own does."""

from __future__ import annotations

import logging

from daemon.logformat import Formatter

FMT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def record(created: float) -> logging.LogRecord:
    entry = logging.LogRecord("ticketd.smtp", logging.INFO, __file__, 1, "sent %s", ("<a@b>",), None)
    entry.created, entry.msecs = created, (created - int(created)) * 1000
    return entry


def test_lines_match_the_standard_formatter_within_a_second_and_across_seconds() -> None:
    ours, standard = Formatter(FMT), logging.Formatter(FMT)
    for created in (1_700_000_000.001, 1_700_000_000.999, 1_700_000_001.5, 1_700_000_000.25, 1_800_000_000.0):
        assert ours.format(record(created)) == standard.format(record(created))
