"""This process's name among the instances sharing one database: host, process id and a random part."""

from __future__ import annotations

import os
import secrets
import socket

_mine: tuple[int, str] | None = None  # (the pid it was made in, the id)


def instance_id() -> str:
    """``host:pid:random``, the same for the life of the process; what its claims are written with.

    The random part tells a restarted process from the one before it when the pid comes round
    again (a container restarts as pid 1 every time): a claim of the dead one is never taken for
    its own. A forked child gets an id of its own, not its parent's. The host name is cut short
    so the whole fits the column (storage.models: 200 characters).
    """
    global _mine
    pid = os.getpid()
    if _mine is None or _mine[0] != pid:
        _mine = (pid, f"{socket.gethostname()[:150]}:{pid}:{secrets.token_hex(4)}")
    return _mine[1]
