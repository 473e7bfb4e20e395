"""Tell a condition of the system (retry later) from a property of the message (hold it)."""

from __future__ import annotations

import asyncio
import sqlite3

# SQLite's words for conditions that pass: another writer, a full or failing disk, a
# database file we may not write right now. None of them says anything about a message.
_SQLITE_TEMPORARY = ("locked", "busy", "disk i/o error", "database or disk is full", "unable to open",
                     "readonly database", "out of memory", "disk image is malformed")
# asyncpg's exception classes for a lost, refused or overloaded server, and for a transaction
# that lost a race and may simply run again (matched by name: asyncpg is optional).
_ASYNCPG_TEMPORARY = ("ConnectionDoesNotExistError", "ConnectionFailureError", "InterfaceError",
                      "TooManyConnectionsError", "CannotConnectNowError", "SerializationError",
                      "DeadlockDetectedError", "QueryCanceledError", "AdminShutdownError",
                      "CrashShutdownError", "DiskFullError", "InsufficientResourcesError",
                      "OutOfMemoryError", "PostgresConnectionError", "LockNotAvailableError")


class TemporaryFailure(Exception):
    """The system cannot do this now (database locked or unreachable, disk full, a timeout)."""


def is_temporary(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a passing condition of the system."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _temporary_here(current):
            return True
        wrapped = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = current.__cause__ or wrapped or current.__context__
    return False


def _temporary_here(exc: BaseException) -> bool:
    if isinstance(exc, TemporaryFailure | asyncio.TimeoutError | TimeoutError | ConnectionError | OSError):
        return True
    if isinstance(exc, sqlite3.OperationalError) or type(exc).__name__ in ("OperationalError",
                                                                           "TransactionManagementError"):
        text = str(exc).lower()
        return any(word in text for word in _SQLITE_TEMPORARY)
    return type(exc).__module__.startswith("asyncpg") and type(exc).__name__ in _ASYNCPG_TEMPORARY


def describe(exc: BaseException) -> str:
    """One short line for a log or an MTA: never a traceback."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]
