"""This process's name among the instances sharing one database: who holds a claim, in rows and logs."""

from __future__ import annotations

import functools
import os
import secrets
import socket


@functools.cache
def instance_id() -> str:
    """``hostname:pid:random``, fixed for the life of the process.

    The random part tells apart two processes that had the same pid (a restart in a container,
    where the daemon is often pid 1), so a claim left by the dead one is never taken as ours.
    """
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
