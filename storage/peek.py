"""Each folder's sync position, read with the standard library before the ORM has loaded.

`ticketd run` logs in and fetches its first batch while the daemon's modules still import
(daemon.start); where to start fetching is the one thing it needs from the database. Only a
read, only SQLite: anything unexpected means "not known", and the daemon starts as it would
without this.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote  # not urllib.request: that import alone is ~90 ms


def folder_positions(url: str) -> dict[str, tuple[int | None, int]] | None:
    """Mailbox name -> (UIDVALIDITY, last stored UID); {} for a database not yet created; None if unknown."""
    if not url.startswith("sqlite://"):
        return None  # PostgreSQL: the worker reads it through the ORM
    path = url[len("sqlite://"):]
    if path in ("", ":memory:"):
        return None
    if not Path(path).exists():
        return {}
    # "sqlite:////var/lib/x.db" leaves "//var/lib/x.db", which a URI would read as a host name.
    absolute = "/" + os.path.abspath(path).lstrip("/")
    try:
        # Read-only, and never waiting long: a writer in another process holds nothing a WAL
        # reader needs, and anything else (an old schema, no permission) is "not known".
        with closing(sqlite3.connect(f"file:{quote(absolute)}?mode=ro", uri=True, timeout=0.2)) as db:
            rows = db.execute("SELECT name, uidvalidity, last_uid FROM mailbox").fetchall()
    except sqlite3.Error:
        return None
    return {str(name): (uidvalidity, int(last_uid or 0)) for name, uidvalidity, last_uid in rows}
