"""Who this `ticketd run` is (host:pid:random), and SQLite's one-instance lock beside the database file.

The id names the process in the lease rows and in `ticketd status`: the host and pid say where
to look, the random part tells a restarted process from its predecessor of the same pid.

SQLite serves one instance: a second `ticketd run` on the same file would fetch every mailbox
twice over and share one writer with the first. So `run` holds an exclusive flock(2) on
``<database>.lock`` for its life. The kernel drops the lock when the process ends in any way,
kill -9 included, so a stale lock file never keeps a restart out; what the file holds (the
holder's id, pid and host) only serves the refusal's message. Other commands (`ingest`,
`status`...) never take it: they work beside the daemon as before.

Light on purpose: daemon.start imports it before the daemon's modules.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO


class InstanceLocked(Exception):
    """Another `ticketd run` has this SQLite database (or its lock file cannot be made); the text says which."""


@dataclass(frozen=True)
class Instance:
    id: str  # "mail1:4242:ab12cd"
    name: str  # [instance] name, or the host name
    host: str
    pid: int


_token = ""  # the random part, once per process: every identity() of one process is the same instance


def identity(name: str | None = None) -> Instance:
    global _token
    if not _token:
        _token = secrets.token_hex(3)
    host = socket.gethostname() or "localhost"
    pid = os.getpid()
    return Instance(f"{host}:{pid}:{_token}", name or host, host, pid)


def instance_id() -> str:
    """This process's id, as its leases and claims (outbox, webhooks) name it."""
    return identity().id


def lock_path(url: str) -> Path | None:
    """``<database file>.lock`` for a SQLite file; None for PostgreSQL or an in-memory database."""
    if not url.startswith("sqlite://"):
        return None
    path = url[len("sqlite://"):]
    if path in ("", ":memory:"):
        return None
    return Path(path + ".lock")


def lock_database(url: str, me: Instance) -> IO[str] | None:
    """Hold SQLite's instance lock until the returned file is closed (or the process ends).

    InstanceLocked when another process holds it; None where there is nothing to lock.
    """
    path = lock_path(url)
    if path is None:
        return None
    database = path.with_suffix("")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not truncated at open: the holder's details must stay readable to the one refused.
        handle = open(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640), "r+", encoding="utf-8")
    except OSError as exc:
        raise InstanceLocked(f"cannot create the instance lock {path} beside the database: {exc.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(handle)
        handle.close()
        raise InstanceLocked(f"the database {database} is in use by another `ticketd run` ({holder}): SQLite serves "
                             "one instance; stop that one first, or use PostgreSQL for several") from None
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"id": me.id, "pid": me.pid, "host": me.host, "name": me.name}) + "\n")
    handle.flush()
    return handle


def _holder(handle: IO[str]) -> str:
    """The holder as its lock file says, for the message ("pid 4242 on mail1, instance mail1:4242:ab12")."""
    try:
        handle.seek(0)
        found = json.loads(handle.read(4096) or "{}")
        return f"pid {int(found['pid'])} on {str(found['host'])[:100]!r}, instance {str(found['id'])[:200]!r}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid and host not known yet"
