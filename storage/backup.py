"""`ticketd db backup FILE`: a consistent copy of a live SQLite database (the online backup API).

The copy is made in one step of sqlite3's backup, i.e. inside one read transaction: a snapshot
of one moment, while the daemon goes on writing (WAL mode: readers do not block writers). It is
written to FILE.tmp (mode 0600: it holds every message), turned into a self-contained file
(journal_mode DELETE, no -wal beside it), checked with PRAGMA integrity_check, and only then
renamed over FILE: a failed or interrupted backup never replaces a good one.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path
from urllib.parse import quote


class BackupError(Exception):
    """The backup was not made; the text says why."""


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:// URL; None for any other database."""
    if not url.startswith("sqlite://"):
        return None
    path = url[len("sqlite://"):]
    return Path(path) if path not in ("", ":memory:") else None


def backup(source: Path, target: Path, busy_timeout: float = 30.0) -> int:
    """Copy ``source`` to ``target``; the size of the copy in bytes."""
    if not source.is_file():
        raise BackupError(f"no database at {source}")
    if target.is_dir():
        raise BackupError(f"{target} is a directory: name the backup file")
    if target.exists() and target.samefile(source):
        raise BackupError(f"{target} is the database itself")
    tmp = target.with_name(target.name + ".tmp")
    try:
        _fresh(tmp)
        _copy(source, tmp, busy_timeout)
        _durable_rename(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}-journal").unlink(missing_ok=True)
        raise
    return target.stat().st_size


def _fresh(tmp: Path) -> None:
    """An empty FILE.tmp of our own, mode 0600 (a stale one from an interrupted run is replaced)."""
    tmp.unlink(missing_ok=True)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except OSError as exc:
        raise BackupError(f"cannot create {tmp}: {exc.strerror}") from None


def _copy(source: Path, tmp: Path, busy_timeout: float) -> None:
    # mode=rw: a missing file is an error, not a new empty database.
    uri = "file:" + quote("/" + os.path.abspath(source).lstrip("/")) + "?mode=rw"
    try:
        with closing(sqlite3.connect(uri, uri=True, timeout=busy_timeout)) as src, \
                closing(sqlite3.connect(tmp)) as dst:
            src.backup(dst)  # pages=-1: all in one step, so no writer can make it start over
            mode = dst.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
            problems = [r[0] for r in dst.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.Error as exc:
        raise BackupError(f"cannot back up {source}: {exc}") from None
    if problems != ["ok"]:
        raise BackupError(f"the copy of {source} fails its integrity check: {'; '.join(problems[:5])}")
    if mode != "delete":
        raise BackupError(f"the copy of {source} stayed in journal mode {mode}")


def _durable_rename(tmp: Path, target: Path) -> None:
    """fsync the copy, rename it over the target, fsync the directory: the backup survives a power cut."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
