"""Start-up imports without work that a daemon never uses: Tortoise's scan of its own source.

Tortoise's model metaclass reads each model class's source (``inspect.getsource``) to turn
``#:`` comments into field descriptions for generated documentation. Our models opt out
(``_no_comments``), but Tortoise's own base ``Model`` cannot: creating it tokenizes the
whole of tortoise/models.py, 17 % of the instructions of importing the daemon (valgrind
callgrind: 1.76 G with it, 1.46 G without), and the pipe-per-message `ticketd ingest` pays it
for every message. Only classes of that module are affected, and only while a command starts:
they get no field descriptions, which nothing here reads.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from typing import Any, Iterator

_SKIPPED = "tortoise.models"


@contextmanager
def without_source_scans() -> Iterator[None]:
    real = inspect.getsource

    def getsource(obj: Any) -> str:
        if getattr(obj, "__module__", None) == _SKIPPED:
            raise OSError("source not read during start-up (daemon.quickimport)")  # Tortoise: no comments
        return real(obj)

    inspect.getsource = getsource
    try:
        yield
    finally:
        inspect.getsource = real
