"""Another process holding SQLite's write lock, for tests of waiting and temporary failures."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path


def hold_write_lock(db: Path, seconds: float) -> threading.Thread:
    """Another process's long write transaction, as a second SQLite connection holds it."""
    started = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(db, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        started.set()
        time.sleep(seconds)
        connection.execute("ROLLBACK")
        connection.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert started.wait(10)
    return thread
