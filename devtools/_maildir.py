"""Maildir delivery (cr.yp.to/proto/maildir.html): write in tmp/, rename into new/."""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from pathlib import Path

_counter = itertools.count()
_counter_lock = threading.Lock()


def make_maildir(path: Path, owner: tuple[int, int] | None = None) -> None:
    """Create `path` with cur/, new/, tmp/ (mode 0700), chowned to `owner` if given."""
    for directory in (path, path / "cur", path / "new", path / "tmp"):
        if directory.is_dir():
            continue
        directory.mkdir(mode=0o700)
        if owner is not None:
            os.chown(directory, *owner)


def unique_name() -> str:
    """time.M<usec>P<pid>Q<n>.<host>: unique per process, counter and clock."""
    with _counter_lock:
        n = next(_counter)
    now = time.time()
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
    return f"{int(now)}.M{int(now % 1 * 1_000_000)}P{os.getpid()}Q{n}.{host}"


def deliver(path: Path, raw: bytes, owner: tuple[int, int] | None = None) -> Path:
    """Store `raw` as a new message of the Maildir at `path`; return the file's path.

    The rename is atomic, so a reader (Dovecot) never sees half a message.
    """
    name = unique_name()
    tmp = path / "tmp" / name
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(raw)
    if owner is not None:
        os.chown(tmp, *owner)
    final = path / "new" / name
    tmp.rename(final)
    return final
